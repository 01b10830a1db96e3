//! `cargo bench --bench classical`: the classical workloads of `genmod bench classical`,
//! without the reference. For the side-by-side table with scikit-learn, run
//! `cargo run --release --bin genmod -- bench classical`.

use genmod::bench::classical;
use genmod::classical::gda::CovarianceKind;
use genmod::classical::gmm::GmmCovariance;

fn main() {
    // Decoding the embedded digits (gunzip + IDX parse) and converting them to f32.
    let load = genmod::bench::median_seconds(10, || {
        let split = genmod::data::mnist::embedded();
        let train = split.train.to_f32(genmod::data::PixelScale::ZeroOne);
        let test = split.test.to_f32(genmod::data::PixelScale::ZeroOne);
        assert_eq!(train.len() + test.len(), 10_000 * 784);
    });
    println!(
        "{:<32} {:>10.2} ms (median)",
        "load 10k embedded digits to f32",
        load * 1e3
    );
    let split = genmod::data::mnist::embedded();
    let reps = 5;
    let rows = [
        (
            "EM iteration, diagonal, K=10",
            classical::em_iteration(&split, GmmCovariance::Diagonal, 10, reps),
        ),
        (
            "EM iteration, full, K=10",
            classical::em_iteration(&split, GmmCovariance::Full, 10, 3),
        ),
        (
            "GDA fit, shared covariance",
            classical::gda_fit(&split, CovarianceKind::Shared, 3),
        ),
        (
            "GDA fit, per-class covariance",
            classical::gda_fit(&split, CovarianceKind::PerClass, 3),
        ),
    ];
    for (name, secs) in rows {
        println!("{name:<32} {:>10.2} ms (median)", secs * 1e3);
    }
}
