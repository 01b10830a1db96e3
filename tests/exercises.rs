//! Executable exercises for the book (book/src/exercises.md). Each function below ships
//! with a reference answer; replace its body with your own and run
//! `cargo test --test exercises`: the tests say whether your answer is right.

use faer::Mat;
use genmod::classical::gmm::{Covariances, Gmm};
use genmod::data::play_tennis;

/// Exercise 1 (3.1): the add-alpha estimate of one cell of a multinomial over `cells` cells.
fn smoothed_estimate(count: u64, total: u64, cells: usize, alpha: f64) -> f64 {
    (count as f64 + alpha) / (total as f64 + alpha * cells as f64)
}

/// Exercise 2 (3.2): p(No | x) from the priors and the four conditionals of each class.
fn posterior_no(prior: [f64; 2], cond_no: [f64; 4], cond_yes: [f64; 4]) -> f64 {
    let no = prior[0] * cond_no.iter().product::<f64>();
    let yes = prior[1] * cond_yes.iter().product::<f64>();
    no / (no + yes)
}

/// Exercise 3 (3.5): the responsibility of each component for the point `x` (1-D mixture).
fn responsibility(x: f64, weights: &[f64], means: &[f64], variances: &[f64]) -> Vec<f64> {
    let dens: Vec<f64> = (0..weights.len())
        .map(|k| {
            weights[k] * (-(x - means[k]).powi(2) / (2.0 * variances[k])).exp()
                / (2.0 * std::f64::consts::PI * variances[k]).sqrt()
        })
        .collect();
    let total: f64 = dens.iter().sum();
    dens.iter().map(|d| d / total).collect()
}

/// Exercise 4 (3.7): KL(N(mu, exp(logvar)) || N(0, 1)) for one dimension.
fn gaussian_kl(mu: f64, logvar: f64) -> f64 {
    -0.5 * (1.0 + logvar - mu * mu - logvar.exp())
}

/// Exercise 5 (4.1): the optimal discriminator on each point of a discrete space.
fn optimal_d(p_data: &[f64], p_g: &[f64]) -> Vec<f64> {
    p_data.iter().zip(p_g).map(|(a, b)| a / (a + b)).collect()
}

/// Exercise 5 (4.1): V(D*, G) = E_data[log D*] + E_g[log(1 - D*)].
fn value_at_optimum(p_data: &[f64], p_g: &[f64]) -> f64 {
    let d = optimal_d(p_data, p_g);
    p_data.iter().zip(&d).map(|(p, d)| p * d.ln()).sum::<f64>()
        + p_g
            .iter()
            .zip(&d)
            .map(|(p, d)| p * (1.0 - d).ln())
            .sum::<f64>()
}

/// Exercise 6 (3.4): the shrinkage that lets GDA fit 2,000 digits well.
const GDA_SHRINKAGE: f64 = 0.1;

/// Exercise 13 (4.2): the side of a transposed convolution's output for an input side,
/// kernel, stride, padding and output padding.
fn transposed_side(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    extra: usize,
) -> usize {
    (input - 1) * stride + kernel + extra - 2 * padding
}

/// Exercise 14 (4.3): the expected conditional accuracy of a generator that ignores its
/// label, when labels are asked for with probabilities `asked` and the generator's samples
/// are classified as each class with probabilities `drawn`.
fn label_blind_accuracy(asked: &[f64], drawn: &[f64]) -> f64 {
    asked.iter().zip(drawn).map(|(a, d)| a * d).sum()
}

/// Exercise 15 (5): the point a fraction `t` of the way from `a` to `b` along the great
/// circle (spherical interpolation).
fn slerp(a: &[f64], b: &[f64], t: f64) -> Vec<f64> {
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let cos = a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / (norm(a) * norm(b));
    let omega = cos.clamp(-1.0, 1.0).acos();
    if omega.sin().abs() < 1e-12 {
        return a.iter().zip(b).map(|(x, y)| x + t * (y - x)).collect();
    }
    let (wa, wb) = (
        ((1.0 - t) * omega).sin() / omega.sin(),
        (t * omega).sin() / omega.sin(),
    );
    a.iter().zip(b).map(|(x, y)| wa * x + wb * y).collect()
}

/// Exercise 18 (1): p(y | x) from a joint table `joint[x][y]` of counts or probabilities
/// (each row one value of x), the classifier a generative model of (x, y) contains.
fn conditional_from_joint(joint: &[Vec<f64>]) -> Vec<Vec<f64>> {
    joint
        .iter()
        .map(|row| {
            let total: f64 = row.iter().sum();
            row.iter().map(|v| v / total).collect()
        })
        .collect()
}

/// Exercise 19 (2): bits per dimension of 8-bit images under a density on pixels scaled
/// to [0, 1], from the mean log-density of the dequantised images over `dims` pixels.
fn discrete_bits_per_dim(log_density: f64, dims: usize) -> f64 {
    (-log_density + dims as f64 * 256f64.ln()) / (dims as f64 * std::f64::consts::LN_2)
}

/// Exercise 20 (4.4): the largest centred square of a `width` x `height` image, as its
/// left column, top row and side.
fn centre_square(width: u32, height: u32) -> (u32, u32, u32) {
    let side = width.min(height);
    ((width - side) / 2, (height - side) / 2, side)
}

#[test]
fn exercise_1_smoothing_sums_to_one() {
    let rows: Vec<Vec<usize>> = play_tennis::table()
        .iter()
        .map(|d| d.features().to_vec())
        .collect();
    let mle = genmod::classical::multinomial::MultinomialParams { alpha: 0.0 }
        .fit(&rows, &play_tennis::CARDINALITIES)
        .unwrap();
    let sum: f64 = mle
        .counts()
        .iter()
        .map(|&c| smoothed_estimate(c, 14, 36, 1.0))
        .sum();
    assert!((sum - 1.0).abs() < 1e-12, "your estimates sum to {sum}");
    assert!((smoothed_estimate(0, 14, 36, 1.0) - 1.0 / 50.0).abs() < 1e-12);
    assert!(
        (smoothed_estimate(3, 10, 5, 0.0) - 0.3).abs() < 1e-12,
        "alpha = 0 is the MLE"
    );
}

#[test]
fn exercise_2_naive_bayes_posterior() {
    let nb = genmod::classical::naive_bayes::NaiveBayesParams { alpha: 0.0 }
        .fit_categorical(&play_tennis::categorical())
        .unwrap();
    let q = [0usize, 2, 0, 1]; // Sunny, Cool, High, Strong
    let cond = |y: usize| -> [f64; 4] { std::array::from_fn(|k| nb.theta[y][k][q[k]]) };
    let yours = posterior_no([nb.class_prior[0], nb.class_prior[1]], cond(0), cond(1));
    let want = nb.predict_proba_row(&q.map(Some))[0];
    assert!(
        (yours - want).abs() < 1e-12,
        "yours {yours}, the model's {want}"
    );
}

#[test]
fn exercise_3_e_step() {
    let (w, m, v) = ([0.3, 0.7], [-1.0, 2.0], [0.5, 2.0]);
    let g = Gmm::new(
        w.to_vec(),
        Mat::from_fn(2, 1, |k, _| m[k]),
        Covariances::Diagonal(Mat::from_fn(2, 1, |k, _| v[k])),
    )
    .unwrap();
    for x in [-3.0, -1.0, 0.4, 2.0, 5.0] {
        let r = g.e_step(Mat::from_fn(1, 1, |_, _| x).as_ref()).1;
        let yours = responsibility(x, &w, &m, &v);
        for k in 0..2 {
            assert!(
                (yours[k] - r[(0, k)]).abs() < 1e-10,
                "x = {x}, component {k}"
            );
        }
    }
}

#[test]
fn exercise_4_kl_closed_form() {
    use rand::{Rng, SeedableRng};
    let (mu, logvar): (f64, f64) = (0.8, -0.6);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    let n = 200_000;
    let s = (0.5 * logvar).exp();
    let mc: f64 = (0..n)
        .map(|_| {
            let e: f64 = rng.sample(rand_distr::StandardNormal);
            let z: f64 = mu + s * e;
            -0.5 * (e * e + logvar) + 0.5 * z * z
        })
        .sum::<f64>()
        / n as f64;
    let yours = gaussian_kl(mu, logvar);
    assert!((yours - mc).abs() < 0.01, "yours {yours}, Monte Carlo {mc}");
}

#[test]
fn exercise_5_optimal_discriminator_and_minus_log_4() {
    let p = [0.2, 0.5, 0.3];
    assert!(optimal_d(&p, &p).iter().all(|d| (d - 0.5).abs() < 1e-12));
    assert!((value_at_optimum(&p, &p) + 4f64.ln()).abs() < 1e-12);
    let q = [0.6, 0.1, 0.3];
    // V(D*, G) = −log 4 + 2 JSD > −log 4 when the distributions differ.
    let m: Vec<f64> = p.iter().zip(&q).map(|(a, b)| (a + b) / 2.0).collect();
    let kl = |a: &[f64]| a.iter().zip(&m).map(|(x, y)| x * (x / y).ln()).sum::<f64>();
    let jsd = 0.5 * kl(&p) + 0.5 * kl(&q);
    assert!((value_at_optimum(&p, &q) - (-(4f64.ln()) + 2.0 * jsd)).abs() < 1e-12);
    assert!(value_at_optimum(&p, &q) > -(4f64.ln()));
}

#[test]
fn exercise_6_gda_shrinkage() {
    use genmod::classical::ClassConditional;
    let split = genmod::data::mnist::embedded();
    let train = split.train.take(2000);
    let test = split.test.take(500);
    let (x, y) = (
        genmod::classical::features(&train),
        genmod::classical::labels(&train).unwrap(),
    );
    let fitted = genmod::classical::gda::GdaParams {
        shrinkage: GDA_SHRINKAGE,
        ..Default::default()
    }
    .fit(x.as_ref(), &y, 10);
    let m = fitted.unwrap_or_else(|e| panic!("shrinkage {GDA_SHRINKAGE} does not fit: {e}"));
    let acc = m.accuracy(
        genmod::classical::features(&test).as_ref(),
        &genmod::classical::labels(&test).unwrap(),
    );
    assert!(
        acc >= 0.85,
        "shrinkage {GDA_SHRINKAGE} gives {:.1}% test accuracy",
        100.0 * acc
    );
}

/// Checked against candle's own transposed convolution, then against the DCGAN's plan: each
/// of its kernel-4, stride-2, padding-1 layers doubles the side.
#[test]
fn exercise_13_transposed_convolution_side() {
    use candle_core::{Device, Tensor};
    for (input, kernel, stride, padding, extra) in [
        (7, 4, 2, 1, 0),
        (4, 4, 2, 1, 0),
        (5, 3, 2, 1, 1),
        (6, 5, 1, 2, 0),
        (3, 2, 3, 0, 0),
    ] {
        let x = Tensor::zeros((1, 1, input, input), candle_core::DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::zeros(
            (1, 1, kernel, kernel),
            candle_core::DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        let y = x.conv_transpose2d(&w, padding, extra, stride, 1).unwrap();
        let side = y.dims4().unwrap().2;
        assert_eq!(
            transposed_side(input, kernel, stride, padding, extra),
            side,
            "input {input}, kernel {kernel}, stride {stride}, padding {padding}, output padding {extra}"
        );
    }
    for image in [28, 32, 64] {
        let (mut side, doublings) = genmod::neural::dcgan::plan(image).unwrap();
        for _ in 0..doublings {
            side = transposed_side(side, 4, 2, 1, 0);
        }
        assert_eq!(side, image, "the DCGAN's plan for {image} px");
    }
}

/// Checked by simulation: labels asked with `asked`, classes drawn with `drawn`
/// independently of the label, and the matches counted.
#[test]
fn exercise_14_a_label_blind_generator_scores_chance() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(14);
    let pick = |p: &[f64], u: f64| {
        let mut acc = 0.0;
        p.iter()
            .position(|&q| {
                acc += q;
                u < acc
            })
            .unwrap_or(p.len() - 1)
    };
    let balanced = vec![0.1; 10];
    let skewed = [0.5, 0.2, 0.1, 0.05, 0.05, 0.04, 0.03, 0.01, 0.01, 0.01];
    for (asked, drawn) in [
        (&balanced[..], &skewed[..]),
        (&skewed[..], &skewed[..]),
        (&skewed[..], &balanced[..]),
    ] {
        let n = 200_000;
        let hits = (0..n)
            .filter(|_| pick(asked, rng.random()) == pick(drawn, rng.random()))
            .count();
        let simulated = hits as f64 / n as f64;
        let yours = label_blind_accuracy(asked, drawn);
        assert!(
            (simulated - yours).abs() < 0.004,
            "simulated {simulated}, yours {yours}"
        );
    }
    // Balanced labels: a generator that ignores them scores 1/10 whatever it draws.
    assert!((label_blind_accuracy(&balanced, &skewed) - 0.1).abs() < 1e-12);
}

/// Checked against the library's path (which the figures decode), then for the property
/// that motivates it: between orthogonal codes of equal norm the norm stays the same.
#[test]
fn exercise_15_spherical_interpolation() {
    let (a, b) = ([0.6f32, -1.2, 0.3, 2.0], [1.5f32, 0.4, -0.7, 0.1]);
    let steps = 7;
    let library = genmod::neural::interpolate::path(&a, &b, steps, true);
    let (a64, b64): (Vec<f64>, Vec<f64>) = (
        a.iter().map(|&v| v as f64).collect(),
        b.iter().map(|&v| v as f64).collect(),
    );
    for (i, point) in library.iter().enumerate() {
        let t = i as f64 / (steps - 1) as f64;
        let yours = slerp(&a64, &b64, t);
        for (y, l) in yours.iter().zip(point) {
            assert!(
                (y - *l as f64).abs() < 1e-5,
                "t = {t}: yours {yours:?}, library {point:?}"
            );
        }
    }
    let (u, v) = ([3.0, 0.0, 0.0], [0.0, 0.0, 3.0]);
    for t in [0.1, 0.5, 0.8] {
        let p = slerp(&u, &v, t);
        let norm = p.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 3.0).abs() < 1e-9, "t = {t}: norm {norm}");
    }
}

/// Checked on the Play Tennis table (Outlook against Play), then for what the
/// conditional loses: two joints with the same p(y | x) can have different p(x).
#[test]
fn exercise_18_a_generative_model_contains_its_classifier() {
    use genmod::data::play_tennis::{Categorical, Outlook};
    let mut joint = vec![vec![0.0; 2]; 3];
    for day in play_tennis::table() {
        joint[day.outlook.index()][day.play.index()] += 1.0;
    }
    let cond = conditional_from_joint(&joint);
    let sunny = Outlook::Sunny.index();
    // Sunny days: 3 No and 2 Yes, so p(Yes | Sunny) = 2/5.
    assert!(
        (cond[sunny][1] - 0.4).abs() < 1e-12,
        "p(Yes | Sunny) = {}",
        cond[sunny][1]
    );
    // Overcast days always play.
    assert_eq!(cond[Outlook::Overcast.index()], vec![0.0, 1.0]);
    for row in &cond {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{row:?}");
    }
    // Scaling a row of the joint changes p(x) but not p(y | x): the classifier cannot
    // tell the two worlds apart, the generative model can.
    let mut other = joint.clone();
    other[sunny].iter_mut().for_each(|v| *v *= 4.0);
    assert_eq!(conditional_from_joint(&other), cond);
    let p_sunny = |j: &[Vec<f64>]| j[sunny].iter().sum::<f64>() / j.iter().flatten().sum::<f64>();
    assert!((p_sunny(&joint) - p_sunny(&other)).abs() > 0.3);
}

/// Checked against the library's summary (which the likelihood table prints), and at two
/// densities whose answers are known: uniform on the unit cube (8 bits, as many as the
/// pixels hold) and uniform on the lower half of each axis (one bit fewer).
#[test]
fn exercise_19_bits_per_dimension_of_a_density_on_8_bit_pixels() {
    let dims = 784;
    let d = dims as f64;
    assert!((discrete_bits_per_dim(0.0, dims) - 8.0).abs() < 1e-12);
    assert!((discrete_bits_per_dim(d * 2f64.ln(), dims) - 7.0).abs() < 1e-12);
    for lp in [-350.0, 120.5, 2210.0] {
        let library =
            genmod::classical::LikelihoodSummary::from_log_probs(&[lp], dims, d * 256f64.ln());
        let yours = discrete_bits_per_dim(lp, dims);
        assert!(
            (yours - library.bits_per_dim).abs() < 1e-12,
            "log density {lp}: yours {yours}, the library's {}",
            library.bits_per_dim
        );
    }
}

/// Checked against the image-folder reader on real PNG files: each pixel stores its own
/// column and row, so the reader's first pixel names the corner of the square it kept.
#[test]
fn exercise_20_the_centre_square_of_an_image() {
    for (w, h) in [(40u32, 24u32), (17, 30), (25, 25), (9, 4)] {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut png = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let (x0, y0, side) = centre_square(w, h);
        // At the square's own side the reader only crops, so pixels keep their values.
        let chw = genmod::data::image_folder::decode_square(&png, side).unwrap();
        let plane = (side * side) as usize;
        assert_eq!(chw.len(), 3 * plane, "{w}x{h}");
        assert_eq!(
            (chw[0] as u32, chw[plane] as u32, side),
            (x0, y0, w.min(h)),
            "{w}x{h}: the reader kept the square from ({}, {})",
            chw[0],
            chw[plane]
        );
        // The last pixel is the square's opposite corner.
        assert_eq!(
            (chw[plane - 1] as u32, chw[2 * plane - 1] as u32),
            (x0 + side - 1, y0 + side - 1),
            "{w}x{h}"
        );
    }
}
