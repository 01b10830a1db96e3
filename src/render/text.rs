//! Images as terminal text: Unicode half-blocks (two pixels a cell, 24-bit colour) and
//! plain ASCII shading (works anywhere, even without colour).

use super::Grid;

/// Darkest to brightest; ten steps read well on both light and dark themes.
pub const ASCII_RAMP: &[u8] = b" .:-=+*#%@";

/// Brightness of a pixel, 0..=255 (Rec. 601 luma).
pub fn luma(p: [u8; 3]) -> u8 {
    ((p[0] as u32 * 299 + p[1] as u32 * 587 + p[2] as u32 * 114) / 1000) as u8
}

/// Samples the grid down to `cols` x `rows` cells (nearest neighbour, aspect kept by the
/// caller), returning for each cell the pixel under it.
pub fn sample(grid: &Grid, cols: usize, rows: usize) -> Vec<Vec<[u8; 3]>> {
    let (cols, rows) = (cols.max(1), rows.max(1));
    (0..rows)
        .map(|r| {
            (0..cols)
                .map(|c| {
                    let x = (c * grid.width / cols).min(grid.width - 1);
                    let y = (r * grid.height / rows).min(grid.height - 1);
                    grid.pixel(x, y)
                })
                .collect()
        })
        .collect()
}

/// ASCII shading of the grid in `cols` x `rows` characters.
pub fn ascii(grid: &Grid, cols: usize, rows: usize) -> Vec<String> {
    sample(grid, cols, rows)
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|p| {
                    let i = luma(p) as usize * (ASCII_RAMP.len() - 1) / 255;
                    ASCII_RAMP[i] as char
                })
                .collect()
        })
        .collect()
}

/// Half-block cells: for each cell the (top, bottom) pixel colours, drawn as '▀' with the
/// top as foreground and the bottom as background. `rows` is in cells (two pixels each).
pub fn half_blocks(grid: &Grid, cols: usize, rows: usize) -> Vec<Vec<([u8; 3], [u8; 3])>> {
    let px = sample(grid, cols, rows * 2);
    px.chunks(2)
        .map(|pair| {
            let bottom = pair.get(1).unwrap_or(&pair[0]);
            pair[0]
                .iter()
                .copied()
                .zip(bottom.iter().copied())
                .collect()
        })
        .collect()
}

/// The largest (cols, rows) of cells that fit in `max_cols` x `max_rows` and keep the
/// grid's aspect ratio, for a renderer with `px_per_row` vertical pixels per cell row.
pub fn fit(grid: &Grid, max_cols: usize, max_rows: usize, px_per_row: usize) -> (usize, usize) {
    let aspect = grid.height as f64 / grid.width as f64;
    let mut cols = max_cols.max(1);
    let mut rows = ((cols as f64 * aspect) / px_per_row as f64)
        .round()
        .max(1.0) as usize;
    if rows > max_rows {
        rows = max_rows.max(1);
        cols = ((rows * px_per_row) as f64 / aspect).round().max(1.0) as usize;
    }
    (cols.min(max_cols.max(1)), rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_maps_black_to_space_and_white_to_at() {
        let g = Grid {
            width: 2,
            height: 1,
            rgb: vec![0, 0, 0, 255, 255, 255],
            tiles: None,
        };
        assert_eq!(ascii(&g, 2, 1), vec![" @".to_string()]);
    }

    #[test]
    fn half_blocks_pair_rows() {
        let g = Grid {
            width: 1,
            height: 2,
            rgb: vec![1, 2, 3, 4, 5, 6],
            tiles: None,
        };
        assert_eq!(half_blocks(&g, 1, 1), vec![vec![([1, 2, 3], [4, 5, 6])]]);
    }

    #[test]
    fn fit_keeps_aspect_inside_the_box() {
        let g = Grid {
            width: 100,
            height: 100,
            rgb: vec![0; 30000],
            tiles: None,
        };
        assert_eq!(fit(&g, 40, 100, 2), (40, 20));
        assert_eq!(fit(&g, 100, 10, 2), (20, 10));
    }
}
