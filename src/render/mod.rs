//! Turning images into things people look at: PNG grids, and text for any terminal.

pub mod canvas;
pub mod grid;
pub mod text;

pub use grid::Grid;
