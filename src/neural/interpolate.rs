//! Latent interpolation (report 5): the codes on the path between two codes, linear or
//! spherical. Spherical interpolation (Shoemake 1985; White 2016) keeps the norm of codes
//! drawn from a high-dimensional Gaussian near √d, where the linear midpoint is atypically
//! short.

use super::Model;
use candle_core::{Result, Tensor};

/// The images along the paths between the codes of two draws `ends` (2 x latent, standard
/// normal): `steps` images along the linear path, then `steps` along the spherical one.
/// A model that maps its draws through a code mixture (the autoencoder's and the VAE's
/// default) has both ends mapped to codes first and the path run between those codes:
/// the mixture picks a component from each draw, so a path between the draws themselves
/// would jump from component to component.
pub fn images(
    model: &dyn Model,
    ends: &Tensor,
    steps: usize,
    labels: Option<&Tensor>,
) -> Result<Tensor> {
    let through_mixture = match model.code_mixture() {
        Some(mixture) => Some(mixture.transform(ends)?),
        None => None,
    };
    let ends_codes = through_mixture.as_ref().unwrap_or(ends).to_vec2::<f32>()?;
    let latent = ends.dim(1)?;
    let mut codes = Vec::with_capacity(2 * steps * latent);
    for spherical in [false, true] {
        for z in path(&ends_codes[0], &ends_codes[1], steps, spherical) {
            codes.extend(z);
        }
    }
    let codes = Tensor::from_vec(codes, (2 * steps, latent), ends.device())?;
    match through_mixture {
        Some(_) => model.decode_codes(&codes)?.ok_or_else(|| {
            candle_core::Error::Msg("a model with a code mixture has no decoder of codes".into())
        }),
        None => model.generate(&codes, labels),
    }
}

/// `steps` codes from `a` to `b` inclusive; `spherical` follows the great circle.
pub fn path(a: &[f32], b: &[f32], steps: usize, spherical: bool) -> Vec<Vec<f32>> {
    let steps = steps.max(2);
    let norm = |v: &[f32]| v.iter().map(|x| (x * x) as f64).sum::<f64>().sqrt();
    let (na, nb) = (norm(a), norm(b));
    let cos = if na > 0.0 && nb > 0.0 {
        (a.iter().zip(b).map(|(x, y)| (x * y) as f64).sum::<f64>() / (na * nb)).clamp(-1.0, 1.0)
    } else {
        1.0
    };
    let omega = cos.acos();
    (0..steps)
        .map(|i| {
            let t = i as f64 / (steps - 1) as f64;
            let (wa, wb) = if spherical && omega.sin().abs() > 1e-6 {
                (
                    ((1.0 - t) * omega).sin() / omega.sin(),
                    (t * omega).sin() / omega.sin(),
                )
            } else {
                (1.0 - t, t)
            };
            a.iter()
                .zip(b)
                .map(|(x, y)| (wa * *x as f64 + wb * *y as f64) as f32)
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_exact_and_linear_midpoint_is_the_mean() {
        let (a, b) = (vec![1.0f32, 0.0], vec![0.0f32, 1.0]);
        let p = path(&a, &b, 3, false);
        assert_eq!(p[0], a);
        assert_eq!(p[2], b);
        assert_eq!(p[1], vec![0.5, 0.5]);
    }

    #[test]
    fn spherical_path_keeps_the_norm_of_orthogonal_unit_codes() {
        let p = path(&[1.0, 0.0], &[0.0, 1.0], 5, true);
        for v in &p {
            let n = (v[0] * v[0] + v[1] * v[1]).sqrt();
            assert!((n - 1.0).abs() < 1e-6, "{v:?}");
        }
        assert!((p[2][0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    }
}
