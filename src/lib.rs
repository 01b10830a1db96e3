//! # genmod
//!
//! Classical and deep generative models, from the multinomial over the Play Tennis table to
//! conditional GANs, following the student report "Generative Modelling and GANs"
//! (IIT (BHU) Varanasi, 2023) and correcting it where it is wrong.
//!
//! * [`data`]: the datasets (embedded MNIST digits, IDX, CIFAR-10, image folders, Play
//!   Tennis) behind one [`data::Dataset`] type, and verified downloads.
//! * [`classical`]: multinomial, naive Bayes, Gaussian naive Bayes, GDA and Gaussian
//!   mixtures with EM (report 3.1–3.5), exact in f64.
//! * [`render`]: sample grids as PNG files and as terminal text.

pub mod bench;
pub mod classical;
pub mod cli;
pub mod data;
pub mod neural;
pub mod render;
pub mod train;
pub mod tui;
pub mod util;
