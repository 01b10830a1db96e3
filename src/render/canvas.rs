//! A small raster canvas for the 2-D demonstrations (figures 3.2 and 3.5): shaded regions,
//! points, polylines. Data coordinates map linearly onto pixels; y grows upwards.

use super::Grid;

/// An RGB drawing surface over the data rectangle `[x0, x1] x [y0, y1]`.
#[derive(Debug, Clone)]
pub struct Canvas {
    pub grid: Grid,
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Canvas {
    /// A white canvas of `width` x `height` pixels over the given data rectangle.
    pub fn new(width: usize, height: usize, x: (f64, f64), y: (f64, f64)) -> Self {
        Self {
            grid: Grid {
                width,
                height,
                rgb: vec![255; width * height * 3],
                tiles: None,
            },
            x0: x.0,
            x1: x.1,
            y0: y.0,
            y1: y.1,
        }
    }

    /// The data point at the centre of pixel (px, py).
    pub fn to_data(&self, px: usize, py: usize) -> (f64, f64) {
        let fx = (px as f64 + 0.5) / self.grid.width as f64;
        let fy = (py as f64 + 0.5) / self.grid.height as f64;
        (
            self.x0 + fx * (self.x1 - self.x0),
            self.y1 - fy * (self.y1 - self.y0),
        )
    }

    /// The pixel of a data point, if it falls on the canvas.
    pub fn to_pixel(&self, x: f64, y: f64) -> Option<(usize, usize)> {
        let fx = (x - self.x0) / (self.x1 - self.x0);
        let fy = (self.y1 - y) / (self.y1 - self.y0);
        if !(0.0..1.0).contains(&fx) || !(0.0..1.0).contains(&fy) {
            return None;
        }
        Some((
            (fx * self.grid.width as f64) as usize,
            (fy * self.grid.height as f64) as usize,
        ))
    }

    pub fn set(&mut self, px: usize, py: usize, c: [u8; 3]) {
        if px < self.grid.width && py < self.grid.height {
            let o = (py * self.grid.width + px) * 3;
            self.grid.rgb[o..o + 3].copy_from_slice(&c);
        }
    }

    /// Colours every pixel by `f(x, y)`.
    pub fn shade(&mut self, f: impl Fn(f64, f64) -> [u8; 3]) {
        for py in 0..self.grid.height {
            for px in 0..self.grid.width {
                let (x, y) = self.to_data(px, py);
                self.set(px, py, f(x, y));
            }
        }
    }

    /// Marks the pixels where `label(x, y)` differs from a right or lower neighbour.
    pub fn boundary(&mut self, label: impl Fn(f64, f64) -> usize, c: [u8; 3]) {
        let (w, h) = (self.grid.width, self.grid.height);
        let labels: Vec<usize> = (0..h)
            .flat_map(|py| (0..w).map(move |px| (px, py)))
            .map(|(px, py)| {
                let (x, y) = self.to_data(px, py);
                label(x, y)
            })
            .collect();
        for py in 0..h {
            for px in 0..w {
                let l = labels[py * w + px];
                let right = px + 1 < w && labels[py * w + px + 1] != l;
                let down = py + 1 < h && labels[(py + 1) * w + px] != l;
                if right || down {
                    self.set(px, py, c);
                }
            }
        }
    }

    /// A filled square of side `2r + 1` pixels centred on a data point.
    pub fn point(&mut self, x: f64, y: f64, r: usize, c: [u8; 3]) {
        if let Some((px, py)) = self.to_pixel(x, y) {
            for dy in 0..=2 * r {
                for dx in 0..=2 * r {
                    if let (Some(a), Some(b)) = ((px + dx).checked_sub(r), (py + dy).checked_sub(r))
                    {
                        self.set(a, b, c);
                    }
                }
            }
        }
    }

    /// A polyline through data points, drawn by dense sampling of each segment.
    pub fn polyline(&mut self, pts: &[(f64, f64)], c: [u8; 3]) {
        for w in pts.windows(2) {
            let steps = 2 * (self.grid.width + self.grid.height);
            for s in 0..=steps {
                let t = s as f64 / steps as f64;
                let (x, y) = (
                    w[0].0 + t * (w[1].0 - w[0].0),
                    w[0].1 + t * (w[1].1 - w[0].1),
                );
                if let Some((px, py)) = self.to_pixel(x, y) {
                    self.set(px, py, c);
                }
            }
        }
    }
}

/// Mixes two colours: `t = 0` gives `a`, `t = 1` gives `b`.
pub fn mix(a: [u8; 3], b: [u8; 3], t: f64) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0);
    [0, 1, 2].map(|i| (a[i] as f64 * (1.0 - t) + b[i] as f64 * t).round() as u8)
}

/// Places several canvases side by side with a white gap.
pub fn side_by_side(panels: &[Grid], gap: usize) -> Grid {
    let height = panels.iter().map(|p| p.height).max().unwrap_or(0);
    let width =
        panels.iter().map(|p| p.width).sum::<usize>() + gap * panels.len().saturating_sub(1);
    let mut rgb = vec![255u8; width * height * 3];
    let mut x0 = 0;
    for p in panels {
        for y in 0..p.height {
            let src = &p.rgb[y * p.width * 3..(y + 1) * p.width * 3];
            let o = (y * width + x0) * 3;
            rgb[o..o + p.width * 3].copy_from_slice(src);
        }
        x0 += p.width + gap;
    }
    Grid {
        width,
        height,
        rgb,
        tiles: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_and_pixel_coordinates_round_trip_with_y_up() {
        let c = Canvas::new(100, 50, (0.0, 10.0), (0.0, 5.0));
        assert_eq!(c.to_pixel(0.05, 4.95), Some((0, 0)));
        assert_eq!(c.to_pixel(9.95, 0.05), Some((99, 49)));
        assert_eq!(c.to_pixel(11.0, 1.0), None);
        let (x, y) = c.to_data(0, 49);
        assert!((x - 0.05).abs() < 1e-12 && (y - 0.05).abs() < 1e-12);
    }

    #[test]
    fn boundary_marks_exactly_where_the_label_changes() {
        let mut c = Canvas::new(10, 4, (0.0, 10.0), (0.0, 4.0));
        c.boundary(|x, _| (x > 5.0) as usize, [0, 0, 0]);
        for py in 0..4 {
            assert_eq!(c.grid.pixel(4, py), [0, 0, 0]);
            assert_eq!(c.grid.pixel(3, py), [255, 255, 255]);
            assert_eq!(c.grid.pixel(5, py), [255, 255, 255]);
        }
    }
}
