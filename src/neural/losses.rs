//! Losses in numerically stable forms, each per image summed over pixels and averaged over
//! the batch, so that the VAE's β means what it says (pytorch/examples #234, #294).

use candle_core::{D, Result, Tensor};

/// softplus(x) = log(1 + eˣ) = max(x, 0) + log(1 + e^(−|x|)), stable for any x; one fused
/// pass on the CPU (a fused kernel, `neural/kernels/fused.rs`).
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    super::kernels::fused::softplus(x)
}

/// Σ over non-batch dimensions, then mean over the batch.
fn per_image_mean(t: &Tensor) -> Result<Tensor> {
    t.flatten_from(1)?.sum(D::Minus1)?.mean_all()
}

/// Binary cross-entropy of targets `x` in [0, 1] under Bernoulli logits `l`:
/// −[x log σ(l) + (1 − x) log(1 − σ(l))] = softplus(l) − x·l, summed per image.
pub fn bce_with_logits(logits: &Tensor, x: &Tensor) -> Result<Tensor> {
    bce_with_logits_per_image(logits, x)?.mean_all()
}

/// The same, per image (N values), for importance weighting.
pub fn bce_with_logits_per_image(logits: &Tensor, x: &Tensor) -> Result<Tensor> {
    let (logits, x) = (logits.flatten_from(1)?, x.flatten_from(1)?);
    if let Some(fused) = super::kernels::fused::bce_with_logits_rows(&logits, &x)? {
        return Ok(fused);
    }
    (softplus(&logits)? - (&logits * &x)?)?.sum(D::Minus1)
}

/// Squared error Σ (x̂ − x)², summed per image.
pub fn squared_error(x_hat: &Tensor, x: &Tensor) -> Result<Tensor> {
    per_image_mean(&(x_hat - x)?.sqr()?)
}

/// KL(N(μ, diag σ²) ‖ N(0, I)) = −½ Σ (1 + log σ² − μ² − σ²), per image (N values).
pub fn gaussian_kl_per_image(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    let inner = ((logvar + 1.0)? - mu.sqr()?)? - logvar.exp()?;
    inner?.sum(D::Minus1)? * -0.5
}

/// The discriminator's loss: −mean log D(x) − mean log(1 − D(G(z))), from logits.
pub fn discriminator(real_logits: &Tensor, fake_logits: &Tensor) -> Result<Tensor> {
    softplus(&real_logits.neg()?)?.mean_all()? + softplus(fake_logits)?.mean_all()?
}

/// The discriminator's loss with one-sided label smoothing: real images are scored
/// against the target 1 − `smoothing` (fakes against 0), so D is not rewarded for ever more
/// confident logits on real images: −[t log D(x) + (1 − t) log(1 − D(x))] averaged, plus
/// the fake term as above.
pub fn discriminator_smoothed(
    real_logits: &Tensor,
    fake_logits: &Tensor,
    smoothing: f64,
) -> Result<Tensor> {
    if smoothing == 0.0 {
        return discriminator(real_logits, fake_logits);
    }
    let t = 1.0 - smoothing;
    let real = ((softplus(&real_logits.neg()?)? * t)? + (softplus(real_logits)? * smoothing)?)?;
    real.mean_all()? + softplus(fake_logits)?.mean_all()?
}

/// The saturating generator loss mean log(1 − D(G(z))) = −mean softplus(l).
pub fn generator_saturating(fake_logits: &Tensor) -> Result<Tensor> {
    softplus(fake_logits)?.mean_all()?.neg()
}

/// The non-saturating generator loss −mean log D(G(z)) = mean softplus(−l).
pub fn generator_non_saturating(fake_logits: &Tensor) -> Result<Tensor> {
    softplus(&fake_logits.neg()?)?.mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32], shape: (usize, usize)) -> Tensor {
        Tensor::from_slice(v, shape, &Device::Cpu).unwrap()
    }

    /// With target t for real images the loss is the cross-entropy against t, by hand:
    /// −[t log σ(l) + (1 − t) log(1 − σ(l))]; its minimum over l is at σ(l) = t, not at
    /// l → ∞.
    #[test]
    fn smoothed_discriminator_loss_is_the_cross_entropy_against_the_soft_target() {
        let (real, fake) = (t(&[2.0, -1.0], (2, 1)), t(&[0.5, -3.0], (2, 1)));
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let ce =
            |l: f64, target: f64| -(target * sig(l).ln() + (1.0 - target) * (1.0 - sig(l)).ln());
        let want = (ce(2.0, 0.9) + ce(-1.0, 0.9)) / 2.0 + (ce(0.5, 0.0) + ce(-3.0, 0.0)) / 2.0;
        let got = discriminator_smoothed(&real, &fake, 0.1)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        let at = |l: f32| {
            discriminator_smoothed(&t(&[l], (1, 1)), &t(&[-30.0], (1, 1)), 0.1)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        let best = (0.9f64 / 0.1).ln() as f32;
        assert!(at(best) < at(best + 1.0) && at(best) < at(best - 1.0));
        let plain = discriminator(&real, &fake)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let zero = discriminator_smoothed(&real, &fake, 0.0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(plain, zero);
    }

    fn val(x: Tensor) -> f64 {
        x.to_scalar::<f32>().unwrap() as f64
    }

    #[test]
    fn softplus_is_stable_at_extremes() {
        let x = t(&[-1000.0, 0.0, 1000.0], (1, 3));
        let y = softplus(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(y[0], 0.0);
        assert!((y[1] - 2f32.ln()).abs() < 1e-6);
        assert_eq!(y[2], 1000.0);
    }

    #[test]
    fn bce_matches_the_definition_by_hand() {
        // Logit 0 means p = ½: each pixel costs ln 2 whatever its target.
        // Logit ln 3 means p = ¾: target 1 costs −ln ¾, target 0 costs −ln ¼.
        let l = t(&[0.0, 0.0, 3f32.ln(), 3f32.ln()], (2, 2));
        let x = t(&[1.0, 0.0, 1.0, 0.0], (2, 2));
        let got = val(bce_with_logits(&l, &x).unwrap());
        let want = (2.0 * 2f64.ln() + (-(0.75f64).ln() - 0.25f64.ln())) / 2.0;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }

    #[test]
    fn squared_error_sums_pixels_and_averages_images() {
        let a = t(&[1.0, 2.0, 0.0, 0.0], (2, 2));
        let b = t(&[0.0, 0.0, 0.0, 3.0], (2, 2));
        assert!((val(squared_error(&a, &b).unwrap()) - (5.0 + 9.0) / 2.0).abs() < 1e-6);
    }

    #[test]
    fn gaussian_kl_closed_form_by_hand() {
        // μ = 1, σ² = e: −½(1 + 1 − 1 − e) = (e − 1)/2 per dimension; μ = 0, σ² = 1: 0.
        let mu = t(&[1.0, 0.0], (1, 2));
        let lv = t(&[1.0, 0.0], (1, 2));
        let kl = gaussian_kl_per_image(&mu, &lv)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!((kl[0] as f64 - (std::f64::consts::E - 1.0) / 2.0).abs() < 1e-6);
    }

    #[test]
    fn gan_losses_at_an_undecided_discriminator() {
        // D = ½ everywhere (logit 0): D loss 2 ln 2, saturating G loss −ln 2, non-saturating ln 2.
        let z = t(&[0.0, 0.0], (2, 1));
        assert!((val(discriminator(&z, &z).unwrap()) - 2.0 * 2f64.ln()).abs() < 1e-6);
        assert!((val(generator_saturating(&z).unwrap()) + 2f64.ln()).abs() < 1e-6);
        assert!((val(generator_non_saturating(&z).unwrap()) - 2f64.ln()).abs() < 1e-6);
        // A confident D(x) = σ(3), D(G(z)) = σ(−3).
        let r = t(&[3.0], (1, 1));
        let f = t(&[-3.0], (1, 1));
        let want = -(1.0 / (1.0 + (-3f64).exp())).ln() - (1.0 - 1.0 / (1.0 + 3f64.exp())).ln();
        assert!((val(discriminator(&r, &f).unwrap()) - want).abs() < 1e-6);
    }
}
