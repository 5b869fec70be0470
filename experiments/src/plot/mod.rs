//! PNG figures with plotters: line charts (optionally with a log x axis,
//! dashed reference lines and several panels side by side) and horizontal
//! grouped bar charts.
//!
//! Figures are rendered into an RGB buffer and written as 8-bit palette PNGs
//! (the 256 most frequent colours; rarer anti-aliasing shades map to the
//! nearest one), which keeps them at tens of kilobytes.
//!
//! Text is drawn with DejaVu Sans, vendored in `experiments/assets/` (with
//! its licence) and registered once as plotters' `sans-serif` family, so the
//! figures do not depend on fonts installed on the machine.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::{Error, Result};

mod bar;
mod png;

pub use bar::{BarChart, bar_chart};
pub use png::write_palette_png;

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

fn register_font() {
    REGISTER.call_once(|| {
        // The vendored file is a valid TrueType font; a failure would show
        // as a plot error ("font unavailable") on the first figure.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, FONT);
    });
}

/// Colours of series, in order (Tableau 10).
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The `i`-th palette colour.
pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Grey of reference lines (baselines).
pub const REFERENCE_GREY: RGBColor = RGBColor(90, 90, 90);

/// One line (or a set of markers) on a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Points (x, y); non-finite values are skipped.
    pub points: Vec<(f64, f64)>,
    /// Colour.
    pub color: RGBColor,
    /// Dashed line (used for baselines).
    pub dashed: bool,
    /// Draw a marker at every point.
    pub markers: bool,
    /// Draw the connecting line.
    pub line: bool,
    /// Text next to each point (empty: none).
    pub point_labels: Vec<String>,
}

impl Series {
    /// A solid line with markers.
    pub fn line(label: impl Into<String>, points: Vec<(f64, f64)>, color: RGBColor) -> Self {
        Self {
            label: label.into(),
            points,
            color,
            dashed: false,
            markers: true,
            line: true,
            point_labels: Vec::new(),
        }
    }

    /// A dashed horizontal reference line at `y` across `[x0, x1]`.
    pub fn reference(label: impl Into<String>, y: f64, x0: f64, x1: f64, color: RGBColor) -> Self {
        Self {
            label: label.into(),
            points: vec![(x0, y), (x1, y)],
            color,
            dashed: true,
            markers: false,
            line: true,
            point_labels: Vec::new(),
        }
    }

    /// With a text next to each point.
    pub fn with_point_labels(mut self, labels: Vec<String>) -> Self {
        self.point_labels = labels;
        self
    }

    /// Without markers.
    pub fn no_markers(mut self) -> Self {
        self.markers = false;
        self
    }
}

/// Where the legend goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legend {
    /// Lower right corner.
    LowerRight,
    /// Upper right corner.
    UpperRight,
    /// Upper left corner.
    UpperLeft,
    /// Lower left corner.
    LowerLeft,
    /// Middle right.
    MiddleRight,
}

impl Legend {
    fn position(self) -> SeriesLabelPosition {
        match self {
            Self::LowerRight => SeriesLabelPosition::LowerRight,
            Self::UpperRight => SeriesLabelPosition::UpperRight,
            Self::UpperLeft => SeriesLabelPosition::UpperLeft,
            Self::LowerLeft => SeriesLabelPosition::LowerLeft,
            Self::MiddleRight => SeriesLabelPosition::MiddleRight,
        }
    }
}

/// A line chart.
#[derive(Debug, Clone)]
pub struct LineChart {
    /// Title (first line, bold).
    pub title: String,
    /// Caption under the title (settings, noise source).
    pub caption: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// Logarithmic x axis (base 10; every x must be > 0).
    pub x_log: bool,
    /// x range; `None` fits the data.
    pub x_range: Option<(f64, f64)>,
    /// y range; `None` fits the data.
    pub y_range: Option<(f64, f64)>,
    /// The series, drawn in order.
    pub series: Vec<Series>,
    /// Legend position.
    pub legend: Legend,
}

pub(super) fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Plot {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

fn fit(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let p = (hi - lo) * pad;
    (lo - p, hi + p)
}

/// Formats an axis value compactly.
pub(super) fn tick(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.0e}")
    } else if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Renders with `draw` into an RGB buffer of `size` and writes it as a palette PNG.
pub(super) fn render(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(DrawingArea<BitMapBackend<'_>, Shift>) -> std::result::Result<(), String>,
) -> Result<()> {
    register_font();
    let mut buf = vec![255u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
        draw(root.clone()).map_err(|e| plot_err(path, e))?;
        root.present().map_err(|e| plot_err(path, e))?;
    }
    write_palette_png(path, &buf, size)
}

pub(super) fn draw_titles<'a>(
    area: &Area<'a>,
    title: &str,
    caption: &str,
) -> std::result::Result<Area<'a>, String> {
    let area = area
        .titled(title, ("sans-serif", 21).into_font().style(FontStyle::Bold))
        .map_err(|e| e.to_string())?;
    if caption.is_empty() {
        return Ok(area);
    }
    let (w, _) = area.dim_in_pixel();
    let (top, rest) = area.split_vertically(22);
    top.draw(&Text::new(
        caption.to_string(),
        ((w as i32) / 2, 2),
        ("sans-serif", 14)
            .into_font()
            .color(&RGBColor(70, 70, 70))
            .pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Top,
            )),
    ))
    .map_err(|e| e.to_string())?;
    Ok(rest)
}

/// Shows only 1, 2 and 5 times a power of ten on a log axis.
fn log_tick(v: f64) -> String {
    if v.is_nan() || v <= 0.0 {
        return String::new();
    }
    let mantissa = v / 10f64.powf(v.log10().floor());
    if [1.0, 2.0, 5.0, 10.0]
        .iter()
        .any(|m| (mantissa - m).abs() < 1e-6)
    {
        tick(v)
    } else {
        String::new()
    }
}

fn draw_line_chart(area: &Area<'_>, c: &LineChart) -> std::result::Result<(), String> {
    let area = draw_titles(area, &c.title, &c.caption)?;
    let all = || c.series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = match c.x_range {
        Some(r) => r,
        None if c.x_log => {
            let (a, b) = fit(all().map(|p| p.0.log10()), 0.03);
            (10f64.powf(a), 10f64.powf(b))
        }
        None => fit(all().map(|p| p.0), 0.03),
    };
    let (y0, y1) = c.y_range.unwrap_or_else(|| fit(all().map(|p| p.1), 0.06));
    let mut builder = ChartBuilder::on(&area);
    builder
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(62);
    if c.x_log {
        let chart = builder
            .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
            .map_err(|e| e.to_string())?;
        draw_body(chart, c, &log_tick)
    } else {
        let chart = builder
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| e.to_string())?;
        draw_body(chart, c, &tick)
    }
}

fn draw_body<'a, X>(
    mut chart: ChartContext<
        'a,
        BitMapBackend<'a>,
        Cartesian2d<X, plotters::coord::types::RangedCoordf64>,
    >,
    c: &LineChart,
    x_tick: &dyn Fn(f64) -> String,
) -> std::result::Result<(), String>
where
    X: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let x_fmt = |v: &f64| x_tick(*v);
    let y_fmt = |v: &f64| tick(*v);
    chart
        .configure_mesh()
        .x_desc(c.x_label.as_str())
        .y_desc(c.y_label.as_str())
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .x_labels(if c.x_log { 40 } else { 10 })
        .y_labels(10)
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 13))
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()
        .map_err(|e| e.to_string())?;
    let ok = |x: f64, y: f64| x.is_finite() && y.is_finite() && (!c.x_log || x > 0.0);
    for s in &c.series {
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|&(x, y)| ok(x, y))
            .collect();
        let style = ShapeStyle::from(&s.color).stroke_width(2);
        let color = s.color;
        let legend_dashed = s.dashed;
        let anno = if s.line && s.dashed {
            chart
                .draw_series(DashedLineSeries::new(pts.clone(), 8, 5, style))
                .map_err(|e| e.to_string())?
        } else if s.line {
            chart
                .draw_series(LineSeries::new(pts.clone(), style))
                .map_err(|e| e.to_string())?
        } else {
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(|e| e.to_string())?
        };
        if !s.label.is_empty() {
            anno.label(s.label.clone()).legend(move |(x, y)| {
                if legend_dashed {
                    PathElement::new(vec![(x, y), (x + 8, y)], color.stroke_width(2))
                } else {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                }
            });
        }
        if s.markers && s.line {
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| e.to_string())?;
        }
        if !s.point_labels.is_empty() {
            let labelled = s
                .points
                .iter()
                .copied()
                .zip(&s.point_labels)
                .filter(|((x, y), _)| ok(*x, *y));
            chart
                .draw_series(labelled.map(|(p, t)| {
                    EmptyElement::at(p)
                        + Text::new(
                            t.clone(),
                            (6, 4),
                            ("sans-serif", 12).into_font().color(&color),
                        )
                }))
                .map_err(|e| e.to_string())?;
        }
    }
    if c.series.iter().any(|s| !s.label.is_empty()) {
        chart
            .configure_series_labels()
            .position(c.legend.position())
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Draws one line chart into a PNG of `size` pixels.
pub fn line_chart(path: &Path, size: (u32, u32), chart: &LineChart) -> Result<()> {
    panels(path, size, std::slice::from_ref(chart), "", "")
}

/// Draws charts side by side under an optional overall title and caption.
pub fn panels(
    path: &Path,
    size: (u32, u32),
    charts: &[LineChart],
    title: &str,
    caption: &str,
) -> Result<()> {
    render(path, size, |root| {
        let root = if title.is_empty() {
            root
        } else {
            draw_titles(&root, title, caption)?
        };
        let areas = root.split_evenly((1, charts.len().max(1)));
        for (a, c) in areas.iter().zip(charts) {
            draw_line_chart(a, c)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_compact() {
        assert_eq!(tick(3.0), "3");
        assert_eq!(tick(0.85), "0.85");
        assert_eq!(tick(12.25), "12.2");
        assert_eq!(tick(1e-6), "1e-6");
        assert_eq!(tick(0.0), "0");
        assert_eq!(log_tick(20.0), "20");
        assert_eq!(log_tick(0.5), "0.5");
        assert_eq!(log_tick(30.0), "");
    }

    #[test]
    fn charts_are_written_as_png() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.png");
        let c = LineChart {
            title: "t".into(),
            caption: "c".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            x_log: true,
            x_range: None,
            y_range: Some((0.0, 1.0)),
            series: vec![
                Series::line("a", vec![(1.0, 0.2), (10.0, 0.5), (100.0, 0.9)], color(0)),
                Series::reference("b", 0.7, 1.0, 100.0, REFERENCE_GREY),
            ],
            legend: Legend::LowerRight,
        };
        line_chart(&p, (400, 300), &c).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let b = dir.path().join("b.png");
        bar_chart(
            &b,
            (400, 300),
            &BarChart {
                title: "t".into(),
                caption: String::new(),
                categories: vec!["x".into(), "y".into()],
                groups: vec![("g".into(), color(1), vec![0.3, f64::NAN])],
                x_label: "v".into(),
                x_range: (0.0, 1.0),
            },
        )
        .unwrap();
        assert_eq!(&std::fs::read(&b).unwrap()[1..4], b"PNG");
    }
}
