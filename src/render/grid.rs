//! A sample grid: many small images tiled into one RGB picture with a thin border.

use crate::data::PixelScale;
use std::path::Path;

/// An RGB image, row-major, three bytes a pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grid {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
    /// How the picture is tiled, when it was built from images.
    pub tiles: Option<Tiles>,
}

/// The tiling of a grid: `cols` x `rows` tiles of `w` x `h` pixels, `PAD` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiles {
    pub w: usize,
    pub h: usize,
    pub cols: usize,
    pub rows: usize,
}

/// Gap between tiles, in pixels; the gap is dark grey so that black digits stay apart.
pub const PAD: usize = 1;
const PAD_VALUE: u8 = 40;

impl Grid {
    /// Tiles `n` images of `c x h x w` bytes (c = 1 or 3) into `cols` columns.
    pub fn from_u8(images: &[u8], n: usize, c: usize, h: usize, w: usize, cols: usize) -> Grid {
        assert!(
            c == 1 || c == 3,
            "grid images need 1 or 3 channels, got {c}"
        );
        assert_eq!(
            images.len(),
            n * c * h * w,
            "image buffer does not match its shape"
        );
        let cols = cols.clamp(1, n.max(1));
        let rows = n.div_ceil(cols).max(1);
        let width = cols * w + (cols + 1) * PAD;
        let height = rows * h + (rows + 1) * PAD;
        let mut rgb = vec![PAD_VALUE; width * height * 3];
        let plane = h * w;
        for i in 0..n {
            let (r, col) = (i / cols, i % cols);
            let (x0, y0) = (PAD + col * (w + PAD), PAD + r * (h + PAD));
            let img = &images[i * c * plane..(i + 1) * c * plane];
            for y in 0..h {
                for x in 0..w {
                    let o = ((y0 + y) * width + x0 + x) * 3;
                    for ch in 0..3 {
                        rgb[o + ch] = img[(if c == 1 { 0 } else { ch }) * plane + y * w + x];
                    }
                }
            }
        }
        Grid {
            width,
            height,
            rgb,
            tiles: Some(Tiles { w, h, cols, rows }),
        }
    }

    /// The first `cols` x `rows` tiles (top left), for small screens; the whole grid if it
    /// has no tiling or is already that small.
    pub fn top_left_tiles(&self, cols: usize, rows: usize) -> Grid {
        let Some(t) = self.tiles else {
            return self.clone();
        };
        let (cols, rows) = (cols.clamp(1, t.cols), rows.clamp(1, t.rows));
        if cols == t.cols && rows == t.rows {
            return self.clone();
        }
        let width = cols * t.w + (cols + 1) * PAD;
        let height = rows * t.h + (rows + 1) * PAD;
        let mut rgb = Vec::with_capacity(width * height * 3);
        for y in 0..height {
            let o = y * self.width * 3;
            rgb.extend_from_slice(&self.rgb[o..o + width * 3]);
        }
        Grid {
            width,
            height,
            rgb,
            tiles: Some(Tiles { cols, rows, ..t }),
        }
    }

    /// Like [`Grid::from_u8`] for float images in `scale`, clamped to the displayable range.
    pub fn from_f32(
        values: &[f32],
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        cols: usize,
        scale: PixelScale,
    ) -> Grid {
        let bytes: Vec<u8> = values.iter().map(|&v| to_byte(v, scale)).collect();
        Grid::from_u8(&bytes, n, c, h, w, cols)
    }

    /// The grid enlarged `factor` times by pixel repetition (for figures and small screens).
    pub fn upscale(&self, factor: usize) -> Grid {
        let f = factor.max(1);
        let (w, h) = (self.width * f, self.height * f);
        let mut rgb = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let s = ((y / f) * self.width + x / f) * 3;
                let d = (y * w + x) * 3;
                rgb[d..d + 3].copy_from_slice(&self.rgb[s..s + 3]);
            }
        }
        // The padding is scaled too, so the 1-pixel tiling no longer describes it.
        Grid {
            width: w,
            height: h,
            rgb,
            tiles: None,
        }
    }

    /// Pixel (x, y) as RGB.
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let o = (y * self.width + x) * 3;
        [self.rgb[o], self.rgb[o + 1], self.rgb[o + 2]]
    }

    /// The PNG encoding of the grid.
    pub fn png_bytes(&self) -> Result<Vec<u8>, image::ImageError> {
        let mut out = Vec::new();
        let enc = image::codecs::png::PngEncoder::new(&mut out);
        image::ImageEncoder::write_image(
            enc,
            &self.rgb,
            self.width as u32,
            self.height as u32,
            image::ExtendedColorType::Rgb8,
        )?;
        Ok(out)
    }

    /// Writes the grid as a PNG, atomically (temporary file, then rename).
    pub fn save_png(&self, path: &Path) -> Result<(), PngError> {
        let bytes = self.png_bytes().map_err(|cause| PngError::Encode {
            path: path.to_path_buf(),
            cause,
        })?;
        crate::util::atomic_write(path, &bytes).map_err(|cause| PngError::Write {
            path: path.to_path_buf(),
            cause,
        })
    }
}

/// Why a grid could not be saved; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum PngError {
    #[error("encoding {} as PNG: {cause}", path.display())]
    Encode {
        path: std::path::PathBuf,
        cause: image::ImageError,
    },
    #[error("writing {}: {cause}", path.display())]
    Write {
        path: std::path::PathBuf,
        cause: std::io::Error,
    },
}

/// A float pixel in `scale` as a byte, clamped, with non-finite values shown as black.
pub fn to_byte(v: f32, scale: PixelScale) -> u8 {
    let u = match scale {
        PixelScale::ZeroOne => v,
        PixelScale::MinusOneOne => (v + 1.0) * 0.5,
    };
    if u.is_finite() {
        (u.clamp(0.0, 1.0) * 255.0).round() as u8
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_land_where_expected_with_padding() {
        // Two 2x2 grey images side by side: 1 px border around and between.
        let imgs = [10, 20, 30, 40, 50, 60, 70, 80];
        let g = Grid::from_u8(&imgs, 2, 1, 2, 2, 2);
        assert_eq!((g.width, g.height), (2 * 2 + 3, 2 + 2));
        assert_eq!(g.pixel(0, 0), [PAD_VALUE; 3]);
        assert_eq!(g.pixel(1, 1), [10; 3]);
        assert_eq!(g.pixel(2, 2), [40; 3]);
        assert_eq!(g.pixel(4, 1), [50; 3]);
        assert_eq!(g.pixel(5, 2), [80; 3]);
    }

    #[test]
    fn top_left_tiles_crops_whole_tiles() {
        let imgs: Vec<u8> = (0..6 * 4).map(|v| v as u8).collect();
        let g = Grid::from_u8(&imgs, 6, 1, 2, 2, 3); // 3 x 2 tiles of 2 x 2
        let s = g.top_left_tiles(2, 1);
        assert_eq!((s.width, s.height), (2 * 2 + 3, 2 + 2));
        assert_eq!(s.pixel(1, 1), g.pixel(1, 1));
        assert_eq!(s.pixel(4, 2), g.pixel(4, 2));
        assert_eq!(s.tiles.unwrap().cols, 2);
    }

    #[test]
    fn float_pixels_are_clamped_and_nan_is_black() {
        assert_eq!(to_byte(-3.0, PixelScale::ZeroOne), 0);
        assert_eq!(to_byte(2.0, PixelScale::ZeroOne), 255);
        assert_eq!(to_byte(0.0, PixelScale::MinusOneOne), 128);
        assert_eq!(to_byte(f32::NAN, PixelScale::ZeroOne), 0);
    }

    #[test]
    fn png_round_trips_through_the_decoder() {
        let imgs: Vec<u8> = (0..3 * 4 * 5).map(|v| (v * 4) as u8).collect();
        let g = Grid::from_u8(&imgs, 1, 3, 4, 5, 1);
        let decoded = image::load_from_memory(&g.png_bytes().unwrap())
            .unwrap()
            .to_rgb8();
        assert_eq!(decoded.as_raw(), &g.rgb);
    }
}
