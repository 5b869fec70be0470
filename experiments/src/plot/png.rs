//! The PNG writer: an RGB buffer as an 8-bit palette PNG (the 256 most
//! frequent colours; rarer anti-aliasing shades map to the nearest one).

use std::path::Path;

use super::plot_err;
use crate::error::{Error, Result};

/// Writes an RGB buffer as an 8-bit palette PNG: the 256 most frequent
/// colours form the palette, every other colour maps to its nearest entry.
pub fn write_palette_png(path: &Path, rgb: &[u8], size: (u32, u32)) -> Result<()> {
    let mut counts: std::collections::HashMap<[u8; 3], u64> = std::collections::HashMap::new();
    for px in rgb.chunks_exact(3) {
        *counts.entry([px[0], px[1], px[2]]).or_insert(0) += 1;
    }
    let mut by_count: Vec<([u8; 3], u64)> = counts.iter().map(|(c, n)| (*c, *n)).collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let palette: Vec<[u8; 3]> = by_count.iter().take(256).map(|(c, _)| *c).collect();
    let dist = |a: [u8; 3], b: [u8; 3]| {
        (0..3)
            .map(|i| (i32::from(a[i]) - i32::from(b[i])).pow(2))
            .sum::<i32>()
    };
    let index: std::collections::HashMap<[u8; 3], u8> = counts
        .keys()
        .map(|&c| {
            let best = palette
                .iter()
                .enumerate()
                .min_by_key(|(_, p)| dist(c, **p))
                .map_or(0, |(i, _)| i as u8);
            (c, best)
        })
        .collect();
    let data: Vec<u8> = rgb
        .chunks_exact(3)
        .map(|px| index.get(&[px[0], px[1], px[2]]).copied().unwrap_or(0))
        .collect();
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), size.0, size.1);
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_palette(palette.concat());
    enc.set_compression(png::Compression::Best);
    let mut w = enc.write_header().map_err(|e| plot_err(path, e))?;
    w.write_image_data(&data).map_err(|e| plot_err(path, e))?;
    w.finish().map_err(|e| plot_err(path, e))
}
