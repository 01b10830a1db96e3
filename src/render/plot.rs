//! Charts for the book: axes, ticks, labels and legends drawn with plotters into an RGB
//! [`Grid`], and image grids framed with a title and row or column labels.
//!
//! Text uses an embedded subset of DejaVu Sans (`fonts/`, Bitstream Vera licence), registered
//! with plotters' ab_glyph backend, so a figure comes out the same on every machine and needs
//! no system fonts. Nothing is written to disk here: [`Grid::save_png`] does that.

use super::Grid;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};
use std::sync::OnceLock;

/// The font family every chart's text uses.
pub const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("fonts/DejaVuSans-subset.ttf");

/// The drawing surface a chart closure receives.
pub type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Why a chart could not be drawn (a bug rather than bad input: the data are ours).
#[derive(Debug, thiserror::Error)]
#[error("drawing a chart: {0}")]
pub struct PlotError(pub String);

/// What a chart closure returns: plotters' errors are generic over the backend, so they are
/// boxed and turned into a [`PlotError`] at the edge.
pub type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn register_embedded_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            register_font(FONT, FontStyle::Normal, FONT_BYTES)
                .map_err(|_| "the embedded font is not a TrueType font".to_string())
        })
        .clone()
        .map_err(PlotError)
}

/// Draws with `paint` on a white `width` x `height` canvas and returns its pixels.
pub fn draw(
    width: usize,
    height: usize,
    paint: impl FnOnce(&Area<'_>) -> DrawResult,
) -> Result<Grid, PlotError> {
    register_embedded_font()?;
    let mut rgb = vec![255u8; width * height * 3];
    {
        let root =
            BitMapBackend::with_buffer(&mut rgb, (width as u32, height as u32)).into_drawing_area();
        paint(&root).map_err(|e| PlotError(e.to_string()))?;
        root.present().map_err(|e| PlotError(e.to_string()))?;
    }
    Ok(Grid {
        width,
        height,
        rgb,
        tiles: None,
    })
}

/// A plotters colour from our RGB triples.
pub fn rgb(c: [u8; 3]) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

/// A text style of `size` pixels in the embedded font.
pub fn text(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

/// A chart over f64 axes on our bitmap.
pub type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws `chart`'s axes with tick labels and the descriptions `x` and `y`; `grid` adds faint
/// grid lines.
pub fn draw_axes(chart: &mut Chart<'_, '_>, x: &str, y: &str, grid: bool) -> DrawResult {
    let mut mesh = chart.configure_mesh();
    if grid {
        mesh.light_line_style(RGBColor(240, 240, 240))
            .bold_line_style(RGBColor(215, 215, 215));
    } else {
        mesh.disable_mesh();
    }
    mesh.x_desc(x)
        .y_desc(y)
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .label_style(text(12))
        .axis_desc_style(text(13))
        .draw()?;
    Ok(())
}

/// The legend of `chart`'s labelled series, boxed, at `position`.
pub fn draw_legend<'a, 'b: 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, BitMapBackend<'b>, CT>,
    position: SeriesLabelPosition,
) -> DrawResult {
    chart
        .configure_series_labels()
        .label_font(text(12))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .position(position)
        .draw()?;
    Ok(())
}

/// A legend entry's swatch: a short line in `style`.
pub fn swatch(style: ShapeStyle) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(px, py)| PathElement::new([(px, py), (px + 18, py)], style)
}

/// A text style of `size` pixels whose anchor point is at (`h`, `v`) of the text.
fn anchored(size: u32, h: HPos, v: VPos) -> TextStyle<'static> {
    text(size).pos(Pos::new(h, v))
}

/// A curve of a line chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub colour: [u8; 3],
}

/// A line chart: one or more curves over shared axes, with a legend when a curve has a
/// label or there is a reference line.
#[derive(Debug, Clone)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Fixed y range; fitted to the data (with a margin) when `None`.
    pub y_range: Option<(f64, f64)>,
    /// Horizontal reference lines (value, label), drawn dashed in grey.
    pub references: Vec<(f64, String)>,
}

/// A tick label with no trailing zeros: "2", "2.5", "-3.274".
pub fn tick(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 * v.abs().max(1.0) {
        format!("{:.0}", v)
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The data range of `values` with 5% margins, never empty.
pub fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9 * hi.abs().max(1.0));
    (lo - pad, hi + pad)
}

impl LineChart {
    /// Draws the chart on `area` (a whole figure or one panel of it).
    pub fn paint(&self, area: &Area<'_>) -> DrawResult {
        let x = padded_range(
            self.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0)),
        );
        let y = self.y_range.unwrap_or_else(|| {
            padded_range(
                self.series
                    .iter()
                    .flat_map(|s| s.points.iter().map(|p| p.1))
                    .chain(self.references.iter().map(|r| r.0)),
            )
        });
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, text(15))
            .margin(10)
            .x_label_area_size(38)
            .y_label_area_size(58)
            .build_cartesian_2d(x.0..x.1, y.0..y.1)?;
        draw_axes(&mut chart, &self.x_label, &self.y_label, true)?;
        let grey = RGBColor(120, 120, 120);
        for (value, label) in &self.references {
            chart
                .draw_series(DashedLineSeries::new(
                    [(x.0, *value), (x.1, *value)],
                    6,
                    4,
                    grey.stroke_width(1),
                ))?
                .label(label.as_str())
                .legend(swatch(grey.stroke_width(1)));
        }
        for s in &self.series {
            let colour = rgb(s.colour);
            let drawn = chart.draw_series(LineSeries::new(
                s.points.iter().copied().filter(|p| p.1.is_finite()),
                colour.stroke_width(2),
            ))?;
            if !s.label.is_empty() {
                drawn
                    .label(s.label.as_str())
                    .legend(swatch(colour.stroke_width(2)));
            }
        }
        if self.series.iter().any(|s| !s.label.is_empty()) || !self.references.is_empty() {
            draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        }
        Ok(())
    }

    /// The chart alone, `width` x `height` pixels.
    pub fn render(&self, width: usize, height: usize) -> Result<Grid, PlotError> {
        draw(width, height, |area| {
            area.fill(&WHITE)?;
            self.paint(area)
        })
    }
}

/// Labels around an image grid.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    pub title: String,
    /// One label per tile column, centred above it.
    pub columns: Vec<String>,
    /// One label per tile row, to its left.
    pub rows: Vec<String>,
    /// A line under the grid (what the axes mean, end points of a path…).
    pub footer: String,
}

/// `grid` (tiled `cols` x `rows`, at any enlargement) framed with `frame`'s title and
/// labels: column labels are centred over each `1/cols` of its width, row labels on each
/// `1/rows` of its height.
pub fn framed(grid: &Grid, cols: usize, rows: usize, frame: &Frame) -> Result<Grid, PlotError> {
    let left = if frame.rows.is_empty() {
        8
    } else {
        12 + 7 * frame
            .rows
            .iter()
            .map(|r| r.chars().count())
            .max()
            .unwrap_or(0)
    };
    let top = 8
        + if frame.title.is_empty() { 0 } else { 24 }
        + if frame.columns.is_empty() { 0 } else { 18 };
    let bottom = if frame.footer.is_empty() { 8 } else { 28 };
    let (width, height) = (
        (left + grid.width + 8).max(8 + 7 * frame.title.chars().count()),
        top + grid.height + bottom,
    );
    let cell_w = grid.width as f64 / cols.max(1) as f64;
    let cell_h = grid.height as f64 / rows.max(1) as f64;
    let mut out = draw(width, height, |area| {
        area.fill(&WHITE)?;
        if !frame.title.is_empty() {
            area.draw(&Text::new(
                frame.title.as_str(),
                (8, 6),
                anchored(15, HPos::Left, VPos::Top),
            ))?;
        }
        let centred = anchored(13, HPos::Center, VPos::Bottom);
        for (i, label) in frame.columns.iter().enumerate() {
            let x = left as f64 + (i as f64 + 0.5) * cell_w;
            area.draw(&Text::new(
                label.as_str(),
                (x.round() as i32, top as i32 - 3),
                centred.clone(),
            ))?;
        }
        let right = anchored(13, HPos::Right, VPos::Center);
        for (i, label) in frame.rows.iter().enumerate() {
            let y = top as f64 + (i as f64 + 0.5) * cell_h;
            area.draw(&Text::new(
                label.as_str(),
                (left as i32 - 6, y.round() as i32),
                right.clone(),
            ))?;
        }
        if !frame.footer.is_empty() {
            area.draw(&Text::new(
                frame.footer.as_str(),
                (left as i32, (top + grid.height + 8) as i32),
                anchored(12, HPos::Left, VPos::Top),
            ))?;
        }
        Ok(())
    })?;
    blit(&mut out, grid, left, top);
    Ok(out)
}

/// Copies `src` into `dst` with its top-left corner at (`x0`, `y0`); `dst` must hold it.
fn blit(dst: &mut Grid, src: &Grid, x0: usize, y0: usize) {
    for y in 0..src.height {
        let o = ((y0 + y) * dst.width + x0) * 3;
        dst.rgb[o..o + src.width * 3]
            .copy_from_slice(&src.rgb[y * src.width * 3..(y + 1) * src.width * 3]);
    }
}

/// Places several pictures side by side on white, `gap` pixels apart, tops aligned.
pub fn side_by_side(panels: &[Grid], gap: usize) -> Grid {
    let width =
        panels.iter().map(|p| p.width).sum::<usize>() + gap * panels.len().saturating_sub(1);
    let height = panels.iter().map(|p| p.height).max().unwrap_or(0);
    let mut out = Grid {
        width,
        height,
        rgb: vec![255u8; width * height * 3],
        tiles: None,
    };
    let mut x0 = 0;
    for p in panels {
        blit(&mut out, p, x0, 0);
        x0 += p.width + gap;
    }
    out
}

/// Mixes two colours: `t = 0` gives `a`, `t = 1` gives `b`.
pub fn mix(a: [u8; 3], b: [u8; 3], t: f64) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0);
    [0, 1, 2].map(|i| (a[i] as f64 * (1.0 - t) + b[i] as f64 * t).round() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rising line is drawn rising inside the axes, and the axes carry tick labels: dark
    /// text pixels left of the plotting area.
    #[test]
    fn a_line_chart_draws_its_curve_inside_labelled_axes() {
        let chart = LineChart {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![Series {
                label: "rising".into(),
                points: vec![(0.0, 0.0), (1.0, 1.0)],
                colour: [200, 0, 0],
            }],
            y_range: None,
            references: Vec::new(),
        };
        let g = chart.render(400, 300).unwrap();
        let red = |x: usize, y: usize| {
            let p = g.pixel(x, y);
            p[0] > 150 && p[1] < 80 && p[2] < 80
        };
        let red_in = |x0: usize, x1: usize| {
            (x0..x1)
                .flat_map(|x| (0..300).map(move |y| (x, y)))
                .filter(|&(x, y)| red(x, y))
                .map(|(_, y)| y)
                .collect::<Vec<_>>()
        };
        // Left third of the plot: low on the canvas (large y); right third: high.
        let (left, right) = (red_in(80, 160), red_in(300, 380));
        assert!(
            !left.is_empty() && !right.is_empty(),
            "the curve is missing"
        );
        let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len() as f64;
        assert!(
            mean(&left) > mean(&right) + 50.0,
            "{} vs {}",
            mean(&left),
            mean(&right)
        );
        let dark_left_of_axes = (0..60)
            .flat_map(|x| (20..260).map(move |y| (x, y)))
            .filter(|&(x, y)| g.pixel(x, y).iter().all(|&c| c < 100))
            .count();
        assert!(
            dark_left_of_axes > 30,
            "no tick labels: {dark_left_of_axes} dark pixels"
        );
    }

    #[test]
    fn tick_labels_drop_trailing_zeros() {
        assert_eq!(tick(&2.0), "2");
        assert_eq!(tick(&-16.0), "-16");
        assert_eq!(tick(&2.5), "2.5");
        assert_eq!(tick(&-3.274), "-3.274");
    }
}
