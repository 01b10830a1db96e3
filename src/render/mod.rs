//! Turning images into things people look at: PNG grids, and text for any terminal.

pub mod grid;
pub mod plot;
pub mod text;

pub use grid::Grid;
