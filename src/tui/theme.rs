//! The TUI's colours, in one place: drawing code names a colour by its role, so that a
//! second palette (a light background, no colour) changes this file only.

use ratatui::style::Color;

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
};

/// The palette in use.
pub const THEME: Theme = DARK;
