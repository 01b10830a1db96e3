//! The TUI's colours, in one place: drawing code names a colour by its role, and the
//! palette is chosen once at start: dark backgrounds (the default), light ones, or none at
//! all where the user set `NO_COLOR` (<https://no-color.org>).

use ratatui::style::Color;
use std::sync::OnceLock;

/// Colours by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    /// Secondary text: hints, footers, axes, disabled fields.
    pub dim: Color,
    /// Invalid fields and failed runs.
    pub error: Color,
    /// Messages that want attention: status lines, the quit confirmation.
    pub attention: Color,
    /// The focused widget and the keys in the help.
    pub accent: Color,
    pub running: Color,
    pub paused: Color,
    pub finished: Color,
    /// The progress bar and its track.
    pub gauge: Color,
    pub gauge_track: Color,
    /// The lines of a chart, in order.
    pub series: [Color; 4],
    /// Whether raw values can be drawn faint behind their average (not without colour,
    /// where the two would look alike).
    pub raw_behind_average: bool,
}

/// The palette for dark terminal backgrounds (the common default).
pub const DARK: Theme = Theme {
    dim: Color::DarkGray,
    error: Color::Red,
    attention: Color::Yellow,
    accent: Color::Cyan,
    running: Color::Green,
    paused: Color::Yellow,
    finished: Color::Cyan,
    gauge: Color::Blue,
    gauge_track: Color::Black,
    series: [Color::Cyan, Color::Yellow, Color::Magenta, Color::Green],
    raw_behind_average: true,
};

/// The palette for light backgrounds: no yellow or cyan text, which fades on white.
pub const LIGHT: Theme = Theme {
    dim: Color::Gray,
    error: Color::Red,
    attention: Color::Indexed(130),
    accent: Color::Blue,
    running: Color::Indexed(28),
    paused: Color::Indexed(130),
    finished: Color::Blue,
    gauge: Color::Blue,
    gauge_track: Color::Indexed(253),
    series: [
        Color::Blue,
        Color::Indexed(130),
        Color::Magenta,
        Color::Indexed(28),
    ],
    raw_behind_average: true,
};

/// No colour at all: the terminal's own foreground and background everywhere.
pub const MONO: Theme = Theme {
    dim: Color::Reset,
    error: Color::Reset,
    attention: Color::Reset,
    accent: Color::Reset,
    running: Color::Reset,
    paused: Color::Reset,
    finished: Color::Reset,
    gauge: Color::Reset,
    gauge_track: Color::Reset,
    series: [Color::Reset; 4],
    raw_behind_average: false,
};

static CHOSEN: OnceLock<Theme> = OnceLock::new();

/// The palette for this environment when none was chosen: [`MONO`] where `NO_COLOR` is set
/// to anything but the empty string, else [`DARK`].
pub fn from_environment() -> Theme {
    match std::env::var_os("NO_COLOR") {
        Some(v) if !v.is_empty() => MONO,
        _ => DARK,
    }
}

/// Chooses the palette for the rest of the process; false if one was already in use.
pub fn choose(theme: Theme) -> bool {
    CHOSEN.set(theme).is_ok()
}

/// The palette in use (read as `THEME.dim` and so on).
pub struct Current;

impl std::ops::Deref for Current {
    type Target = Theme;
    fn deref(&self) -> &Theme {
        CHOSEN.get_or_init(from_environment)
    }
}

/// The palette in use.
pub static THEME: Current = Current;
