//! Report 3.5: Gaussian mixtures fitted by expectation–maximisation.
//!
//! p(x) = Σ_k π_k N(x | μ_k, Σ_k). Each EM iteration (Bishop, PRML §9.2.2):
//!
//! * E-step: responsibilities γ_nk = π_k N(x_n | μ_k, Σ_k) / Σ_j π_j N(x_n | μ_j, Σ_j). The
//!   report's version puts π_k (not π_j) inside the sum of the denominator.
//! * M-step: N_k = Σ_n γ_nk, μ_k = Σ_n γ_nk x_n / N_k,
//!   Σ_k = Σ_n γ_nk (x_n − μ_k)(x_n − μ_k)ᵀ / N_k, π_k = N_k / N. The report's M-step
//!   multiplies x_n by itself in the mean and leaves γ out of the covariance's numerator.
//!
//! The log-likelihood of each iteration is recorded before its M-step, as in scikit-learn,
//! and EM guarantees it never decreases (a test asserts it). A small `reg_covar` is added to
//! every variance so that constant pixels do not make a covariance singular. Densities are
//! computed in GEMM form, the same arithmetic as scikit-learn's `GaussianMixture`.

use super::{ClassConditional, Density, ModelError, Result, check_param, log_sum_exp, matmul};
use faer::linalg::matmul::triangular::BlockStructure;
use faer::{Mat, MatRef};
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Covariance structure of the mixture's components.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GmmCovariance {
    /// One variance per feature and component.
    #[value(name = "diag", alias = "diagonal")]
    Diagonal,
    /// A full covariance matrix per component.
    Full,
}

/// Starting point of EM.
#[derive(Debug, Clone, PartialEq)]
pub enum GmmInit {
    /// k-means++ seeding (Arthur and Vassilvitskii 2007), Lloyd's iterations, then one M-step
    /// from the hard assignments.
    KMeansPlusPlus,
    /// Given parameters (weights, K x D means, covariances).
    Given {
        weights: Vec<f64>,
        means: Mat<f64>,
        covariances: Covariances,
    },
}

/// Options of the EM fit.
#[derive(Debug, Clone, PartialEq)]
pub struct GmmParams {
    pub components: usize,
    pub covariance: GmmCovariance,
    /// Stop once the mean log-likelihood per row changes by less than this.
    pub tol: f64,
    pub max_iter: usize,
    /// Added to every variance after each M-step.
    pub reg_covar: f64,
    pub seed: u64,
    pub init: GmmInit,
}

impl Default for GmmParams {
    fn default() -> Self {
        Self {
            components: 10,
            covariance: GmmCovariance::Diagonal,
            tol: 1e-3,
            max_iter: 100,
            reg_covar: 1e-6,
            seed: 0,
            init: GmmInit::KMeansPlusPlus,
        }
    }
}

/// Component covariances.
#[derive(Debug, Clone, PartialEq)]
pub enum Covariances {
    /// K x D variances.
    Diagonal(Mat<f64>),
    /// K matrices of D x D.
    Full(Vec<Mat<f64>>),
}

impl Covariances {
    /// The structure these covariances have.
    pub fn kind(&self) -> GmmCovariance {
        match self {
            Covariances::Diagonal(_) => GmmCovariance::Diagonal,
            Covariances::Full(_) => GmmCovariance::Full,
        }
    }
}

/// A fitted mixture.
#[derive(Debug, Clone)]
pub struct Gmm {
    pub weights: Vec<f64>,
    /// K x D.
    pub means: Mat<f64>,
    pub covariances: Covariances,
    /// Mean log-likelihood per row at each iteration (before its M-step).
    pub history: Vec<f64>,
    pub converged: bool,
    /// Per component: for diagonal, 1/σ (K x D); for full, L⁻¹ of Σ = L Lᵀ.
    precision_chol: PrecisionChol,
}

#[derive(Debug, Clone)]
enum PrecisionChol {
    Diagonal(Mat<f64>),
    Full(Vec<Mat<f64>>),
}

/// `aᵀ a` computed on its lower triangle only and mirrored: half the flops of a GEMM.
pub(crate) fn gram(a: MatRef<'_, f64>) -> Mat<f64> {
    gram_with(a, faer::get_global_parallelism())
}

/// [`gram`] with its product run under `par`.
fn gram_with(a: MatRef<'_, f64>, par: faer::Par) -> Mat<f64> {
    let d = a.ncols();
    let mut g = Mat::<f64>::zeros(d, d);
    faer::linalg::matmul::triangular::matmul(
        g.as_mut(),
        BlockStructure::TriangularLower,
        faer::Accum::Replace,
        a.transpose(),
        BlockStructure::Rectangular,
        a,
        BlockStructure::Rectangular,
        1.0,
        par,
    );
    for r in 0..d {
        for c in r + 1..d {
            g[(r, c)] = g[(c, r)];
        }
    }
    g
}

/// Whether a full-covariance step spreads its K components over the threads, each
/// component's products and factorisations running on one, rather than running the
/// components in turn with every thread on each. Side by side wins wherever there are
/// components enough to keep the threads busy: the threads share no work and wait on no
/// one (at the digits' D = 784 and K = 10, an iteration's E-step 0.31 -> 0.26 s, the
/// M-step's scatter matrices and factorisations 0.13 -> 0.09 s on two cores), and at small
/// D (an autoencoder's 32-dimensional codes) a component's products are too small to
/// split at all. A single component, or fewer than threads at large D, still gets every
/// thread.
fn components_side_by_side(k: usize, d: usize) -> bool {
    d < 128 || k >= rayon::current_num_threads()
}

/// Rows per block of the fused diagonal iteration: a block's [X | X²] (32 x 2D, 400 KB at
/// D = 784) stays in a core's L2 cache from the E-step's product to the M-step's.
const FUSED_ROWS: usize = 32;

/// Row ranges the fused diagonal iteration sums separately (in parallel) and then adds in
/// order: a fixed count, so that the sums' rounding does not depend on the thread count.
const FUSED_CHUNKS: usize = 16;

/// What one fused pass over the rows accumulates.
struct DiagonalPass {
    /// Σ_n log p(x_n).
    total_ll: f64,
    /// Σ_n γ_nk.
    nk: Vec<f64>,
    /// K x 2D: Σ_n γ_nk x_n | Σ_n γ_nk x_n².
    sums: Mat<f64>,
}

impl DiagonalPass {
    fn zeros(k: usize, d: usize) -> Self {
        Self {
            total_ll: 0.0,
            nk: vec![0.0; k],
            sums: Mat::zeros(k, 2 * d),
        }
    }

    /// Totals whose sums are kept elsewhere (the sparse pass's pixel-major buffers).
    fn without_sums(k: usize) -> Self {
        Self {
            total_ll: 0.0,
            nk: vec![0.0; k],
            sums: Mat::new(),
        }
    }

    /// Adds a row's log-likelihood and N_k terms, given `log_p` (its K log-densities, weights
    /// included), and turns `log_p` into the row's responsibilities.
    fn add_row(&mut self, log_p: &mut [f64]) {
        let lse = log_sum_exp(log_p.iter().copied());
        self.total_ll += lse;
        for (g, nk) in log_p.iter_mut().zip(&mut self.nk) {
            *g = super::exp_or_zero(*g - lse);
            *nk += *g;
        }
    }
}

/// The fused pass over `rows` of dense data, [`FUSED_ROWS`] rows at a time: each block's
/// [X | X²] is built once and read by both steps' products while it is in cache.
fn dense_chunk(
    x: MatRef<'_, f64>,
    rows: std::ops::Range<usize>,
    coef: &Mat<f64>,
    bias: &[f64],
) -> DiagonalPass {
    let (d, k) = (x.ncols(), bias.len());
    let mut acc = DiagonalPass::zeros(k, d);
    let mut block = Mat::<f64>::zeros(FUSED_ROWS, 2 * d);
    let mut quad = Mat::<f64>::zeros(FUSED_ROWS, k);
    let mut resp = Mat::<f64>::zeros(FUSED_ROWS, k);
    let mut log_p = vec![0.0; k];
    for start in rows.clone().step_by(FUSED_ROWS) {
        let m = FUSED_ROWS.min(rows.end - start);
        for j in 0..d {
            let src = x.col(j).subrows(start, m);
            let dst = block.col_mut(j).subrows_mut(0, m);
            for (dst, v) in dst.iter_mut().zip(src.iter()) {
                *dst = *v;
            }
            let dst = block.col_mut(d + j).subrows_mut(0, m);
            for (dst, v) in dst.iter_mut().zip(src.iter()) {
                *dst = v * v;
            }
        }
        let xb = block.as_ref().subrows(0, m);
        faer::linalg::matmul::matmul(
            quad.as_mut().subrows_mut(0, m),
            faer::Accum::Replace,
            xb,
            coef.as_ref(),
            1.0,
            faer::Par::Seq,
        );
        for r in 0..m {
            for (c, lp) in log_p.iter_mut().enumerate() {
                *lp = bias[c] - 0.5 * quad[(r, c)];
            }
            acc.add_row(&mut log_p);
            for (c, g) in log_p.iter().enumerate() {
                resp[(r, c)] = *g;
            }
        }
        faer::linalg::matmul::matmul(
            acc.sums.as_mut(),
            faer::Accum::Add,
            resp.as_ref().subrows(0, m).transpose(),
            xb,
            1.0,
            faer::Par::Seq,
        );
    }
    acc
}

/// Components per block of the sparse fused pass: eight f64 lanes, one AVX-512 register or
/// two AVX2 ones, so that a block's running sums stay in registers while a row's nonzeros
/// stream past.
const LANES: usize = 8;

/// The fused pass over `rows` of mostly-zero data, row by row through its nonzeros, compiled
/// for the widest vector unit the processor has. Every lane (component) does the same
/// arithmetic in the same order in each build, so the result does not depend on which one
/// runs.
fn sparse_chunk(
    nz: &Nonzeros,
    rows: std::ops::Range<usize>,
    pixel_coef: &[f64],
    bias: &[f64],
    pixel_sums: &mut [f64],
) -> DiagonalPass {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the processor has AVX-512F, checked just above.
            return unsafe { sparse_chunk_avx512(nz, rows, pixel_coef, bias, pixel_sums) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor has AVX2, checked just above.
            return unsafe { sparse_chunk_avx2(nz, rows, pixel_coef, bias, pixel_sums) };
        }
    }
    sparse_chunk_body(nz, rows, pixel_coef, bias, pixel_sums)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn sparse_chunk_avx512(
    nz: &Nonzeros,
    rows: std::ops::Range<usize>,
    pixel_coef: &[f64],
    bias: &[f64],
    pixel_sums: &mut [f64],
) -> DiagonalPass {
    sparse_chunk_body(nz, rows, pixel_coef, bias, pixel_sums)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sparse_chunk_avx2(
    nz: &Nonzeros,
    rows: std::ops::Range<usize>,
    pixel_coef: &[f64],
    bias: &[f64],
    pixel_sums: &mut [f64],
) -> DiagonalPass {
    sparse_chunk_body(nz, rows, pixel_coef, bias, pixel_sums)
}

/// Where pixel j's values for component block b start in the sparse pass's pixel-major
/// buffers: the block's [`LANES`] values for x, then its [`LANES`] values for x², so that a
/// nonzero pixel touches one short contiguous run (two cache lines) per block.
fn pixel_offset(j: usize, b: usize, blocks: usize) -> usize {
    (j * blocks + b) * 2 * LANES
}

/// The K x 2D coefficients [x | x²] laid out pixel-major for the sparse pass, K padded with
/// zeros to whole blocks of [`LANES`].
fn pixel_major(coef: &Mat<f64>, d: usize, k: usize) -> Vec<f64> {
    let blocks = k.div_ceil(LANES);
    let mut out = vec![0.0; pixel_offset(d, 0, blocks)];
    for j in 0..d {
        for c in 0..k {
            let o = pixel_offset(j, c / LANES, blocks) + c % LANES;
            out[o] = coef[(j, c)];
            out[o + LANES] = coef[(d + j, c)];
        }
    }
    out
}

/// [`sparse_chunk`]'s body: adds the rows' Σ γ x and Σ γ x² into `pixel_sums` (laid out as
/// [`pixel_major`]). The components are taken [`LANES`] at a time, and a block's quadratic
/// forms and responsibilities are fixed-size arrays the compiler keeps in vector registers.
#[inline(always)]
fn sparse_chunk_body(
    nz: &Nonzeros,
    rows: std::ops::Range<usize>,
    pixel_coef: &[f64],
    bias: &[f64],
    pixel_sums: &mut [f64],
) -> DiagonalPass {
    let k = bias.len();
    let blocks = k.div_ceil(LANES);
    let stride = 2 * LANES;
    let mut acc = DiagonalPass::without_sums(k);
    let mut log_p = vec![0.0; k];
    for i in rows {
        let (cols, vals) = nz.row(i);
        for b in 0..blocks {
            let mut quad = [0.0; LANES];
            for (&j, &v) in cols.iter().zip(vals) {
                let o = pixel_offset(j as usize, b, blocks);
                let (lin, sq) = pixel_coef[o..o + stride].split_at(LANES);
                let v2 = v * v;
                for l in 0..LANES {
                    quad[l] += v * lin[l] + v2 * sq[l];
                }
            }
            for (l, lp) in log_p.iter_mut().skip(b * LANES).take(LANES).enumerate() {
                *lp = bias[b * LANES + l] - 0.5 * quad[l];
            }
        }
        acc.add_row(&mut log_p);
        for b in 0..blocks {
            let mut g = [0.0; LANES];
            for (l, lp) in log_p.iter().skip(b * LANES).take(LANES).enumerate() {
                g[l] = *lp;
            }
            for (&j, &v) in cols.iter().zip(vals) {
                let o = pixel_offset(j as usize, b, blocks);
                let (s1, s2) = pixel_sums[o..o + stride].split_at_mut(LANES);
                let v2 = v * v;
                for l in 0..LANES {
                    s1[l] += g[l] * v;
                    s2[l] += g[l] * v2;
                }
            }
        }
    }
    acc
}

/// The nonzero entries of a matrix, row by row (compressed sparse rows), columns ascending.
struct Nonzeros {
    /// Row i's entries are `starts[i]..starts[i + 1]`.
    starts: Vec<usize>,
    cols: Vec<u32>,
    vals: Vec<f64>,
}

impl Nonzeros {
    /// The nonzeros of `x`, or `None` where more than [`SPARSE_DENSITY`] of it is nonzero
    /// (dense products are then faster).
    fn of(x: MatRef<'_, f64>) -> Option<Self> {
        let (n, d) = (x.nrows(), x.ncols());
        let mut counts = vec![0usize; n];
        for j in 0..d {
            for (c, v) in counts.iter_mut().zip(x.col(j).iter()) {
                *c += usize::from(*v != 0.0);
            }
        }
        let total: usize = counts.iter().sum();
        if total as f64 > SPARSE_DENSITY * (n * d) as f64 {
            return None;
        }
        let mut starts = Vec::with_capacity(n + 1);
        starts.push(0);
        for c in &counts {
            starts.push(starts.last().expect("starts with 0") + c);
        }
        let mut next = starts[..n].to_vec();
        let (mut cols, mut vals) = (vec![0u32; total], vec![0.0; total]);
        for j in 0..d {
            for (i, v) in x.col(j).iter().enumerate() {
                if *v != 0.0 {
                    cols[next[i]] = j as u32;
                    vals[next[i]] = *v;
                    next[i] += 1;
                }
            }
        }
        Some(Self { starts, cols, vals })
    }

    fn row(&self, i: usize) -> (&[u32], &[f64]) {
        let r = self.starts[i]..self.starts[i + 1];
        (&self.cols[r.clone()], &self.vals[r])
    }
}

/// The share of nonzero entries up to which the fused diagonal iteration reads the data as
/// its nonzeros. A nonzero costs the sparse pass about what an entry costs the dense one,
/// so the threshold sits where the dense products' better vectorisation stops paying.
const SPARSE_DENSITY: f64 = 0.5;

/// The data of an EM run in the form the iterations use.
pub struct EmData<'a> {
    x: MatRef<'a, f64>,
    /// For diagonal covariances outside the fused iteration: the columns of X next to those
    /// of X², so that an E-step or an M-step is one GEMM. Built on first use (100 MB for the
    /// embedded digits): by scoring, and by the M-step from k-means' assignments that starts
    /// a fit (in a structure of its own, freed before the iterations).
    x_and_sq: std::cell::OnceCell<Mat<f64>>,
    /// For the fused diagonal iteration: X's nonzeros, if few enough (see [`Nonzeros::of`]).
    nonzeros: std::cell::OnceCell<Option<Nonzeros>>,
    /// For full covariances: the M-step's buffers of centred, weighted rows, one per
    /// thread (each grown to the most rows a component has needed, at most N x D), kept
    /// from one iteration to the next. A fresh 50 MB buffer each M-step made the kernel
    /// zero its new pages every time (a tenth of the fit's time in perf).
    scaled: Vec<std::sync::Mutex<Mat<f64>>>,
    /// For the sparse fused iteration: each row range's pixel-major sums, kept from one
    /// iteration to the next (fresh buffers cost page faults at every iteration).
    pixel_sums: std::cell::RefCell<Vec<Vec<f64>>>,
}

impl<'a> EmData<'a> {
    pub fn new(x: MatRef<'a, f64>, covariance: GmmCovariance) -> Self {
        // Empty until a full-covariance M-step grows them: one per thread for full
        // covariances, and one otherwise, so that an M-step always finds one.
        let buffers = match covariance {
            GmmCovariance::Full => rayon::current_num_threads().max(1),
            GmmCovariance::Diagonal => 1,
        };
        Self {
            x,
            x_and_sq: std::cell::OnceCell::new(),
            nonzeros: std::cell::OnceCell::new(),
            scaled: (0..buffers)
                .map(|_| std::sync::Mutex::new(Mat::<f64>::zeros(0, x.ncols())))
                .collect(),
            pixel_sums: std::cell::RefCell::new(Vec::new()),
        }
    }

    fn nonzeros(&self) -> Option<&Nonzeros> {
        self.nonzeros.get_or_init(|| Nonzeros::of(self.x)).as_ref()
    }

    fn x_and_sq(&self) -> MatRef<'_, f64> {
        self.x_and_sq
            .get_or_init(|| {
                let x = self.x;
                let (n, d) = (x.nrows(), x.ncols());
                let mut m = Mat::<f64>::zeros(n, 2 * d);
                for j in 0..d {
                    for (dst, v) in m.col_mut(j).iter_mut().zip(x.col(j).iter()) {
                        *dst = *v;
                    }
                    for (dst, v) in m.col_mut(d + j).iter_mut().zip(x.col(j).iter()) {
                        *dst = v * v;
                    }
                }
                m
            })
            .as_ref()
    }
}

impl GmmParams {
    fn validate(&self, x: MatRef<'_, f64>) -> Result<()> {
        if self.components == 0 {
            return Err(ModelError::InvalidParam {
                name: "components",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        if self.max_iter == 0 {
            return Err(ModelError::InvalidParam {
                name: "max_iter",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        check_param("tol", self.tol, self.tol >= 0.0, "a finite number >= 0")?;
        check_param(
            "reg_covar",
            self.reg_covar,
            self.reg_covar >= 0.0,
            "a finite number >= 0",
        )?;
        if x.nrows() < self.components {
            return Err(ModelError::Data(format!(
                "{} rows for {} components",
                x.nrows(),
                self.components
            )));
        }
        if (0..x.nrows()).any(|i| (0..x.ncols()).any(|j| !x[(i, j)].is_finite())) {
            return Err(ModelError::Data("features contain NaN or infinity".into()));
        }
        Ok(())
    }

    /// Runs EM on the rows of `x`.
    pub fn fit(&self, x: MatRef<'_, f64>) -> Result<Gmm> {
        self.fit_with(x, |_, _| {})
    }

    /// Runs EM, calling `on_iter(iteration, mean log-likelihood)` after every iteration.
    pub fn fit_with(&self, x: MatRef<'_, f64>, mut on_iter: impl FnMut(usize, f64)) -> Result<Gmm> {
        self.validate(x)?;
        let mut gmm = match &self.init {
            GmmInit::KMeansPlusPlus => {
                let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
                let assign = kmeans(x, self.components, &mut rng, 100);
                let mut resp = Mat::<f64>::zeros(x.nrows(), self.components);
                for (i, &a) in assign.iter().enumerate() {
                    resp[(i, a)] = 1.0;
                }
                self.m_step_on(&EmData::new(x, self.covariance), resp.as_ref())?
            }
            GmmInit::Given {
                weights,
                means,
                covariances,
            } => {
                if weights.len() != self.components
                    || means.nrows() != self.components
                    || means.ncols() != x.ncols()
                {
                    return Err(ModelError::Data(format!(
                        "initial parameters are for {} components of dimension {}, expected {} of {}",
                        weights.len(),
                        means.ncols(),
                        self.components,
                        x.ncols()
                    )));
                }
                Gmm::new(weights.clone(), means.clone(), covariances.clone())?
            }
        };
        let data = EmData::new(x, self.covariance);
        let mut lower = f64::NEG_INFINITY;
        for it in 0..self.max_iter {
            let prev = lower;
            let (mean_ll, next) = self.iterate(&gmm, &data)?;
            let history = std::mem::take(&mut gmm.history);
            gmm = next;
            gmm.history = history;
            lower = mean_ll;
            gmm.history.push(mean_ll);
            on_iter(it + 1, mean_ll);
            if (lower - prev).abs() < self.tol {
                gmm.converged = true;
                break;
            }
        }
        Ok(gmm)
    }

    /// One EM iteration: the mean log-likelihood per row under `gmm` (the E-step's) and the
    /// mixture of the M-step that follows it. With diagonal covariances the two steps run
    /// in one pass over the rows: each row's responsibilities go straight into the M-step's
    /// sums, so the data is read once, not twice, the N x K responsibilities are never
    /// stored, and mostly-zero data is read through its nonzeros.
    pub fn iterate(&self, gmm: &Gmm, data: &EmData<'_>) -> Result<(f64, Gmm)> {
        match &gmm.precision_chol {
            PrecisionChol::Diagonal(pc) if self.covariance == GmmCovariance::Diagonal => {
                let pass = gmm.fused_diagonal_pass(data, pc.as_ref());
                let nk: Vec<f64> = pass.nk.iter().map(|v| v + 10.0 * f64::EPSILON).collect();
                let mixture = self.diagonal_mixture(data.x.ncols(), &nk, &pass.sums)?;
                Ok((pass.total_ll / data.x.nrows() as f64, mixture))
            }
            _ => {
                let (mean_ll, resp) = gmm.e_step_on(data);
                Ok((mean_ll, self.m_step_on(data, resp.as_ref())?))
            }
        }
    }

    /// The M-step from responsibilities `resp` (N x K).
    pub fn m_step(&self, x: MatRef<'_, f64>, resp: MatRef<'_, f64>) -> Result<Gmm> {
        self.m_step_on(&EmData::new(x, self.covariance), resp)
    }

    // ANCHOR: m_step
    /// The M-step on prepared data.
    pub fn m_step_on(&self, data: &EmData<'_>, resp: MatRef<'_, f64>) -> Result<Gmm> {
        let x = data.x;
        let (d, k) = (x.ncols(), resp.ncols());
        let nk: Vec<f64> = (0..k)
            .map(|c| resp.col(c).iter().sum::<f64>() + 10.0 * f64::EPSILON)
            .collect();
        if self.covariance == GmmCovariance::Diagonal {
            // One GEMM gives Σ_n γ_nk x_n and Σ_n γ_nk x_n² side by side.
            let sums = matmul(resp.transpose(), data.x_and_sq()); // K x 2D
            return self.diagonal_mixture(d, &nk, &sums);
        }
        let total: f64 = nk.iter().sum();
        let weights: Vec<f64> = nk.iter().map(|v| v / total).collect();
        let sums = matmul(resp.transpose(), x); // K x D
        let means = Mat::from_fn(k, d, |c, j| sums[(c, j)] / nk[c]);
        // Σ_k = Σ_n γ_nk (x_n − μ_k)(x_n − μ_k)ᵀ / N_k, via the Gram matrix of the centred
        // rows scaled by √γ_nk, built column by column into a buffer of the thread's. A row
        // whose responsibility is exactly zero adds nothing, and most are: a row's density
        // under a component it is far from underflows (a code mixture of 400 components
        // gives each one a few dozen of the 8,004 rows), so only the others are copied.
        let buffers = &data.scaled;
        let covariance = |c: usize, par: faer::Par| -> Mat<f64> {
            let rows: Vec<(usize, f64)> = resp
                .col(c)
                .iter()
                .enumerate()
                .filter(|(_, r)| **r > 0.0)
                .map(|(i, r)| (i, r.sqrt()))
                .collect();
            let m = rows.len();
            let thread = rayon::current_thread_index().unwrap_or(0) % buffers.len();
            let mut scaled = buffers[thread]
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if scaled.nrows() < m {
                *scaled = Mat::<f64>::zeros(m, d);
            }
            for j in 0..d {
                let (mu, column) = (means[(c, j)], x.col(j));
                let dst = scaled.col_mut(j).subrows_mut(0, m);
                for (dst, &(i, wi)) in dst.iter_mut().zip(&rows) {
                    *dst = (column[i] - mu) * wi;
                }
            }
            let mut cov = gram_with(scaled.as_ref().subrows(0, m), par);
            for a in 0..d {
                for b in 0..d {
                    cov[(a, b)] /= nk[c];
                }
                cov[(a, a)] += self.reg_covar;
            }
            cov
        };
        let covs: Vec<Mat<f64>> = if components_side_by_side(k, d) {
            (0..k)
                .into_par_iter()
                .map(|c| covariance(c, faer::Par::Seq))
                .collect()
        } else {
            (0..k)
                .map(|c| covariance(c, faer::get_global_parallelism()))
                .collect()
        };
        Gmm::new(weights, means, Covariances::Full(covs))
    }

    /// The diagonal M-step's mixture from N_k (regularised) and the K x 2D sums
    /// Σ_n γ_nk x_n | Σ_n γ_nk x_n².
    fn diagonal_mixture(&self, d: usize, nk: &[f64], sums: &Mat<f64>) -> Result<Gmm> {
        let k = nk.len();
        let total: f64 = nk.iter().sum();
        let weights: Vec<f64> = nk.iter().map(|v| v / total).collect();
        let means = Mat::from_fn(k, d, |c, j| sums[(c, j)] / nk[c]);
        let vars = Mat::from_fn(k, d, |c, j| {
            let avg_x2 = sums[(c, d + j)] / nk[c];
            let m = means[(c, j)];
            let avg_x_means = m * sums[(c, j)] / nk[c];
            avg_x2 - 2.0 * avg_x_means + m * m + self.reg_covar
        });
        Gmm::new(weights, means, Covariances::Diagonal(vars))
    }
    // ANCHOR_END: m_step
}

impl Gmm {
    /// A mixture from its parameters; fails if a covariance is not positive definite.
    pub fn new(weights: Vec<f64>, means: Mat<f64>, covariances: Covariances) -> Result<Self> {
        let precision_chol = match &covariances {
            Covariances::Diagonal(v) => {
                if let Some((c, j)) = (0..v.nrows())
                    .flat_map(|c| (0..v.ncols()).map(move |j| (c, j)))
                    .find(|&(c, j)| {
                        v[(c, j)].partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
                    })
                {
                    return Err(ModelError::NotPositiveDefinite {
                        what: format!("variance {j} of component {c} ({})", v[(c, j)]),
                    });
                }
                PrecisionChol::Diagonal(Mat::from_fn(v.nrows(), v.ncols(), |c, j| {
                    1.0 / v[(c, j)].sqrt()
                }))
            }
            // Side by side where there are components enough (10 at the digits' 784
            // pixels: 0.08 -> 0.04 s for the factorisations and inverses).
            Covariances::Full(covs) => {
                let factor = |(c, s): (usize, &Mat<f64>), par: faer::Par| {
                    let what = format!("the covariance of component {c}");
                    let l = super::cholesky_with(s.as_ref(), what, par)?;
                    Ok(super::invert_lower_with(l.as_ref(), par))
                };
                let d = covs.first().map_or(0, |s| s.nrows());
                PrecisionChol::Full(if components_side_by_side(covs.len(), d) {
                    covs.par_iter()
                        .enumerate()
                        .map(|cs| factor(cs, faer::Par::Seq))
                        .collect::<Result<Vec<_>>>()?
                } else {
                    let par = faer::get_global_parallelism();
                    covs.iter()
                        .enumerate()
                        .map(|cs| factor(cs, par))
                        .collect::<Result<Vec<_>>>()?
                })
            }
        };
        Ok(Self {
            weights,
            means,
            covariances,
            history: Vec::new(),
            converged: false,
            precision_chol,
        })
    }

    pub fn components(&self) -> usize {
        self.weights.len()
    }

    /// `log N(x_n | μ_k, Σ_k)` for every row and component (N x K).
    pub fn component_log_pdf(&self, x: MatRef<'_, f64>) -> Mat<f64> {
        self.component_log_pdf_on(&EmData::new(x, self.covariances.kind()))
    }

    fn component_log_pdf_on(&self, data: &EmData<'_>) -> Mat<f64> {
        let x = data.x;
        let (n, d, k) = (x.nrows(), x.ncols(), self.components());
        let log_2pi = d as f64 * (2.0 * std::f64::consts::PI).ln();
        match &self.precision_chol {
            PrecisionChol::Diagonal(pc) => {
                let quad = matmul(
                    data.x_and_sq(),
                    self.diagonal_coefficients(pc.as_ref()).as_ref(),
                );
                let consts = self.diagonal_constants(pc.as_ref());
                Mat::from_fn(n, k, |i, c| consts[c] - 0.5 * quad[(i, c)])
            }
            PrecisionChol::Full(pcs) => {
                let column = |c: usize, par: faer::Par| -> Vec<f64> {
                    let linv = &pcs[c];
                    let mean: Vec<f64> = (0..d).map(|j| self.means[(c, j)]).collect();
                    let log_det_pc: f64 = (0..d).map(|j| linv[(j, j)].ln()).sum();
                    super::whitened_sq_norms_with(x, &mean, linv.as_ref(), par)
                        .into_iter()
                        .map(|m| -0.5 * (log_2pi + m) + log_det_pc)
                        .collect()
                };
                let cols: Vec<Vec<f64>> = if components_side_by_side(k, d) {
                    (0..k)
                        .into_par_iter()
                        .map(|c| column(c, faer::Par::Seq))
                        .collect()
                } else {
                    (0..k)
                        .map(|c| column(c, faer::get_global_parallelism()))
                        .collect()
                };
                Mat::from_fn(n, k, |i, c| cols[c][i])
            }
        }
    }

    /// The fused diagonal iteration's pass over the rows (see [`GmmParams::iterate`]), with
    /// `pc` the K x D inverse standard deviations: the sum of the rows' log-likelihoods, N_k,
    /// and the K x 2D sums Σ_n γ_nk x_n | Σ_n γ_nk x_n². Mostly-zero data (digits: four
    /// pixels in five are blank) is read as its nonzeros, which carry every term of both
    /// steps: a zero pixel adds nothing to the quadratic form's x-dependent part nor to the
    /// sums.
    fn fused_diagonal_pass(&self, data: &EmData<'_>, pc: MatRef<'_, f64>) -> DiagonalPass {
        let x = data.x;
        let (n, d) = (x.nrows(), x.ncols());
        let log_w: Vec<f64> = self.weights.iter().map(|v| v.ln()).collect();
        // The part of each component's log-density that does not depend on x, weight included.
        let bias: Vec<f64> = self
            .diagonal_constants(pc)
            .iter()
            .zip(&log_w)
            .map(|(c, w)| c + w)
            .collect();
        let coef = self.diagonal_coefficients(pc);
        let k = bias.len();
        let chunk = n.div_ceil(FUSED_CHUNKS).max(1);
        let ranges: Vec<_> = (0..n.div_ceil(chunk))
            .map(|part| part * chunk..((part + 1) * chunk).min(n))
            .collect();
        let Some(nz) = data.nonzeros() else {
            let parts: Vec<DiagonalPass> = ranges
                .into_par_iter()
                .map(|rows| dense_chunk(x, rows, &coef, &bias))
                .collect();
            return Self::add_in_order(parts, |out, p| out.sums += &p.sums);
        };
        let pixel_coef = pixel_major(&coef, d, k);
        let mut pixel_sums = data.pixel_sums.borrow_mut();
        pixel_sums.resize_with(ranges.len(), Vec::new);
        let parts: Vec<DiagonalPass> = ranges
            .into_par_iter()
            .zip(pixel_sums.par_iter_mut())
            .map(|(rows, sums)| {
                sums.clear();
                sums.resize(pixel_coef.len(), 0.0);
                sparse_chunk(nz, rows, &pixel_coef, &bias, sums)
            })
            .collect();
        let (first, rest) = pixel_sums
            .split_first_mut()
            .expect("a mixture is fitted to at least one row");
        for sums in rest.iter() {
            for (a, b) in first.iter_mut().zip(sums) {
                *a += b;
            }
        }
        let mut out = Self::add_in_order(parts, |_, _| {});
        let blocks = k.div_ceil(LANES);
        out.sums = Mat::from_fn(k, 2 * d, |c, j| {
            let (pixel, square) = (j % d, usize::from(j >= d));
            first[pixel_offset(pixel, c / LANES, blocks) + square * LANES + c % LANES]
        });
        out
    }

    /// The row ranges' totals added in row order, so that the result does not depend on the
    /// thread count; `add_sums` adds a later range's sums where they are kept in the pass.
    fn add_in_order(
        parts: Vec<DiagonalPass>,
        add_sums: impl Fn(&mut DiagonalPass, &DiagonalPass),
    ) -> DiagonalPass {
        let mut parts = parts.into_iter();
        let mut out = parts
            .next()
            .expect("a mixture is fitted to at least one row");
        for p in parts {
            out.total_ll += p.total_ll;
            for (a, b) in out.nk.iter_mut().zip(&p.nk) {
                *a += b;
            }
            add_sums(&mut out, &p);
        }
        out
    }

    /// The diagonal log-density's quadratic form as one product: Σ_j (x_j − μ_j)² p_j =
    /// Σ μ²p − 2 x·(μp) + x²·p with p = 1/σ², so [X | X²] times this 2D x K matrix
    /// [−2μp ; p] gives every row's x-dependent part.
    fn diagonal_coefficients(&self, pc: MatRef<'_, f64>) -> Mat<f64> {
        let d = pc.ncols();
        Mat::from_fn(2 * d, self.components(), |j, c| {
            if j < d {
                -2.0 * self.means[(c, j)] * pc[(c, j)].powi(2)
            } else {
                pc[(c, j - d)].powi(2)
            }
        })
    }

    /// Each component's log-density terms that do not depend on x: −D/2 ln 2π + ln|P|^½ − ½ Σ μ²p.
    fn diagonal_constants(&self, pc: MatRef<'_, f64>) -> Vec<f64> {
        let d = pc.ncols();
        let log_2pi = d as f64 * (2.0 * std::f64::consts::PI).ln();
        (0..self.components())
            .map(|c| {
                let mu2p: f64 = (0..d)
                    .map(|j| (self.means[(c, j)] * pc[(c, j)]).powi(2))
                    .sum();
                let log_det_pc: f64 = (0..d).map(|j| pc[(c, j)].ln()).sum();
                -0.5 * log_2pi + log_det_pc - 0.5 * mu2p
            })
            .collect()
    }

    /// The E-step: mean log-likelihood per row and the responsibilities (N x K).
    pub fn e_step(&self, x: MatRef<'_, f64>) -> (f64, Mat<f64>) {
        self.e_step_on(&EmData::new(x, self.covariances.kind()))
    }

    // ANCHOR: e_step
    /// The E-step on prepared data.
    pub fn e_step_on(&self, data: &EmData<'_>) -> (f64, Mat<f64>) {
        let mut w = self.component_log_pdf_on(data);
        let (n, k) = (w.nrows(), w.ncols());
        let log_w: Vec<f64> = self.weights.iter().map(|v| v.ln()).collect();
        let mut total = 0.0;
        for i in 0..n {
            for c in 0..k {
                w[(i, c)] += log_w[c];
            }
            let lse = log_sum_exp((0..k).map(|c| w[(i, c)]));
            total += lse;
            for c in 0..k {
                w[(i, c)] = super::exp_or_zero(w[(i, c)] - lse);
            }
        }
        (total / n as f64, w)
    }
    // ANCHOR_END: e_step

    /// Responsibilities γ_nk of each row.
    pub fn responsibilities(&self, x: MatRef<'_, f64>) -> Mat<f64> {
        self.e_step(x).1
    }

    /// `n` draws from component `c`.
    pub fn sample_component(&self, c: usize, n: usize, rng: &mut dyn rand::RngCore) -> Mat<f64> {
        let d = self.means.ncols();
        let z = super::standard_normal(n, d, rng);
        let mut x = match &self.covariances {
            Covariances::Diagonal(v) => Mat::from_fn(n, d, |i, j| z[(i, j)] * v[(c, j)].sqrt()),
            Covariances::Full(covs) => {
                let l = super::cholesky(covs[c].as_ref(), "component covariance")
                    .expect("checked positive definite when the mixture was built");
                matmul(z.as_ref(), l.transpose())
            }
        };
        for i in 0..n {
            for j in 0..d {
                x[(i, j)] += self.means[(c, j)];
            }
        }
        x
    }
}

impl Density for Gmm {
    fn dim(&self) -> usize {
        self.means.ncols()
    }

    fn log_prob(&self, x: MatRef<'_, f64>) -> Vec<f64> {
        let w = self.component_log_pdf(x);
        let log_w: Vec<f64> = self.weights.iter().map(|v| v.ln()).collect();
        (0..w.nrows())
            .map(|i| log_sum_exp((0..w.ncols()).map(|c| w[(i, c)] + log_w[c])))
            .collect()
    }

    fn sample(&self, n: usize, rng: &mut dyn rand::RngCore) -> Mat<f64> {
        let pick = WeightedIndex::new(&self.weights).expect("valid weights");
        let d = self.dim();
        let mut out = Mat::zeros(n, d);
        for i in 0..n {
            let c = pick.sample(rng);
            let row = self.sample_component(c, 1, rng);
            for j in 0..d {
                out[(i, j)] = row[(0, j)];
            }
        }
        out
    }
}

/// k-means++ seeding and Lloyd's iterations; returns the cluster of each row.
pub fn kmeans(x: MatRef<'_, f64>, k: usize, rng: &mut ChaCha8Rng, max_iter: usize) -> Vec<usize> {
    let (n, d) = (x.nrows(), x.ncols());
    let norms: Vec<f64> = (0..n)
        .map(|i| (0..d).map(|j| x[(i, j)].powi(2)).sum())
        .collect();
    let dist2 = |centres: &Mat<f64>| -> Mat<f64> {
        let cross = matmul(x, centres.transpose());
        // Each centre's squared norm once, not once per row.
        let centre_norms: Vec<f64> = (0..centres.nrows())
            .map(|c| (0..d).map(|j| centres[(c, j)].powi(2)).sum())
            .collect();
        Mat::from_fn(n, centres.nrows(), |i, c| {
            (norms[i] - 2.0 * cross[(i, c)] + centre_norms[c]).max(0.0)
        })
    };
    // Seeding: the first centre uniformly, each next with probability ∝ D(x)².
    let mut chosen = vec![rng.random_range(0..n)];
    let mut best: Vec<f64> = (0..n)
        .map(|i| {
            (0..d)
                .map(|j| (x[(i, j)] - x[(chosen[0], j)]).powi(2))
                .sum()
        })
        .collect();
    while chosen.len() < k {
        let next = match WeightedIndex::new(&best) {
            Ok(w) => w.sample(rng),
            Err(_) => rng.random_range(0..n), // every point is already a centre
        };
        chosen.push(next);
        for (i, b) in best.iter_mut().enumerate() {
            let dd: f64 = (0..d).map(|j| (x[(i, j)] - x[(next, j)]).powi(2)).sum();
            *b = b.min(dd);
        }
    }
    let mut centres = Mat::from_fn(k, d, |c, j| x[(chosen[c], j)]);
    let mut assign = vec![usize::MAX; n];
    for _ in 0..max_iter {
        let dm = dist2(&centres);
        let new: Vec<usize> = (0..n)
            .map(|i| {
                (0..k)
                    .min_by(|&a, &b| dm[(i, a)].total_cmp(&dm[(i, b)]))
                    .unwrap_or(0)
            })
            .collect();
        if new == assign {
            break;
        }
        assign = new;
        let mut counts = vec![0usize; k];
        let mut sums = Mat::<f64>::zeros(k, d);
        for i in 0..n {
            counts[assign[i]] += 1;
            for j in 0..d {
                sums[(assign[i], j)] += x[(i, j)];
            }
        }
        for c in 0..k {
            if counts[c] == 0 {
                // An empty cluster takes the point farthest from its centre.
                let far = (0..n)
                    .max_by(|&a, &b| dm[(a, assign[a])].total_cmp(&dm[(b, assign[b])]))
                    .unwrap_or(0);
                for j in 0..d {
                    centres[(c, j)] = x[(far, j)];
                }
                assign[far] = c;
            } else {
                for j in 0..d {
                    centres[(c, j)] = sums[(c, j)] / counts[c] as f64;
                }
            }
        }
    }
    assign
}

/// One mixture per class, for class-conditional digit samples (figure 3.6) and prediction.
#[derive(Debug, Clone)]
pub struct GmmPerClass {
    pub class_prior: Vec<f64>,
    pub mixtures: Vec<Gmm>,
}

impl GmmPerClass {
    /// Fits `params` to the rows of each class (labels in `0..k`).
    pub fn fit(params: &GmmParams, x: MatRef<'_, f64>, y: &[usize], k: usize) -> Result<Self> {
        super::check_supervised(x, y, k)?;
        let mut mixtures = Vec::with_capacity(k);
        let mut prior = Vec::with_capacity(k);
        for c in 0..k {
            let rows: Vec<usize> = (0..x.nrows()).filter(|&i| y[i] == c).collect();
            let xc = Mat::from_fn(rows.len(), x.ncols(), |r, j| x[(rows[r], j)]);
            let p = GmmParams {
                seed: params.seed.wrapping_add(c as u64),
                ..params.clone()
            };
            mixtures.push(p.fit(xc.as_ref()).map_err(|e| match e {
                ModelError::Data(m) => ModelError::Data(format!("class {c}: {m}")),
                other => other,
            })?);
            prior.push(rows.len() as f64 / x.nrows() as f64);
        }
        Ok(Self {
            class_prior: prior,
            mixtures,
        })
    }
}

impl ClassConditional for GmmPerClass {
    fn num_classes(&self) -> usize {
        self.mixtures.len()
    }

    fn joint_log_prob(&self, x: MatRef<'_, f64>) -> Mat<f64> {
        let cols: Vec<Vec<f64>> = self.mixtures.iter().map(|m| m.log_prob(x)).collect();
        Mat::from_fn(x.nrows(), cols.len(), |i, c| {
            self.class_prior[c].ln() + cols[c][i]
        })
    }

    fn sample_class(&self, class: usize, n: usize, rng: &mut dyn rand::RngCore) -> Mat<f64> {
        self.mixtures[class].sample(n, rng)
    }
}

impl Density for GmmPerClass {
    fn dim(&self) -> usize {
        self.mixtures[0].dim()
    }

    fn log_prob(&self, x: MatRef<'_, f64>) -> Vec<f64> {
        self.marginal_log_prob(x)
    }

    fn sample(&self, n: usize, rng: &mut dyn rand::RngCore) -> Mat<f64> {
        super::sample_by_prior(self, &self.class_prior, self.dim(), n, rng)
    }
}
