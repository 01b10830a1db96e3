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
//! * [`neural`]: the autoencoder, VAE, GAN, DCGAN and conditional GAN on candle, with the
//!   optimiser and the CPU kernels beneath them.
//! * [`train`]: the trainer: one run's loop, events, checkpoints and devices.
//! * [`eval`], [`figures`], [`bench`](mod@bench): the scoreboard, the book's figures and the timings.
//! * [`tui`], [`cli`]: the faces' shared parts; `src/bin` holds the two binaries.
//! * [`render`]: sample grids as PNG files and as terminal text.
//!
//! Modules depend one way, left to right: data → classical, neural → train → eval, figures,
//! bench → tui, cli → the binaries.
//!
//! # Training a model
//!
//! [`train::train`] runs a training loop on a thread of its own and hands its events to a
//! callback; a stop flag ends it early with a checkpoint. Here a small VAE learns from 256
//! of the embedded digits for 20 steps, and its test loss falls:
//!
//! ```
//! use genmod::data::{Split, mnist};
//! use genmod::neural::{self, Metric, ModelKind, NeuralConfig};
//! use genmod::train::{self, TrainConfig, TrainEvent};
//! use std::sync::atomic::AtomicBool;
//!
//! let digits = mnist::embedded();
//! let split = Split { train: digits.train.take(256), test: digits.test.take(128) };
//! let mut model = NeuralConfig::new(ModelKind::Vae);
//! model.hidden = 64;
//! model.iw_samples = 2;
//! model.code_components = 16; // the default 400 needs at least 400 training images
//! let mut cfg = TrainConfig::new(model);
//! cfg.batch_size = 64;
//! cfg.epochs = 5; // 4 steps an epoch
//!
//! let stop = AtomicBool::new(false); // a signal handler could set it
//! let mut test_loss = Vec::new();
//! train::train(cfg, split, None, &stop, |event| {
//!     if let TrainEvent::Epoch { test, .. } = event {
//!         test_loss.push(neural::metric(test, Metric::NegElbo).unwrap());
//!     }
//! })?;
//! assert_eq!(test_loss.len(), 5);
//! assert!(test_loss[4] < test_loss[0], "{test_loss:?}");
//! # Ok::<(), genmod::train::TrainError>(())
//! ```

pub mod bench;
pub mod classical;
pub mod cli;
pub mod data;
pub mod eval;
pub mod figures;
pub mod neural;
pub mod render;
pub mod train;
pub mod tui;
pub mod util;

// The book's chapters as doctests: `cargo test` compiles and runs every Rust block of
// every chapter listed in book/src/SUMMARY.md (tests/book.rs checks none is missing).
#[cfg(doctest)]
mod book {
    #[doc = include_str!("../book/src/ch01-introduction.md")]
    #[allow(non_camel_case_types)]
    pub struct Chapter_ch01_introduction;
    #[doc = include_str!("../book/src/ch02-generative-modelling.md")]
    #[allow(non_camel_case_types)]
    pub struct Chapter_ch02_generative_modelling;
    #[doc = include_str!("../book/src/ch03-00-classical.md")]
    #[allow(non_camel_case_types)]
    pub struct Chapter_ch03_00_classical;
    #[doc = include_str!("../book/src/ch03-01-multinomial.md")]
    #[allow(non_camel_case_types)]
    pub struct Chapter_ch03_01_multinomial;
    #[doc = include_str!("../book/src/ch03-02-naive-bayes.md")]
    #[allow(non_camel_case_types)]
    pub struct Chapter_ch03_02_naive_bayes;
    #[doc = include_str!("../book/src/ch03-03-gaussian-naive-bayes.md")]
    #[allow(non_camel_case_types)]
    pub struct Chapter_ch03_03_gaussian_naive_bayes;
    #[doc = include_str!("../book/src/ch03-04-gda.md")]
    #[allow(non_camel_case_types)]
    pub struct Chapter_ch03_04_gda;
    #[doc = include_str!("../book/src/ch03-05-gmm.md")]
    #[allow(non_camel_case_types)]
    pub struct Chapter_ch03_05_gmm;
    #[doc = include_str!("../book/src/ch03-06-autoencoders.md")]
    #[allow(non_camel_case_types)]
    pub struct Chapter_ch03_06_autoencoders;
    #[doc = include_str!("../book/src/ch03-07-vae.md")]
    #[allow(non_camel_case_types)]
    pub struct Chapter_ch03_07_vae;
    #[doc = include_str!("../book/src/ch04-00-gans.md")]
    #[allow(non_camel_case_types)]
    pub struct Chapter_ch04_00_gans;
    #[doc = include_str!("../book/src/ch04-01-gan.md")]
    #[allow(non_camel_case_types)]
    pub struct Chapter_ch04_01_gan;
    #[doc = include_str!("../book/src/ch04-02-dcgan.md")]
    #[allow(non_camel_case_types)]
    pub struct Chapter_ch04_02_dcgan;
    #[doc = include_str!("../book/src/ch04-03-cgan.md")]
    #[allow(non_camel_case_types)]
    pub struct Chapter_ch04_03_cgan;
    #[doc = include_str!("../book/src/ch04-04-other-datasets.md")]
    #[allow(non_camel_case_types)]
    pub struct Chapter_ch04_04_other_datasets;
    #[doc = include_str!("../book/src/ch05-conclusions.md")]
    #[allow(non_camel_case_types)]
    pub struct Chapter_ch05_conclusions;
    #[doc = include_str!("../book/src/errata.md")]
    #[allow(non_camel_case_types)]
    pub struct Chapter_errata;
    #[doc = include_str!("../book/src/exercises.md")]
    #[allow(non_camel_case_types)]
    pub struct Chapter_exercises;
}
