//! The classical models by name, fitted on an image dataset with one call: what the CLI,
//! the TUI and the figure generator share, so that each front end stays wiring only.

use super::gaussian_nb::GaussianNbParams;
use super::gda::{CovarianceKind, GdaParams};
use super::gmm::{GmmCovariance, GmmParams, GmmPerClass};
use super::naive_bayes::NaiveBayesParams;
use super::{
    ClassConditional, Density, LikelihoodSummary, Result, binarised_features, dequantised_features,
    labels,
};
use crate::data::{Dataset, Split};
use crate::render::Grid;
use faer::Mat;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// The image models of report 3.2–3.5 (the multinomial of 3.1 works on Play Tennis only),
/// in report order; the command line takes the kebab-case names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImageModel {
    /// Bernoulli naive Bayes on pixels binarised at 0.5 (3.2).
    #[value(alias = "nb")]
    NaiveBayes,
    /// Gaussian naive Bayes (3.3).
    #[value(alias = "gnb")]
    GaussianNb,
    /// GDA with one shared covariance (3.4).
    #[value(alias = "gda")]
    Lda,
    /// GDA with a covariance per class (3.4).
    Qda,
    /// A Gaussian mixture fitted by EM, unsupervised (3.5).
    Gmm,
    /// One Gaussian mixture per class (3.5, figure 3.6).
    GmmPerClass,
}

impl ImageModel {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            ImageModel::NaiveBayes => "naive-bayes",
            ImageModel::GaussianNb => "gaussian-nb",
            ImageModel::Lda => "lda",
            ImageModel::Qda => "qda",
            ImageModel::Gmm => "gmm",
            ImageModel::GmmPerClass => "gmm-per-class",
        }
    }

    /// The report section the model comes from.
    pub fn section(self) -> &'static str {
        match self {
            ImageModel::NaiveBayes => "3.2",
            ImageModel::GaussianNb => "3.3",
            ImageModel::Lda | ImageModel::Qda => "3.4",
            ImageModel::Gmm | ImageModel::GmmPerClass => "3.5",
        }
    }

    /// The pixel representation the model is fitted on and scored in.
    pub fn discretisation(self) -> &'static str {
        match self {
            ImageModel::NaiveBayes => "pixels binarised at 0.5; NLL of the binary image",
            _ => {
                "8-bit pixels dequantised as (p + u)/256, u ~ U(0,1); NLL bound of the 8-bit image (+ D ln 256)"
            }
        }
    }
}

/// Hyperparameters of the classical image models, with working defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassicalConfig {
    pub model: ImageModel,
    /// Laplace pseudo-count of naive Bayes.
    pub alpha: f64,
    /// Gaussian naive Bayes variance floor (fraction of the largest variance).
    pub var_smoothing: f64,
    /// GDA shrinkage towards (tr Σ / d)·I.
    pub shrinkage: f64,
    /// Mixture components (per class for `gmm-per-class`).
    pub components: usize,
    /// Mixture covariance structure.
    pub gmm_covariance: GmmCovariance,
    pub max_iter: usize,
    pub tol: f64,
    pub seed: u64,
    /// Use at most this many training images (all if `None`).
    pub train_limit: Option<usize>,
}

impl ClassicalConfig {
    /// Defaults that fit each model on the embedded digits in seconds.
    pub fn new(model: ImageModel) -> Self {
        Self {
            model,
            alpha: 1.0,
            var_smoothing: 1e-2,
            shrinkage: 0.1,
            components: if model == ImageModel::GmmPerClass {
                3
            } else {
                10
            },
            gmm_covariance: GmmCovariance::Diagonal,
            max_iter: 100,
            tol: 1e-3,
            seed: 0,
            train_limit: None,
        }
    }
}

/// A fitted model of either kind.
pub enum Fitted {
    /// A model with labels: samples per class.
    Supervised(Box<dyn SupervisedModel>),
    /// The unsupervised mixture.
    Mixture(Box<super::gmm::Gmm>),
}

/// A class-conditional model with a density, boxed behind one trait object.
pub trait SupervisedModel: ClassConditional + Density + Send + Sync {}
impl<T: ClassConditional + Density + Send + Sync> SupervisedModel for T {}

/// What fitting reported.
#[derive(Debug, Clone)]
pub struct FitReport {
    pub model: ImageModel,
    pub fit_seconds: f64,
    pub train_images: usize,
    /// Test accuracy of the supervised models.
    pub test_accuracy: Option<f64>,
    /// Test negative log-likelihood, in the model's discretisation.
    pub test_nll: LikelihoodSummary,
    /// EM's mean log-likelihood per iteration (mixtures only; per class it is class 0's).
    pub em_history: Vec<f64>,
}

impl FitReport {
    /// A few lines for a terminal.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} (report {}): fitted on {} images in {:.2} s\n",
            self.model.name(),
            self.model.section(),
            self.train_images,
            self.fit_seconds
        );
        if let Some(a) = self.test_accuracy {
            s.push_str(&format!("test accuracy: {:.2}%\n", 100.0 * a));
        }
        s.push_str(&format!(
            "test NLL: {:.1} nats/image, {:.4} bits/dim ({})\n",
            self.test_nll.nats_per_image,
            self.test_nll.bits_per_dim,
            self.model.discretisation()
        ));
        if !self.em_history.is_empty() {
            s.push_str(&format!(
                "EM: {} iterations, mean log-likelihood {:.2} -> {:.2}\n",
                self.em_history.len(),
                self.em_history[0],
                self.em_history[self.em_history.len() - 1]
            ));
        }
        s
    }
}

fn inputs(model: ImageModel, ds: &Dataset, rng: &mut ChaCha8Rng) -> Mat<f64> {
    match model {
        ImageModel::NaiveBayes => binarised_features(ds, 0.5),
        _ => dequantised_features(ds, rng),
    }
}

/// Fits `cfg.model` on the training part and scores it on the test part.
/// `on_iter(iteration, mean log-likelihood)` follows EM as it runs.
pub fn fit(
    cfg: &ClassicalConfig,
    split: &Split,
    mut on_iter: impl FnMut(usize, f64),
) -> Result<(Fitted, FitReport)> {
    let train = match cfg.train_limit {
        Some(n) => split.train.take(n),
        None => split.train.clone(),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let x = inputs(cfg.model, &train, &mut rng);
    let xt = inputs(cfg.model, &split.test, &mut rng);
    let d = train.dim();
    let k = || train.num_classes().unwrap_or(0);
    let gmm_params = GmmParams {
        components: cfg.components,
        covariance: cfg.gmm_covariance,
        tol: cfg.tol,
        max_iter: cfg.max_iter,
        seed: cfg.seed,
        ..GmmParams::default()
    };
    let start = Instant::now();
    let mut em_history = Vec::new();
    let fitted = match cfg.model {
        ImageModel::Gmm => {
            let g = gmm_params.fit_with(x.as_ref(), &mut on_iter)?;
            em_history = g.history.clone();
            Fitted::Mixture(Box::new(g))
        }
        model => {
            let y = labels(&train)?;
            let boxed: Box<dyn SupervisedModel> = match model {
                ImageModel::NaiveBayes => Box::new(
                    NaiveBayesParams { alpha: cfg.alpha }.fit_bernoulli(x.as_ref(), &y, k())?,
                ),
                ImageModel::GaussianNb => Box::new(
                    GaussianNbParams {
                        var_smoothing: cfg.var_smoothing,
                        shared_variance: false,
                    }
                    .fit(x.as_ref(), &y, k())?,
                ),
                ImageModel::Lda | ImageModel::Qda => Box::new(
                    GdaParams {
                        covariance: if model == ImageModel::Lda {
                            CovarianceKind::Shared
                        } else {
                            CovarianceKind::PerClass
                        },
                        shrinkage: cfg.shrinkage,
                        ridge: 0.0,
                    }
                    .fit(x.as_ref(), &y, k())?,
                ),
                ImageModel::GmmPerClass => {
                    let g = GmmPerClass::fit(&gmm_params, x.as_ref(), &y, k())?;
                    em_history = g.mixtures[0].history.clone();
                    Box::new(g)
                }
                ImageModel::Gmm => unreachable!("handled above"),
            };
            Fitted::Supervised(boxed)
        }
    };
    let fit_seconds = start.elapsed().as_secs_f64();
    let offset = match cfg.model {
        ImageModel::NaiveBayes => 0.0,
        _ => d as f64 * 256f64.ln(),
    };
    let (log_probs, test_accuracy) = match &fitted {
        Fitted::Mixture(g) => (g.log_prob(xt.as_ref()), None),
        Fitted::Supervised(m) => {
            let acc = split.test.labels().map(|l| {
                let y: Vec<usize> = l.iter().map(|&v| v as usize).collect();
                m.accuracy(xt.as_ref(), &y)
            });
            (m.log_prob(xt.as_ref()), acc)
        }
    };
    let report = FitReport {
        model: cfg.model,
        fit_seconds,
        train_images: train.len(),
        test_accuracy,
        test_nll: LikelihoodSummary::from_log_probs(&log_probs, d, offset),
        em_history,
    };
    Ok((fitted, report))
}

impl Fitted {
    /// `per_class` samples of every class (supervised), or `per_class · 10` samples from the
    /// mixture, as rows of pixels in [0, 1] (clamped when shown).
    pub fn samples(&self, per_class: usize, rng: &mut dyn rand::RngCore) -> Mat<f64> {
        match self {
            Fitted::Mixture(g) => g.sample(per_class * 10, rng),
            Fitted::Supervised(m) => {
                let k = m.num_classes();
                let d = m.dim();
                let mut out = Mat::zeros(k * per_class, d);
                // Column-major by class: row r of the grid is sample r of every class.
                for c in 0..k {
                    let s = m.sample_class(c, per_class, rng);
                    for i in 0..per_class {
                        for j in 0..d {
                            out[(i * k + c, j)] = s[(i, j)];
                        }
                    }
                }
                out
            }
        }
    }

    /// Number of columns that puts one class per column (10 for the mixture).
    pub fn grid_columns(&self) -> usize {
        match self {
            Fitted::Mixture(_) => 10,
            Fitted::Supervised(m) => m.num_classes(),
        }
    }

    /// `per_class` samples of each class (ten times that for the mixture) as a grid of
    /// `shape` images (channels, height, width), one class per column, drawn from the
    /// sampling stream of `seed`.
    pub fn sample_grid(&self, per_class: usize, shape: [usize; 3], seed: u64) -> Grid {
        let mut rng = crate::util::Stream::Sampling.rng(seed);
        let x = self.samples(per_class, &mut rng);
        let [c, h, w] = shape;
        Grid::from_u8(
            &super::rows_to_u8(x.as_ref()),
            x.nrows(),
            c,
            h,
            w,
            self.grid_columns(),
        )
    }
}
