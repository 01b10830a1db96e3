//! The derivations the models rest on, each computed with the library's own code and pinned
//! as a table in `snapshots/` a reader can check by hand. Every test also asserts the
//! identity it illustrates, so a snapshot is never the only thing that could fail.
//!
//! - D* = p_data / (p_data + p_g), found by minimising the library's discriminator loss;
//! - V(D*, G) = −log 4 + 2·JSD, and the JSD's saturation on disjoint supports;
//! - the Gaussian KL closed form against Monte Carlo;
//! - ELBO ≤ log p(x), with the gap equal to KL(q ‖ p(z | x)), on a model where both are exact;
//! - the generator's gradient under the saturating and non-saturating losses;
//! - EM as coordinate ascent: a monotone log-likelihood trace, the E-step closing the gap.
//!
//! The book's chapters 3.5, 3.7 and 4.1 quote these tables.

use candle_core::{Device, Tensor, Var};
use faer::Mat;
use genmod::classical::gmm::{Covariances, Gmm, GmmParams};
use genmod::neural::losses;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt::Write;

macro_rules! snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!($name, $value);
        })
    };
}

fn sigmoid(a: f64) -> f64 {
    1.0 / (1.0 + (-a).exp())
}

/// Σ p log(p / q), with 0 log 0 = 0.
fn kl(p: &[f64], q: &[f64]) -> f64 {
    p.iter()
        .zip(q)
        .filter(|(a, _)| **a > 0.0)
        .map(|(a, b)| a * (a / b).ln())
        .sum()
}

/// The Jensen–Shannon divergence in nats: ½ KL(p ‖ m) + ½ KL(q ‖ m) with m = (p + q)/2.
fn jsd(p: &[f64], q: &[f64]) -> f64 {
    let m: Vec<f64> = p.iter().zip(q).map(|(a, b)| (a + b) / 2.0).collect();
    0.5 * kl(p, &m) + 0.5 * kl(q, &m)
}

/// A batch that holds point x in proportion to `p[x]` (every p a multiple of 1/100), so
/// that a mean over the batch is the expectation under p.
fn batch_of(p: &[f64]) -> Tensor {
    let ids: Vec<u32> = p
        .iter()
        .enumerate()
        .flat_map(|(x, &px)| {
            let copies = (px * 100.0).round() as usize;
            assert!((copies as f64 - px * 100.0).abs() < 1e-9, "p must be k/100");
            std::iter::repeat_n(x as u32, copies)
        })
        .collect();
    Tensor::new(ids, &Device::Cpu).unwrap()
}

/// The library's discriminator loss −E_data log D − E_g log(1 − D) for D's logits on a
/// discrete space.
fn discriminator_loss(logits: &[f32], p_data: &[f64], p_g: &[f64]) -> f64 {
    let a = Tensor::new(logits, &Device::Cpu).unwrap();
    let loss = losses::discriminator(
        &a.index_select(&batch_of(p_data), 0).unwrap(),
        &a.index_select(&batch_of(p_g), 0).unwrap(),
    )
    .unwrap();
    loss.to_scalar::<f32>().unwrap() as f64
}

/// D's logits on a discrete space after gradient descent on the library's discriminator
/// loss −E_data log D − E_g log(1 − D), and the loss where it stopped.
fn train_discriminator(p_data: &[f64], p_g: &[f64], steps: usize) -> (Vec<f64>, f64) {
    let logits = Var::new(vec![0f32; p_data.len()], &Device::Cpu).unwrap();
    let (real, fake) = (batch_of(p_data), batch_of(p_g));
    let loss_at = |a: &Tensor| {
        losses::discriminator(
            &a.index_select(&real, 0).unwrap(),
            &a.index_select(&fake, 0).unwrap(),
        )
        .unwrap()
    };
    for _ in 0..steps {
        let loss = loss_at(logits.as_tensor());
        let grads = loss.backward().unwrap();
        let g = grads.get(logits.as_tensor()).unwrap();
        // Descent: D minimises its loss (= maximises V). The loss is convex in each logit
        // with curvature at most (p_data + p_g)/4, so a step of 4 is stable.
        let next = (logits.as_tensor() - (g * 4.0).unwrap()).unwrap();
        logits.set(&next).unwrap();
    }
    let a = logits.as_tensor().to_vec1::<f32>().unwrap();
    let loss = discriminator_loss(&a, p_data, p_g);
    (a.into_iter().map(f64::from).collect(), loss)
}

/// Minimising the library's D loss finds D*(x) = p_data(x) / (p_data(x) + p_g(x)) on every
/// point. Fails if D's direction is wrong: ascending the loss (or a loss with the terms
/// swapped) drives D towards 1 − D*, or off to 0 and 1, never to D*; the D = ½ check of
/// p_data = p_g cannot tell the two apart, so every pair here has p_data ≠ p_g somewhere.
#[test]
fn the_trained_discriminator_is_the_optimal_one() {
    let p_data = [0.10, 0.40, 0.30, 0.20];
    let p_g = [0.40, 0.10, 0.20, 0.30];
    let (logits, loss) = train_discriminator(&p_data, &p_g, 3000);
    let mut s = String::from("x | p_data | p_g | D* = p_data/(p_data+p_g) | D learned\n");
    for x in 0..4 {
        let d_star = p_data[x] / (p_data[x] + p_g[x]);
        let d = sigmoid(logits[x]);
        writeln!(
            s,
            "{x} | {:.2} | {:.2} | {d_star:.4} | {d:.4}",
            p_data[x], p_g[x]
        )
        .unwrap();
        assert!(
            (d - d_star).abs() < 1e-3,
            "x = {x}: D learned {d}, D* {d_star}"
        );
        // The wrong direction's fixed point, 1 − D*, is far from D* on every point here.
        assert!((d - (1.0 - d_star)).abs() > 0.1);
    }
    let v = -loss;
    let want = -(4f64.ln()) + 2.0 * jsd(&p_data, &p_g);
    writeln!(
        s,
        "V(D, G) = -loss = {v:.4}; -log 4 + 2 JSD = {want:.4}; -log 4 = {:.4}",
        -(4f64.ln())
    )
    .unwrap();
    assert!((v - want).abs() < 1e-4, "V {v} vs {want}");
    snapshot!("derivation_optimal_discriminator", s);
}

/// V(D*, G) = −log 4 + 2·JSD(p_data ‖ p_g), evaluated as minus the library's D loss at D*'s
/// logits, for pairs from identical to nearly disjoint; and the JSD of two unit-width
/// uniforms shifted by t: it grows as t·log 2 while they overlap, then stays at log 2,
/// so past t = 1 it gives G no gradient however far apart the two are.
#[test]
fn the_value_at_the_optimum_is_minus_log_4_plus_twice_the_jsd() {
    let pairs: [(&str, [f64; 3], [f64; 3]); 4] = [
        ("equal", [0.2, 0.5, 0.3], [0.2, 0.5, 0.3]),
        ("close", [0.2, 0.5, 0.3], [0.3, 0.4, 0.3]),
        ("far", [0.7, 0.2, 0.1], [0.1, 0.2, 0.7]),
        ("nearly disjoint", [0.98, 0.01, 0.01], [0.01, 0.01, 0.98]),
    ];
    let mut s = String::from("pair | JSD (nats) | V(D*, G) | -log 4 + 2 JSD\n");
    for (name, p, q) in pairs {
        // D*'s logit is log(p_data / p_g); −V is the library's loss at D*.
        let logits: Vec<f32> = p.iter().zip(&q).map(|(a, b)| (a / b).ln() as f32).collect();
        let v = -discriminator_loss(&logits, &p, &q);
        let j = jsd(&p, &q);
        let want = -(4f64.ln()) + 2.0 * j;
        writeln!(s, "{name} | {j:.4} | {v:.4} | {want:.4}").unwrap();
        assert!((v - want).abs() < 1e-5, "{name}: V {v} vs {want}");
        assert!(v >= -(4f64.ln()) - 1e-6);
    }
    // Uniform[0, 1] against Uniform[t, t + 1], on a grid of 1/100.
    s.push_str("\nshift t | JSD(U[0,1] || U[t,t+1]) | min(t, 1) log 2\n");
    let cells = 600;
    let uniform = |from: usize| -> Vec<f64> {
        (0..cells)
            .map(|i| {
                if (from..from + 100).contains(&i) {
                    0.01
                } else {
                    0.0
                }
            })
            .collect()
    };
    let p = uniform(0);
    let mut last = 0.0;
    for t in [0, 25, 50, 75, 100, 200, 400] {
        let j = jsd(&p, &uniform(t));
        let tl = (t as f64 / 100.0).min(1.0) * 2f64.ln();
        writeln!(s, "{:.2} | {j:.4} | {tl:.4}", t as f64 / 100.0).unwrap();
        assert!((j - tl).abs() < 1e-12, "t = {t}: JSD {j}");
        assert!(j >= last - 1e-12);
        last = j;
    }
    snapshot!("derivation_value_at_optimum_and_jsd", s);
}

/// KL(N(μ, σ²) ‖ N(0, 1)) = −½(1 + log σ² − μ² − σ²) from the library (what the VAE's loss
/// uses) against a Monte Carlo mean of log q(z) − log p(z) over 200,000 draws z ~ q, each
/// within four standard errors.
#[test]
fn the_gaussian_kl_closed_form_agrees_with_monte_carlo() {
    let cases: [(f64, f64); 5] = [
        (0.0, 0.0),
        (0.8, -0.6),
        (-1.2, 0.5),
        (0.3, -2.0),
        (2.0, 1.0),
    ];
    let mu: Vec<f32> = cases.iter().map(|c| c.0 as f32).collect();
    let logvar: Vec<f32> = cases.iter().map(|c| c.1 as f32).collect();
    let n_cases = cases.len();
    // One row per case: the library sums over a row's dimensions.
    let closed = losses::gaussian_kl_per_image(
        &Tensor::from_vec(mu, (n_cases, 1), &Device::Cpu).unwrap(),
        &Tensor::from_vec(logvar, (n_cases, 1), &Device::Cpu).unwrap(),
    )
    .unwrap()
    .to_vec1::<f32>()
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let n = 200_000;
    let mut s = String::from("mu | log sigma^2 | closed form | Monte Carlo | standard error\n");
    for (c, &(mu, logvar)) in cases.iter().enumerate() {
        let sd = (0.5 * logvar).exp();
        let draws: Vec<f64> = (0..n)
            .map(|_| {
                let e: f64 = rng.sample(rand_distr::StandardNormal);
                let z = mu + sd * e;
                // log q(z) − log p(z); the ½ log 2π terms cancel.
                -0.5 * (e * e + logvar) + 0.5 * z * z
            })
            .collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let se = (var / n as f64).sqrt();
        let closed = closed[c] as f64;
        let by_hand = -0.5 * (1.0 + logvar - mu * mu - logvar.exp());
        writeln!(
            s,
            "{mu:.1} | {logvar:.1} | {closed:.4} | {mean:.4} | {se:.4}"
        )
        .unwrap();
        assert!((closed - by_hand).abs() < 1e-5, "{mu}, {logvar}");
        assert!(
            (closed - mean).abs() <= 4.0 * se + 1e-9,
            "mu {mu}, logvar {logvar}: closed {closed}, Monte Carlo {mean} ± {se}"
        );
    }
    snapshot!("derivation_gaussian_kl", s);
}

/// A one-dimensional linear-Gaussian model, z ~ N(0, 1), x | z ~ N(w z + b, s²), where
/// log p(x) and the posterior p(z | x) are exact. For Gaussian q(z) = N(m, v):
/// ELBO(q) = E_q[log p(x | z)] − KL(q ‖ p(z)) (the KL from the library, as the VAE uses it),
/// and log p(x) − ELBO(q) = KL(q ‖ p(z | x)) ≥ 0, zero exactly at the posterior.
#[test]
fn the_elbo_gap_is_the_kl_to_the_true_posterior() {
    let (w, b, s2, x) = (2.0f64, 0.5f64, 0.25f64, 1.7f64);
    let ln2pi = (2.0 * std::f64::consts::PI).ln();
    // Marginal: x ~ N(b, w² + s²).
    let marg = w * w + s2;
    let log_px = -0.5 * (ln2pi + marg.ln() + (x - b).powi(2) / marg);
    // Posterior: precision 1 + w²/s², mean v_post·w(x − b)/s².
    let v_post = 1.0 / (1.0 + w * w / s2);
    let m_post = v_post * w * (x - b) / s2;
    let qs = [
        ("the prior N(0, 1)", 0.0, 1.0),
        ("a rough guess", 0.3, 0.2),
        ("a close guess", 0.55, 0.07),
        ("the posterior", m_post, v_post),
        ("too confident", 0.7, 0.001),
    ];
    let mut s = format!(
        "model: z ~ N(0,1), x|z ~ N({w} z + {b}, {s2}); x = {x}\nlog p(x) = {log_px:.4}; posterior N({m_post:.4}, {v_post:.4})\n\nq = N(m, v) | m | v | ELBO | log p(x) - ELBO | KL(q || p(z|x))\n"
    );
    for (name, m, v) in qs {
        let kl_prior = losses::gaussian_kl_per_image(
            &Tensor::new(&[[m as f32]], &Device::Cpu).unwrap(),
            &Tensor::new(&[[v.ln() as f32]], &Device::Cpu).unwrap(),
        )
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()[0] as f64;
        // E_q[(x − w z − b)²] = (x − w m − b)² + w² v.
        let expected_ll =
            -0.5 * (ln2pi + s2.ln()) - ((x - w * m - b).powi(2) + w * w * v) / (2.0 * s2);
        let elbo = expected_ll - kl_prior;
        let gap = log_px - elbo;
        let kl_post = 0.5 * ((v_post / v).ln() + (v + (m - m_post).powi(2)) / v_post - 1.0);
        writeln!(
            s,
            "{name} | {m:.4} | {v:.4} | {elbo:.4} | {gap:.4} | {kl_post:.4}"
        )
        .unwrap();
        assert!(
            elbo <= log_px + 1e-5,
            "{name}: ELBO {elbo} > log p {log_px}"
        );
        // f32 KL from the library: agree to 1e-5 relative.
        assert!(
            (gap - kl_post).abs() < 1e-5 * (1.0 + kl_post.abs()) + 1e-5,
            "{name}: gap {gap} vs KL {kl_post}"
        );
    }
    snapshot!("derivation_elbo_gap", s);
}

/// The generator's gradient with respect to D's logit a on a fake, for the report's
/// saturating loss log(1 − D(G(z))) (d/da = −D) and the non-saturating −log D(G(z))
/// (d/da = −(1 − D)), at D(G(z)) from "clearly fake" to "fooled". Early in training D rejects
/// fakes, D(G(z)) ≈ 0, where only the non-saturating loss gives G a gradient to follow.
#[test]
fn the_saturating_loss_gives_no_gradient_where_d_rejects_the_fakes() {
    let grad = |f: fn(&Tensor) -> candle_core::Result<Tensor>, a: f64| {
        let a = Var::new(&[a as f32], &Device::Cpu).unwrap();
        let g = f(a.as_tensor()).unwrap().backward().unwrap();
        g.get(a.as_tensor()).unwrap().to_vec1::<f32>().unwrap()[0] as f64
    };
    let mut s = String::from("D(G(z)) | logit a | d/da log(1 - D) | d/da -log D\n");
    for d in [0.001, 0.01, 0.1, 0.5, 0.9, 0.99] {
        let a = (d / (1.0f64 - d)).ln();
        // The library's generator losses are what G minimises.
        let sat = grad(losses::generator_saturating, a);
        let non = grad(losses::generator_non_saturating, a);
        writeln!(s, "{d} | {a:.3} | {sat:.4} | {non:.4}").unwrap();
        assert!((sat - (-d)).abs() < 1e-5, "saturating at D = {d}: {sat}");
        assert!(
            (non - (-(1.0 - d))).abs() < 1e-5,
            "non-saturating at D = {d}: {non}"
        );
    }
    snapshot!("derivation_generator_gradients", s);
}

/// EM as coordinate ascent on the bound F(q, θ) = Σ_n Σ_k q_nk [log π_k + log N(x_n | k)
/// − log q_nk] ≤ ℓ(θ): the E-step sets q to the responsibilities, which makes F equal to ℓ
/// without changing θ (so ℓ is unchanged); the M-step raises F, and ℓ ≥ F then rises at
/// least as much. Per iteration: ℓ(θ_t) = F(q_t, θ_t) ≤ F(q_t, θ_{t+1}) ≤ ℓ(θ_{t+1}).
#[test]
fn em_climbs_the_bound_and_the_log_likelihood_never_falls() {
    let data = [-2.1, -1.3, -0.4, 0.2, 1.8, 2.9, 3.6, 4.4];
    let x = Mat::from_fn(data.len(), 1, |i, _| data[i]);
    let mut theta = Gmm::new(
        vec![0.5, 0.5],
        Mat::from_fn(2, 1, |k, _| [-0.5, 0.5][k]),
        Covariances::Diagonal(Mat::from_fn(2, 1, |_, _| 1.0)),
    )
    .unwrap();
    let params = GmmParams {
        components: 2,
        reg_covar: 0.0,
        ..Default::default()
    };
    // F(q, θ) per data point, as the log-likelihood is.
    let bound = |g: &Gmm, q: &Mat<f64>| {
        let lp = g.component_log_pdf(x.as_ref());
        let mut f = 0.0;
        for n in 0..x.nrows() {
            for k in 0..2 {
                let qn = q[(n, k)];
                if qn > 0.0 {
                    f += qn * (g.weights[k].ln() + lp[(n, k)] - qn.ln());
                }
            }
        }
        f / x.nrows() as f64
    };
    let mut s = format!(
        "data: {data:?}; start pi = (0.5, 0.5), mu = (-0.5, 0.5), sigma^2 = (1, 1)\n\nt | l(theta_t) | F(q_t, theta_t) | F(q_t, theta_t+1) | l(theta_t+1) | mu_1 | mu_2\n"
    );
    for t in 0..8 {
        let (ll, q) = theta.e_step(x.as_ref());
        let tight = bound(&theta, &q);
        let next = params.m_step(x.as_ref(), q.as_ref()).unwrap();
        let raised = bound(&next, &q);
        let (ll_next, _) = next.e_step(x.as_ref());
        writeln!(
            s,
            "{t} | {ll:.4} | {tight:.4} | {raised:.4} | {ll_next:.4} | {:.4} | {:.4}",
            next.means[(0, 0)],
            next.means[(1, 0)]
        )
        .unwrap();
        assert!(
            (ll - tight).abs() < 1e-12,
            "t = {t}: the E-step leaves a gap"
        );
        assert!(raised >= tight - 1e-12, "t = {t}: the M-step lowered F");
        assert!(
            ll_next >= raised - 1e-12,
            "t = {t}: F above the log-likelihood"
        );
        theta = next;
    }
    snapshot!("derivation_em_trace", s);
}

/// Report 3.7 says the VAE's first term minimises ‖x − x̂‖². That holds for a Gaussian
/// decoder of fixed variance σ², whose −log p(x | z) is ‖x − x̂‖²/(2σ²) plus a constant, so
/// it ranks reconstructions exactly as the squared error does. The Bernoulli decoder genmod
/// uses on binarised digits (and the report's own cross-entropy of 3.6) is a different loss:
/// it can prefer the reconstruction the squared error ranks second.
#[test]
fn the_reconstruction_term_is_a_squared_error_only_for_a_fixed_variance_gaussian_decoder() {
    let x = [1.0f32, 1.0, 1.0, 1.0];
    // A: every pixel a little off; B: three pixels right, one badly off.
    let candidates = [
        ("A", [0.75f32, 0.75, 0.75, 0.75]),
        ("B", [0.999, 0.999, 0.999, 0.4]),
    ];
    let dev = Device::Cpu;
    let target = Tensor::new(&[x], &dev).unwrap();
    let mut s = String::from(
        "x = (1, 1, 1, 1)\nx_hat | squared error | Gaussian NLL, sigma = 0.1 | Gaussian NLL, sigma = 1 | Bernoulli NLL (cross-entropy)\n",
    );
    let mut rows = Vec::new();
    for (name, x_hat) in candidates {
        let p = Tensor::new(&[x_hat], &dev).unwrap();
        let se = losses::squared_error(&p, &target)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        let logits = ((&p / (1.0 - &p).unwrap()).unwrap()).log().unwrap();
        let bce = losses::bce_with_logits(&logits, &target)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        let gauss = |sigma: f64| -> f64 {
            x.iter()
                .zip(&x_hat)
                .map(|(a, b)| {
                    let d = (*a - *b) as f64;
                    d * d / (2.0 * sigma * sigma)
                        + 0.5 * (2.0 * std::f64::consts::PI * sigma * sigma).ln()
                })
                .sum()
        };
        let (g1, g2) = (gauss(0.1), gauss(1.0));
        writeln!(
            s,
            "{name} {x_hat:?} | {se:.4} | {g1:.4} | {g2:.4} | {bce:.4}"
        )
        .unwrap();
        // Fixed σ: the Gaussian NLL is the squared error scaled, plus a constant.
        let constant = 2.0 * (2.0 * std::f64::consts::PI).ln() + 4.0 * 0.1f64.ln();
        assert!(
            (g1 - (se / 0.02 + constant)).abs() < 1e-3,
            "{name}: {g1} vs {se}"
        );
        rows.push((se, bce));
    }
    let (a, b) = (rows[0], rows[1]);
    assert!(a.0 < b.0, "the squared error prefers A");
    assert!(b.1 < a.1, "the cross-entropy prefers B");
    s.push_str(
        "squared error (and any fixed-variance Gaussian) prefers A; cross-entropy prefers B\n",
    );
    snapshot!("derivation_reconstruction_losses", s);
}

/// Report 4.1 says switching G to maximise log D(G(z)) leaves "the objective the same". It
/// does not. With D at its optimum D* for the current p_g (and held there while G moves),
/// the saturating step follows the gradient of 2·JSD(p_g ‖ p_data), while the non-saturating
/// step follows that of KL(p_g ‖ p_data) − 2·JSD(p_g ‖ p_data) (Arjovsky and Bottou 2017,
/// Theorem 2.5): a different divergence, whose reverse KL is mode-seeking. Gradients by
/// central differences over the logits θ of p_g = softmax(θ) on three points.
#[test]
fn the_non_saturating_loss_follows_a_different_divergence() {
    let p_data = [0.5, 0.3, 0.2];
    let theta = [0.2, -0.4, 0.6];
    let softmax = |t: &[f64; 3]| -> [f64; 3] {
        let e = t.map(f64::exp);
        let z: f64 = e.iter().sum();
        e.map(|v| v / z)
    };
    let p_g = softmax(&theta);
    // D* for the current p_g, frozen while G's objectives are differentiated.
    let d_star: Vec<f64> = (0..3).map(|x| p_data[x] / (p_data[x] + p_g[x])).collect();
    let saturating = |t: &[f64; 3]| -> f64 {
        let q = softmax(t);
        (0..3).map(|x| q[x] * (1.0 - d_star[x]).ln()).sum()
    };
    let non_saturating = |t: &[f64; 3]| -> f64 {
        let q = softmax(t);
        -(0..3).map(|x| q[x] * d_star[x].ln()).sum::<f64>()
    };
    let two_jsd = |t: &[f64; 3]| 2.0 * jsd(&softmax(t), &p_data);
    let kl_minus_two_jsd =
        |t: &[f64; 3]| kl(&softmax(t), &p_data) - 2.0 * jsd(&softmax(t), &p_data);
    let grad = |f: &dyn Fn(&[f64; 3]) -> f64, i: usize| {
        let h = 1e-6;
        let (mut up, mut down) = (theta, theta);
        up[i] += h;
        down[i] -= h;
        (f(&up) - f(&down)) / (2.0 * h)
    };
    let mut s = format!(
        "p_data = {p_data:?}; p_g = softmax({theta:?}) = ({:.4}, {:.4}, {:.4})\ni | d/dtheta_i saturating | d/dtheta_i 2 JSD | d/dtheta_i non-saturating | d/dtheta_i (KL(p_g||p_data) - 2 JSD)\n",
        p_g[0], p_g[1], p_g[2]
    );
    let mut ratios = Vec::new();
    for i in 0..3 {
        let (sat, j, non, k) = (
            grad(&saturating, i),
            grad(&two_jsd, i),
            grad(&non_saturating, i),
            grad(&kl_minus_two_jsd, i),
        );
        writeln!(s, "{i} | {sat:.5} | {j:.5} | {non:.5} | {k:.5}").unwrap();
        assert!(
            (sat - j).abs() < 1e-6,
            "saturating vs 2 JSD at {i}: {sat} {j}"
        );
        assert!(
            (non - k).abs() < 1e-6,
            "non-saturating vs KL - 2 JSD at {i}: {non} {k}"
        );
        ratios.push(non / sat);
    }
    // Not the same objective: the two gradients point in different directions (they are not
    // one rescaled), so the two losses move p_g along different paths.
    let spread = ratios.iter().cloned().fold(f64::MIN, f64::max)
        - ratios.iter().cloned().fold(f64::MAX, f64::min);
    writeln!(
        s,
        "ratio non-saturating / saturating per component: {ratios:.3?}"
    )
    .unwrap();
    assert!(spread > 0.05, "ratios {ratios:?}");
    snapshot!("derivation_non_saturating_divergence", s);
}
