//! Horizontal grouped bar charts (one row per category, one bar per group).

use std::path::Path;

use plotters::prelude::*;

use super::{draw_titles, render, tick};
use crate::error::Result;

/// A horizontal grouped bar chart: one row per category, one bar per group.
#[derive(Debug, Clone)]
pub struct BarChart {
    /// Title.
    pub title: String,
    /// Caption under the title.
    pub caption: String,
    /// Category names, top to bottom.
    pub categories: Vec<String>,
    /// Groups: legend label, colour, one value per category (NaN: no bar).
    pub groups: Vec<(String, RGBColor, Vec<f64>)>,
    /// Value axis label.
    pub x_label: String,
    /// Value range.
    pub x_range: (f64, f64),
}

/// Draws a horizontal grouped bar chart.
pub fn bar_chart(path: &Path, size: (u32, u32), c: &BarChart) -> Result<()> {
    render(path, size, |root| {
        let area = draw_titles(&root, &c.title, &c.caption)?;
        let n = c.categories.len();
        let mut chart = ChartBuilder::on(&area)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(230)
            .build_cartesian_2d(c.x_range.0..c.x_range.1, -0.5f64..(n as f64 - 0.5))
            .map_err(|e| e.to_string())?;
        let cats = c.categories.clone();
        let y_fmt = move |v: &f64| {
            // Category i sits at y = n - 1 - i (first category on top).
            let k = (n as f64 - 1.0 - v).round();
            if (v.fract().abs() < 1e-9 || (v - v.round()).abs() < 1e-9) && k >= 0.0 {
                cats.get(k as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        let x_fmt = |v: &f64| tick(*v);
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&y_fmt)
            .x_label_formatter(&x_fmt)
            .x_desc(c.x_label.as_str())
            .axis_desc_style(("sans-serif", 16))
            .label_style(("sans-serif", 13))
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()
            .map_err(|e| e.to_string())?;
        let g = c.groups.len().max(1) as f64;
        let band = 0.8 / g;
        for (gi, (label, color, values)) in c.groups.iter().enumerate() {
            let color = *color;
            let rects: Vec<Rectangle<(f64, f64)>> = values
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(i, &v)| {
                    let center = n as f64 - 1.0 - i as f64;
                    let top = center + 0.4 - gi as f64 * band;
                    Rectangle::new([(c.x_range.0, top - band * 0.92), (v, top)], color.filled())
                })
                .collect();
            chart
                .draw_series(rects)
                .map_err(|e| e.to_string())?
                .label(label.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}
