//! The 2-D pictures of chapter 3 (figures 3.2, 3.4 and 3.5) and the EM trace, drawn with
//! axes and legends. The data and fits come from `classical::demo`; this file only draws.

use super::Result;
use crate::classical::demo::{self, PALETTE, VIEW_X, VIEW_Y};
use crate::classical::gaussian_nb::GaussianNb;
use crate::classical::gda::GdaParams;
use crate::classical::gmm::Gmm;
use crate::render::Grid;
use crate::render::plot::{
    self, Area, DrawResult, LineChart, PlotError, Series, mix, rgb, side_by_side, text,
};
use faer::Mat;
use plotters::element::BitMapElement;
use plotters::prelude::*;

/// A chart over the 2-D demonstrations' data window, with axes x₁ and x₂.
fn plane<'a, 'b>(
    area: &'a Area<'b>,
    title: &str,
) -> std::result::Result<plot::Chart<'a, 'b>, Box<dyn std::error::Error>> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, text(14))
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(40)
        .build_cartesian_2d(VIEW_X.0..VIEW_X.1, VIEW_Y.0..VIEW_Y.1)?;
    plot::draw_axes(&mut chart, "x₁", "x₂", false)?;
    Ok(chart)
}

/// One panel of figure 3.2: P(y = 1 | x) as the background (class 0's colour at 0, class
/// 1's at 1), the boundary P = ½ in black, the training points on top.
fn boundary_panel(
    area: &Area<'_>,
    title: &str,
    x: &Mat<f64>,
    y: &[usize],
    m: &GaussianNb,
) -> DrawResult {
    let mut chart = plane(area, title)?;
    let (w, h) = chart.plotting_area().dim_in_pixel();
    let (w, h) = (w as usize, h as usize);
    let at = |px: usize, py: usize| {
        (
            VIEW_X.0 + (px as f64 + 0.5) / w as f64 * (VIEW_X.1 - VIEW_X.0),
            VIEW_Y.1 - (py as f64 + 0.5) / h as f64 * (VIEW_Y.1 - VIEW_Y.0),
        )
    };
    let p: Vec<f64> = (0..h)
        .flat_map(|py| (0..w).map(move |px| (px, py)))
        .map(|(px, py)| {
            let (a, b) = at(px, py);
            demo::posterior(m, a, b)
        })
        .collect();
    let light = |c: [u8; 3]| mix(c, [255; 3], 0.75);
    let mut buf = vec![0u8; w * h * 3];
    for py in 0..h {
        for px in 0..w {
            let i = py * w + px;
            let side = p[i] > 0.5;
            let edge = (px + 1 < w && (p[i + 1] > 0.5) != side)
                || (py + 1 < h && (p[i + w] > 0.5) != side);
            let c = if edge {
                [0; 3]
            } else {
                mix(light(PALETTE[0]), light(PALETTE[1]), p[i])
            };
            buf[i * 3..i * 3 + 3].copy_from_slice(&c);
        }
    }
    let background =
        BitMapElement::with_owned_buffer((VIEW_X.0, VIEW_Y.1), (w as u32, h as u32), buf)
            .ok_or("background buffer does not match the plotting area")?;
    chart.draw_series(std::iter::once(background))?;
    for (class, &tint) in PALETTE.iter().enumerate().take(2) {
        let colour = rgb(tint);
        chart
            .draw_series(
                (0..x.nrows())
                    .filter(|&i| y[i] == class)
                    .map(|i| Circle::new((x[(i, 0)], x[(i, 1)]), 2, colour.filled())),
            )?
            .label(format!("class {class}"))
            .legend(move |(px, py)| Circle::new((px + 9, py), 3, colour.filled()));
    }
    chart
        .draw_series(LineSeries::new(std::iter::empty::<(f64, f64)>(), BLACK))?
        .label("P(y = 1 | x) = ½")
        .legend(plot::swatch(BLACK.stroke_width(2)));
    plot::draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    Ok(())
}

/// Figure 3.2: Gaussian naive Bayes on two classes whose spreads differ. Left, one variance
/// per feature shared by both classes (a straight boundary); right, one per class (a curved
/// one). Each panel is `size` pixels square.
pub fn boundary_figure(seed: u64, size: usize) -> Result<Grid> {
    let (x, y) = demo::two_classes(seed, 150);
    let mut panels = Vec::new();
    for (shared, title) in [
        (true, "shared variances: a linear boundary"),
        (false, "per-class variances: a quadratic boundary"),
    ] {
        let m = demo::fit_boundary(&x, &y, shared)?;
        panels.push(plot::draw(size, size, |area| {
            area.fill(&WHITE)?;
            boundary_panel(area, title, &x, &y, &m)
        })?);
    }
    Ok(side_by_side(&panels, 8))
}

/// Figure 3.4: P(y = 1 | x) of shared-covariance GDA along the line through both class
/// means, x = μ₀ + t·(μ₁ − μ₀): a logistic curve in t.
pub fn sigmoid_figure(seed: u64, width: usize, height: usize) -> Result<Grid> {
    let (x, y) = demo::two_classes(seed, 150);
    let m = GdaParams::default().fit(x.as_ref(), &y, 2)?;
    let at = |t: f64, j: usize| m.means[(0, j)] + t * (m.means[(1, j)] - m.means[(0, j)]);
    let curve: Vec<(f64, f64)> = (0..=300)
        .map(|i| {
            let t = -1.0 + 3.0 * i as f64 / 300.0;
            (t, demo::posterior(&m, at(t, 0), at(t, 1)))
        })
        .collect();
    Ok(plot::draw(width, height, |area| {
        area.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(area)
            .caption(
                "shared-covariance GDA: the posterior along the line of the means",
                text(14),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(-1.0..2.0, -0.02..1.02)?;
        plot::draw_axes(
            &mut chart,
            "t, where x = μ₀ + t·(μ₁ − μ₀)",
            "P(y = 1 | x)",
            true,
        )?;
        for (t, class, name) in [
            (0.0, 0, "t = 0: μ₀, class 0's mean"),
            (1.0, 1, "t = 1: μ₁, class 1's mean"),
        ] {
            let colour = rgb(PALETTE[class]);
            chart
                .draw_series(DashedLineSeries::new(
                    [(t, -0.02), (t, 1.02)],
                    6,
                    4,
                    colour.stroke_width(2),
                ))?
                .label(name)
                .legend(plot::swatch(colour.stroke_width(2)));
        }
        chart
            .draw_series(LineSeries::new(curve, BLACK.stroke_width(2)))?
            .label("P(y = 1 | x)")
            .legend(plot::swatch(BLACK.stroke_width(2)));
        plot::draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        Ok(())
    })?)
}

/// Figure 3.5: a 3-component full-covariance mixture fitted by EM. Each point is coloured by
/// its responsibilities (a mix of the components' colours), each component drawn at 1 and 2
/// standard deviations around its mean.
pub fn cluster_figure(seed: u64, size: usize) -> Result<(Grid, Gmm)> {
    let (x, g) = demo::fit_clusters(seed)?;
    let resp = g.responsibilities(x.as_ref());
    let grid = plot::draw(size, size, |area| {
        area.fill(&WHITE)?;
        let mut chart = plane(area, "EM on three elongated clusters: 1σ and 2σ ellipses")?;
        chart.draw_series((0..x.nrows()).map(|i| {
            let mut col = [0.0; 3];
            for k in 0..3 {
                for (ch, v) in col.iter_mut().enumerate() {
                    *v += resp[(i, k)] * PALETTE[k][ch] as f64;
                }
            }
            Circle::new(
                (x[(i, 0)], x[(i, 1)]),
                2,
                rgb(col.map(|v| v.round() as u8)).filled(),
            )
        }))?;
        for (k, &tint) in PALETTE.iter().enumerate().take(3) {
            let colour = rgb(mix(tint, [0; 3], 0.4));
            for r in [1.0, 2.0] {
                chart.draw_series(LineSeries::new(
                    demo::ellipse(&g, k, r),
                    colour.stroke_width(2),
                ))?;
            }
            chart
                .draw_series(std::iter::once(Cross::new(
                    (g.means[(k, 0)], g.means[(k, 1)]),
                    5,
                    BLACK.stroke_width(2),
                )))?
                .label(format!("component {} (π = {:.2})", k + 1, g.weights[k]))
                .legend(plot::swatch(colour.stroke_width(2)));
        }
        plot::draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        Ok(())
    })?;
    Ok((grid, g))
}

/// The EM trace: the mean log-likelihood per iteration of the 2-D mixture of figure 3.5
/// (left) and of the digits' mixture (right), each with its own axes since their scales
/// differ by orders of magnitude. Each is non-decreasing, as EM guarantees.
pub fn em_trace_figure(two_d: &[f64], digits: &[f64], digits_name: &str) -> Result<Grid> {
    let panel =
        |title: &str, history: &[f64], colour: [u8; 3]| -> std::result::Result<Grid, PlotError> {
            LineChart {
                title: title.to_string(),
                x_label: "EM iteration".into(),
                y_label: "mean log-likelihood per point (nats)".into(),
                series: vec![Series {
                    label: String::new(),
                    points: history
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| ((i + 1) as f64, v))
                        .collect(),
                    colour,
                }],
                y_range: None,
                references: Vec::new(),
            }
            .render(420, 300)
        };
    Ok(side_by_side(
        &[
            panel("three 2-D clusters (figure 3.5)", two_d, PALETTE[0])?,
            panel(digits_name, digits, PALETTE[1])?,
        ],
        8,
    ))
}
