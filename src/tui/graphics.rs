//! Pixel graphics in the terminal (sixel, kitty), for terminals that draw real pixels: a
//! sample grid then shows every pixel instead of two per character cell.
//!
//! Sixel goes through ratatui-image. Kitty graphics are written here as a direct placement
//! (transmit the pixels, place them over the area's cells, `a=T`): ratatui-image places kitty
//! images with Unicode placeholders, which need kitty 0.28 or newer (Debian 12 ships 0.26.5,
//! where they show as boxes); a direct placement works in every kitty-protocol terminal.
//! Text does not erase a kitty placement, so [`Graphics::after_draw`] deletes it on any frame
//! that did not draw it, and the UI leaves it out while a pop-up covers the grid.
//!
//! The terminal is asked once, at start and with a short time-out, which protocols it speaks
//! and how large a character cell is in pixels. Encoding a grid is the slow part (a sixel
//! stream is tens of kilobytes), so the encoded picture is cached and rebuilt only when the
//! grid, the area or the protocol changes; an unchanged frame sends nothing to the terminal.

use crate::render::Grid;
use ratatui::Frame;
use ratatui::buffer::CellDiffOption;
use ratatui::layout::{Rect, Size};
use ratatui_image::picker::cap_parser::{Parser, QueryStdioOptions, Response};
use ratatui_image::picker::{Picker, ProtocolType};
use ratatui_image::protocol::Protocol;
use ratatui_image::{Image, Resize};
use std::cell::{Cell, RefCell};
use std::num::NonZeroU16;
use std::time::Duration;

/// How sample grids are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageMode {
    /// '▀' cells with 24-bit colours: two pixels per cell, any UTF-8 terminal.
    HalfBlocks,
    /// A ten-step character ramp: any terminal, no colour needed.
    Ascii,
    /// Real pixels through the sixel protocol (xterm -ti vt340, foot, WezTerm, mlterm…).
    Sixel,
    /// Real pixels through the kitty graphics protocol (kitty, Ghostty, WezTerm).
    Kitty,
}

impl ImageMode {
    pub fn name(self) -> &'static str {
        match self {
            ImageMode::HalfBlocks => "half-blocks",
            ImageMode::Ascii => "ASCII",
            ImageMode::Sixel => "sixel",
            ImageMode::Kitty => "kitty",
        }
    }

    /// Whether this mode draws real pixels (needs a terminal that speaks the protocol).
    pub fn is_pixels(self) -> bool {
        matches!(self, ImageMode::Sixel | ImageMode::Kitty)
    }
}

/// How long the start-up query waits for the terminal's answers. A terminal that answers at
/// all does so within milliseconds, even over SSH; one that does not should not delay start-up.
pub const QUERY_TIMEOUT: Duration = Duration::from_millis(600);

/// What the terminal can draw, and the cache of the last encoded grid.
pub struct Graphics {
    picker: Picker,
    /// The pixel modes this terminal answered for (sixel, kitty), best first.
    pub available: Vec<ImageMode>,
    cache: RefCell<Option<Cached>>,
    /// A kitty placement is on the screen (drawn by an earlier frame, not yet deleted).
    kitty_shown: Cell<bool>,
    /// The frame being drawn has placed the kitty picture.
    kitty_drawn: Cell<bool>,
}

struct Cached {
    grid: Grid,
    area: Rect,
    mode: ImageMode,
    picture: Picture,
}

/// An encoded grid, ready to draw.
enum Picture {
    Protocol(Protocol),
    /// The escape sequences that blank the cells, replace the previous kitty image and
    /// place this one, and the rectangle of cells it covers.
    Kitty(String, Rect),
}

/// The kitty image id genmod uses for its one picture.
const KITTY_IMAGE_ID: u32 = 0x67_6d;

/// Deletes the kitty image and frees its data.
fn kitty_delete() -> String {
    format!("\x1b_Ga=d,d=I,i={KITTY_IMAGE_ID},q=2\x1b\\")
}

/// Transmits `rgb` (width x height, 8-bit RGB) zlib-compressed and places it over `cols` x
/// `rows` cells at the cursor without moving it, replacing the previous picture. The payload
/// goes in base64 chunks of at most 4096 bytes, as the protocol requires.
fn kitty_place(rgb: &[u8], width: usize, height: usize, cols: u16, rows: u16) -> String {
    use base64::Engine;
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    let packed = z
        .write_all(rgb)
        .and_then(|_| z.finish())
        .unwrap_or_default();
    let payload = base64::engine::general_purpose::STANDARD.encode(packed);
    let mut out = kitty_delete();
    let chunks: Vec<&[u8]> = payload.as_bytes().chunks(4096).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let more = u8::from(i + 1 < chunks.len());
        let chunk = std::str::from_utf8(chunk).unwrap_or_default();
        if i == 0 {
            out.push_str(&format!(
                "\x1b_Ga=T,f=24,o=z,s={width},v={height},i={KITTY_IMAGE_ID},c={cols},r={rows},C=1,q=2,m={more};{chunk}\x1b\\"
            ));
        } else {
            out.push_str(&format!("\x1b_Gm={more};{chunk}\x1b\\"));
        }
    }
    out
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
            kitty_shown: Cell::new(false),
            kitty_drawn: Cell::new(false),
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
                Some(picture) => {
                    *cache = Some(Cached {
                        grid: grid.clone(),
                        area,
                        mode,
                        picture,
                    })
                }
                None => {
                    *cache = None;
                    return;
                }
            }
        }
        match cache.as_ref().map(|c| &c.picture) {
            Some(Picture::Protocol(p)) => f.render_widget(Image::new(p), area),
            Some(Picture::Kitty(escape, covered)) => {
                // The whole picture travels in the corner cell; the cells it covers are
                // skipped so ratatui writes nothing over them (the rest of the area stays
                // ordinary cells, so stale text there is cleared).
                let buf = f.buffer_mut();
                for y in covered.top()..covered.bottom() {
                    for x in covered.left()..covered.right() {
                        buf[(x, y)].set_diff_option(CellDiffOption::Skip);
                    }
                }
                // One column wide whatever the escape's length, or ratatui's diff would
                // take its printable bytes for as many columns and skip the cells after it.
                buf[(covered.x, covered.y)]
                    .set_symbol(escape)
                    .set_diff_option(CellDiffOption::ForcedWidth(NonZeroU16::MIN));
                self.kitty_drawn.set(true);
            }
            None => {}
        }
    }

    /// Call after each frame is flushed: a kitty picture that this frame did not draw (the
    /// view changed, a pop-up covers it, another image mode) is deleted from the screen.
    pub fn after_draw(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        if self.kitty_drawn.replace(false) {
            self.kitty_shown.set(true);
        } else if self.kitty_shown.replace(false) {
            out.write_all(kitty_delete().as_bytes())?;
            out.flush()?;
        }
        Ok(())
    }

    fn encode(&self, area: Rect, grid: &Grid, mode: ImageMode) -> Option<Picture> {
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
        if mode == ImageMode::Kitty {
            // kitty scales the picture to the cells it is given, so the grid travels at its
            // own size (a fraction of the upscaled bytes) over as many columns and rows as
            // the upscaled picture would cover.
            let cols = (shown.width * factor)
                .div_ceil(cw as usize)
                .min(area.width as usize);
            let rows = (shown.height * factor)
                .div_ceil(ch as usize)
                .min(area.height as usize);
            let covered = Rect::new(area.x, area.y, cols as u16, rows as u16);
            // Text under a kitty picture stays in the terminal's cells (a pop-up that was
            // there, say) and would show again when the picture goes: blank the cells first
            // (ECH on each row), then come back to the corner to place it.
            let mut escape = String::new();
            for row in covered.top()..covered.bottom() {
                escape.push_str(&format!(
                    "\x1b[{};{}H\x1b[{}X",
                    row + 1,
                    covered.x + 1,
                    cols
                ));
            }
            escape.push_str(&format!("\x1b[{};{}H", covered.y + 1, covered.x + 1));
            escape.push_str(&kitty_place(
                &shown.rgb,
                shown.width,
                shown.height,
                cols as u16,
                rows as u16,
            ));
            return Some(Picture::Kitty(escape, covered));
        }
        let big = shown.upscale(factor);
        let image = image::RgbImage::from_raw(big.width as u32, big.height as u32, big.rgb)?;
        let mut picker = self.picker.clone();
        picker.set_protocol_type(ProtocolType::Sixel);
        picker
            .new_protocol(
                image::DynamicImage::ImageRgb8(image),
                Size::new(area.width, area.height),
                Resize::Fit(None),
            )
            .ok()
            .map(Picture::Protocol)
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

    /// The value of `key` in the control data of a kitty command.
    fn control<'a>(command: &'a str, key: &str) -> Option<&'a str> {
        let controls = command.split(';').next()?;
        controls
            .split(',')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }

    #[test]
    fn kitty_mode_transmits_the_grid_and_places_it_over_the_area() {
        use base64::Engine;
        use std::io::Read;
        let mut g = Graphics::none();
        g.force(ImageMode::Kitty);
        let s = first_cell(&g, ImageMode::Kitty, Rect::new(0, 0, 30, 12));
        let commands: Vec<&str> = s
            .split("\x1b_G")
            .skip(1)
            .map(|c| {
                c.strip_suffix("\x1b\\")
                    .expect("command not terminated by ST")
            })
            .collect();
        // Delete the previous picture, then transmit-and-place in chunks.
        assert_eq!(control(commands[0], "a"), Some("d"));
        let first = commands[1];
        assert_eq!(control(first, "a"), Some("T"));
        assert_eq!(control(first, "f"), Some("24"));
        assert_eq!(control(first, "o"), Some("z"));
        assert_eq!(control(first, "C"), Some("1"), "the cursor must not move");
        let (w, h): (usize, usize) = (
            control(first, "s").unwrap().parse().unwrap(),
            control(first, "v").unwrap().parse().unwrap(),
        );
        let cols: u16 = control(first, "c").unwrap().parse().unwrap();
        let rows: u16 = control(first, "r").unwrap().parse().unwrap();
        assert!(cols <= 30 && rows <= 12 && cols > 0 && rows > 0);
        // The chunks: every one but the last says more follow; each payload ≤ 4096 bytes.
        let payload: String = commands[1..]
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let more = control(c, "m").unwrap();
                assert_eq!(more, if i + 2 < commands.len() { "1" } else { "0" });
                let data = c.split_once(';').unwrap().1;
                assert!(data.len() <= 4096);
                data
            })
            .collect();
        let packed = base64::engine::general_purpose::STANDARD
            .decode(payload)
            .unwrap();
        let mut rgb = Vec::new();
        flate2::read::ZlibDecoder::new(&packed[..])
            .read_to_end(&mut rgb)
            .unwrap();
        assert_eq!(
            rgb.len(),
            w * h * 3,
            "the payload is the {w}x{h} RGB picture"
        );
        assert!(
            rgb.contains(&255) && rgb.contains(&0),
            "the grid's two colours"
        );
    }

    #[test]
    fn a_kitty_picture_skips_its_cells_and_is_deleted_when_a_frame_leaves_it_out() {
        let mut g = Graphics::none();
        g.force(ImageMode::Kitty);
        let mut term = Terminal::new(TestBackend::new(40, 20)).unwrap();
        let grid = digits_grid();
        let area = Rect::new(2, 1, 30, 12);
        let mut buf = None;
        term.draw(|f| {
            g.render(f, area, &grid, ImageMode::Kitty);
            buf = Some(f.buffer_mut().clone());
        })
        .unwrap();
        let buf = buf.unwrap();
        assert_eq!(
            buf[(2, 1)].diff_option,
            CellDiffOption::ForcedWidth(NonZeroU16::MIN),
            "the corner cell must count as one column"
        );
        assert_eq!(buf[(3, 1)].diff_option, CellDiffOption::Skip);
        assert_eq!(buf[(0, 0)].diff_option, CellDiffOption::None);
        let mut out = Vec::new();
        g.after_draw(&mut out).unwrap();
        assert!(out.is_empty(), "a drawn picture stays");
        term.draw(|_| {}).unwrap(); // a frame without the picture (a pop-up, say)
        g.after_draw(&mut out).unwrap();
        let deleted = String::from_utf8(out.clone()).unwrap();
        assert_eq!(
            control(deleted.trim_start_matches("\x1b_G"), "a"),
            Some("d")
        );
        out.clear();
        term.draw(|_| {}).unwrap();
        g.after_draw(&mut out).unwrap();
        assert!(out.is_empty(), "deleted once, not on every frame");
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
