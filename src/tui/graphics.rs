//! Pixel graphics in the terminal (sixel, kitty) through ratatui-image, for terminals that
//! draw real pixels: a sample grid then shows every pixel instead of two per character cell.
//!
//! The terminal is asked once, at start and with a short time-out, which protocols it speaks
//! and how large a character cell is in pixels. Encoding a grid is the slow part (a sixel
//! stream is tens of kilobytes), so the encoded picture is cached and rebuilt only when the
//! grid, the area or the protocol changes; an unchanged frame sends nothing to the terminal.

use super::app::ImageMode;
use crate::render::Grid;
use ratatui::Frame;
use ratatui::layout::{Rect, Size};
use ratatui_image::picker::cap_parser::{Parser, QueryStdioOptions, Response};
use ratatui_image::picker::{Picker, ProtocolType};
use ratatui_image::protocol::Protocol;
use ratatui_image::{Image, Resize};
use std::cell::RefCell;
use std::time::Duration;

/// How long the start-up query waits for the terminal's answers. A terminal that answers at
/// all does so within milliseconds, even over SSH; one that does not should not delay start-up.
pub const QUERY_TIMEOUT: Duration = Duration::from_millis(600);

/// What the terminal can draw, and the cache of the last encoded grid.
pub struct Graphics {
    picker: Picker,
    /// The pixel modes this terminal answered for (sixel, kitty), best first.
    pub available: Vec<ImageMode>,
    cache: RefCell<Option<Cached>>,
}

struct Cached {
    grid: Grid,
    area: Rect,
    mode: ImageMode,
    protocol: Protocol,
}

impl Graphics {
    /// Asks the terminal (already in raw mode on the alternate screen) for its graphics
    /// protocols and cell size. A terminal that does not answer gets no pixel modes.
    ///
    /// ratatui-image has a query of its own, but when a terminal stays silent it leaves a
    /// thread blocked reading stdin, which then swallows the user's keys (seen in tmux,
    /// which answers nothing it would pass through). Here the same query is written and the
    /// answers are read on this thread with `poll`, and reading stops at the deadline.
    pub fn query() -> Self {
        let tmux = std::env::var_os("TMUX").is_some_and(|v| !v.is_empty());
        let responses = read_answers(QUERY_TIMEOUT);
        let (available, cell) = interpret(&responses, tmux);
        let cell = cell.or_else(|| {
            // The cell size from the pixel size the kernel keeps for the tty, if any.
            let w = crossterm::terminal::window_size().ok()?;
            (w.width > 0 && w.height > 0 && w.columns > 0 && w.rows > 0)
                .then(|| (w.width / w.columns, w.height / w.rows))
        });
        #[allow(deprecated)] // the replacement queries the terminal itself, as above
        let picker = Picker::from_fontsize(cell.unwrap_or((10, 20)).into());
        Self::with_picker(picker, available)
    }

    /// No pixel modes: the text renderers only (tests, and terminals that said nothing).
    pub fn none() -> Self {
        Self::with_picker(Picker::halfblocks(), Vec::new())
    }

    fn with_picker(picker: Picker, available: Vec<ImageMode>) -> Self {
        Self {
            picker,
            available,
            cache: RefCell::new(None),
        }
    }

    /// Makes `mode` usable even though the terminal did not claim it (the user forced it with
    /// `--image-mode`; some terminals speak a protocol without announcing it).
    pub fn force(&mut self, mode: ImageMode) {
        if mode.is_pixels() && !self.available.contains(&mode) {
            self.available.insert(0, mode);
        }
    }

    /// The terminal's character cell in pixels (width, height), as it reported it or guessed.
    pub fn cell_pixels(&self) -> (u16, u16) {
        let s = self.picker.font_size();
        (s.width.max(1), s.height.max(1))
    }

    /// Draws `grid` into `area` with a pixel protocol, scaled up by the largest whole factor
    /// that fits, as many whole tiles as fit at one image pixel per screen pixel.
    pub fn render(&self, f: &mut Frame, area: Rect, grid: &Grid, mode: ImageMode) {
        if area.width == 0 || area.height == 0 || !mode.is_pixels() {
            return;
        }
        let mut cache = self.cache.borrow_mut();
        let fresh = cache
            .as_ref()
            .is_some_and(|c| c.area == area && c.mode == mode && c.grid == *grid);
        if !fresh {
            match self.encode(area, grid, mode) {
                Some(protocol) => {
                    *cache = Some(Cached {
                        grid: grid.clone(),
                        area,
                        mode,
                        protocol,
                    })
                }
                None => {
                    *cache = None;
                    return;
                }
            }
        }
        if let Some(c) = cache.as_ref() {
            f.render_widget(Image::new(&c.protocol), area);
        }
    }

    fn encode(&self, area: Rect, grid: &Grid, mode: ImageMode) -> Option<Protocol> {
        let (cw, ch) = self.cell_pixels();
        let (px_w, px_h) = (
            area.width as usize * cw as usize,
            area.height as usize * ch as usize,
        );
        let shown = match grid.tiles {
            Some(t) => grid.top_left_tiles(
                (px_w / (t.w + crate::render::grid::PAD)).max(1),
                (px_h / (t.h + crate::render::grid::PAD)).max(1),
            ),
            None => grid.clone(),
        };
        let factor = (px_w / shown.width).min(px_h / shown.height).max(1);
        let big = shown.upscale(factor);
        let image = image::RgbImage::from_raw(big.width as u32, big.height as u32, big.rgb)?;
        let mut picker = self.picker.clone();
        picker.set_protocol_type(match mode {
            ImageMode::Kitty => ProtocolType::Kitty,
            _ => ProtocolType::Sixel,
        });
        picker
            .new_protocol(
                image::DynamicImage::ImageRgb8(image),
                Size::new(area.width, area.height),
                Resize::Fit(None),
            )
            .ok()
    }
}

/// Writes ratatui-image's capability query (kitty, device attributes, cell size, then a
/// status report every terminal answers) and collects the answers until the status report
/// arrives or `timeout` passes.
#[cfg(unix)]
fn read_answers(timeout: Duration) -> Vec<Response> {
    use std::io::{Read, Write};
    use std::time::Instant;
    let query = Parser::query(false, QueryStdioOptions::default());
    let mut out = std::io::stdout();
    if out
        .write_all(query.as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        return Vec::new();
    }
    let deadline = Instant::now() + timeout;
    let mut parser = Parser::new();
    let mut answers = Vec::new();
    let mut stdin = std::io::stdin();
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return answers;
        }
        let mut fd = libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, the count says one.
        let ready = unsafe { libc::poll(&mut fd, 1, left.as_millis().min(60_000) as libc::c_int) };
        if ready <= 0 || fd.revents & libc::POLLIN == 0 {
            return answers;
        }
        let n = match stdin.read(&mut buf) {
            Ok(0) | Err(_) => return answers,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            for r in parser.push(char::from(b)) {
                if r == Response::Status {
                    return answers;
                }
                answers.push(r);
            }
        }
    }
}

#[cfg(not(unix))]
fn read_answers(_timeout: Duration) -> Vec<Response> {
    Vec::new()
}

/// The pixel modes (best first) and cell size (width, height) that the answers promise.
/// Inside tmux the answers are tmux's own: kitty graphics do not pass through it.
fn interpret(answers: &[Response], tmux: bool) -> (Vec<ImageMode>, Option<(u16, u16)>) {
    let mut modes = Vec::new();
    if !tmux && answers.contains(&Response::Kitty) {
        modes.push(ImageMode::Kitty);
    }
    if answers.contains(&Response::Sixel) {
        modes.push(ImageMode::Sixel);
    }
    let cell = answers.iter().find_map(|r| match r {
        Response::CellSize(c) => *c,
        _ => None,
    });
    (modes, cell)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn digits_grid() -> Grid {
        // Four 28x28 "images": a bright square on black, so the encoder has two colours.
        let mut images = vec![0u8; 4 * 28 * 28];
        for (i, px) in images.iter_mut().enumerate() {
            let (x, y) = (i % 28, (i / 28) % 28);
            if (8..20).contains(&x) && (8..20).contains(&y) {
                *px = 255;
            }
        }
        Grid::from_u8(&images, 4, 1, 28, 28, 2)
    }

    fn first_cell(g: &Graphics, mode: ImageMode, area: Rect) -> String {
        let mut term = Terminal::new(TestBackend::new(40, 20)).unwrap();
        let grid = digits_grid();
        term.draw(|f| g.render(f, area, &grid, mode)).unwrap();
        term.backend().buffer()[(area.x, area.y)]
            .symbol()
            .to_string()
    }

    #[test]
    fn sixel_mode_emits_one_dcs_sixel_sequence_at_the_area_corner() {
        let mut g = Graphics::none();
        g.force(ImageMode::Sixel);
        let s = first_cell(&g, ImageMode::Sixel, Rect::new(2, 3, 30, 12));
        // The area is erased (ECH per row), then DCS … q <sixel data> ST: the whole picture
        // travels in the corner cell.
        let dcs = s.find("\x1bP").expect("no DCS in the corner cell");
        let sixel = &s[dcs..];
        assert!(
            sixel[..12].contains('q'),
            "not a sixel stream: {:?}",
            &sixel[..12]
        );
        assert!(
            sixel.contains("\x1b\\"),
            "the sixel stream is not terminated"
        );
        assert!(
            sixel.len() > 200,
            "a 2x2 digit grid cannot be {} bytes",
            sixel.len()
        );
    }

    #[test]
    fn kitty_mode_emits_kitty_graphics_commands() {
        let mut g = Graphics::none();
        g.force(ImageMode::Kitty);
        let s = first_cell(&g, ImageMode::Kitty, Rect::new(0, 0, 30, 12));
        assert!(
            s.contains("\x1b_G"),
            "no kitty APC command in {:?}",
            &s[..s.len().min(40)]
        );
    }

    #[test]
    fn an_unchanged_grid_is_not_encoded_again_but_a_new_area_is() {
        let mut g = Graphics::none();
        g.force(ImageMode::Sixel);
        let a = first_cell(&g, ImageMode::Sixel, Rect::new(0, 0, 30, 12));
        let again = first_cell(&g, ImageMode::Sixel, Rect::new(0, 0, 30, 12));
        assert_eq!(a, again);
        let smaller = first_cell(&g, ImageMode::Sixel, Rect::new(0, 0, 6, 3));
        assert!(
            smaller.len() < a.len(),
            "a smaller area must give a smaller picture"
        );
    }

    #[test]
    fn forcing_a_text_mode_adds_no_pixel_mode() {
        let mut g = Graphics::none();
        g.force(ImageMode::Ascii);
        assert!(g.available.is_empty());
        g.force(ImageMode::Sixel);
        g.force(ImageMode::Sixel);
        assert_eq!(g.available, vec![ImageMode::Sixel]);
    }

    fn answers(raw: &str) -> Vec<Response> {
        let mut p = Parser::new();
        raw.chars().flat_map(|c| p.push(c)).collect()
    }

    #[test]
    fn answers_of_real_terminals_are_read_as_expected() {
        // xterm -ti vt340: DA1 lists 4 (sixel), and CSI 16 t gives a 6x13 cell.
        let xterm = answers("\x1b[?63;1;2;4;6;9;15;16;22;28c\x1b[6;13;6t");
        assert_eq!(
            interpret(&xterm, false),
            (vec![ImageMode::Sixel], Some((6, 13)))
        );
        // kitty: answers the graphics query; it has no sixel.
        let kitty = answers("\x1b_Gi=31;OK\x1b\\\x1b[?62;c\x1b[6;20;10t");
        assert_eq!(
            interpret(&kitty, false),
            (vec![ImageMode::Kitty], Some((10, 20)))
        );
        assert_eq!(
            interpret(&kitty, true).0,
            vec![],
            "kitty graphics do not cross tmux"
        );
        // tmux 3.3 and most terminals: DA1 without 4, no cell size.
        let plain = answers("\x1b[?1;2c");
        assert_eq!(interpret(&plain, false), (vec![], None));
        assert_eq!(interpret(&[], false), (vec![], None));
    }
}
