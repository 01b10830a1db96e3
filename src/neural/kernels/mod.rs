//! CPU kernels behind the models' layers: each layer's forward and backward pass as one
//! candle custom op, so that products accumulate in place and only the gradients someone
//! reads are computed. Private to `neural`: the models are their only callers, and every
//! kernel falls back to candle's own ops on other devices.

pub mod batch_norm;
pub mod conv;
pub mod cpu;
pub mod fused;
pub mod linear;
mod winograd;
