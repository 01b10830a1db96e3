//! MNIST and Fashion-MNIST: the 10,000 embedded digits, or a folder with the standard files.
//!
//! The embedded digits are real MNIST (LeCun, Cortes, Burges; CC BY-SA 3.0), 8,004 for
//! training and 1,996 for testing, stratified by class; see `src/data/mnist10k/README.md`.

use super::{DataError, Dataset, Result, Split, idx};
use std::path::{Path, PathBuf};

const TRAIN_IMAGES: &[u8] = include_bytes!("mnist10k/train-images-idx3-ubyte.gz");
const TRAIN_LABELS: &[u8] = include_bytes!("mnist10k/train-labels-idx1-ubyte.gz");
const TEST_IMAGES: &[u8] = include_bytes!("mnist10k/t10k-images-idx3-ubyte.gz");
const TEST_LABELS: &[u8] = include_bytes!("mnist10k/t10k-labels-idx1-ubyte.gz");

/// The digit class names, "0" to "9".
pub fn digit_names() -> Vec<String> {
    (0..10).map(|d| d.to_string()).collect()
}

/// Fashion-MNIST's ten class names (Xiao, Rasul and Vollgraf 2017).
pub fn fashion_names() -> Vec<String> {
    [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Which of the two IDX datasets with MNIST's file names a folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Mnist,
    FashionMnist,
}

impl Variant {
    fn class_names(self) -> Vec<String> {
        match self {
            Variant::Mnist => digit_names(),
            Variant::FashionMnist => fashion_names(),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Variant::Mnist => "mnist",
            Variant::FashionMnist => "fashion-mnist",
        }
    }
}

/// The embedded 10k MNIST digits: no download, no network. Decoding takes milliseconds.
pub fn embedded() -> Split {
    let load = |img: &[u8], lbl: &[u8], part: &str| {
        let ip = PathBuf::from(format!("<embedded>/{part}-images-idx3-ubyte.gz"));
        let lp = PathBuf::from(format!("<embedded>/{part}-labels-idx1-ubyte.gz"));
        idx::parse_bytes(&ip, img.to_vec())
            .and_then(|i| {
                idx::parse_bytes(&lp, lbl.to_vec())
                    .and_then(|l| assemble(&ip, &lp, i, l, Variant::Mnist, part))
            })
            .expect("the embedded MNIST files are checked by the test suite")
    };
    Split {
        train: load(TRAIN_IMAGES, TRAIN_LABELS, "train"),
        test: load(TEST_IMAGES, TEST_LABELS, "t10k"),
    }
}

/// The raw embedded IDX files (gzip), by standard file name, for tests and `data info`.
pub fn embedded_files() -> [(&'static str, &'static [u8]); 4] {
    [
        ("train-images-idx3-ubyte.gz", TRAIN_IMAGES),
        ("train-labels-idx1-ubyte.gz", TRAIN_LABELS),
        ("t10k-images-idx3-ubyte.gz", TEST_IMAGES),
        ("t10k-labels-idx1-ubyte.gz", TEST_LABELS),
    ]
}

/// Writes the embedded digits into `dir` (created if missing) as the four standard MNIST
/// files, gzip-compressed, with `train_count` training images: the first `train_count` of
/// the 8,004 embedded ones, or, for more, all of them followed by copies in turn, each
/// moved by a whole-pixel shift of up to two pixels along each axis (never none) drawn
/// with `seed`, the uncovered border left blank as MNIST's is. The test part is the
/// embedded 1,996. This gives full-size folders (60,000 training images) for timing and
/// memory runs of `--data-dir` where real MNIST cannot be downloaded; the copies are not
/// new handwriting, so it says nothing of full-MNIST sample quality.
pub fn write_embedded(dir: &Path, train_count: usize, seed: u64) -> Result<()> {
    use rand::{Rng, SeedableRng};
    if train_count == 0 {
        return Err(DataError::invalid(
            dir,
            "the training part needs at least 1 image",
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let split = embedded();
    let (train, n) = (&split.train, split.train.len());
    let labels = train.labels().expect("the embedded digits are labelled");
    let (side, dim) = (28usize, 28 * 28);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut images = Vec::with_capacity(train_count * dim);
    let mut classes = Vec::with_capacity(train_count);
    for i in 0..train_count {
        let src = train.image(i % n);
        classes.push(labels[i % n] as u8);
        if i < n {
            images.extend_from_slice(src);
            continue;
        }
        let (dx, dy) = loop {
            let d: (i64, i64) = (rng.random_range(-2..=2), rng.random_range(-2..=2));
            if d != (0, 0) {
                break d;
            }
        };
        for y in 0..side as i64 {
            for x in 0..side as i64 {
                let (sx, sy) = (x - dx, y - dy);
                let inside = (0..side as i64).contains(&sx) && (0..side as i64).contains(&sy);
                images.push(if inside {
                    src[sy as usize * side + sx as usize]
                } else {
                    0
                });
            }
        }
    }
    let file = |name: &str| dir.join(format!("{name}.gz"));
    idx::write(
        &file("train-images-idx3-ubyte"),
        &[train_count, side, side],
        &images,
        true,
    )?;
    idx::write(
        &file("train-labels-idx1-ubyte"),
        &[train_count],
        &classes,
        true,
    )?;
    let test = &split.test;
    let test_labels: Vec<u8> = test
        .labels()
        .expect("the embedded digits are labelled")
        .iter()
        .map(|&l| l as u8)
        .collect();
    idx::write(
        &file("t10k-images-idx3-ubyte"),
        &[test.len(), side, side],
        test.pixels(),
        true,
    )?;
    idx::write(
        &file("t10k-labels-idx1-ubyte"),
        &[test.len()],
        &test_labels,
        true,
    )
}

fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    for cand in [stem.to_string(), format!("{stem}.gz")] {
        let p = dir.join(&cand);
        if p.is_file() {
            return Ok(p);
        }
    }
    // Some archives unpack with a dot instead of a dash before "idx".
    let dotted = stem.replacen("-idx", ".idx", 1);
    for cand in [dotted.clone(), format!("{dotted}.gz")] {
        let p = dir.join(&cand);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(DataError::MissingFile {
        path: dir.join(stem),
        expected: format!("{stem} or {stem}.gz in {}", dir.display()),
    })
}

/// Loads MNIST or Fashion-MNIST from a folder holding the four standard files.
pub fn load_dir(dir: &Path, variant: Variant) -> Result<Split> {
    if !dir.is_dir() {
        return Err(DataError::MissingFile {
            path: dir.to_path_buf(),
            expected: "an existing folder with the four MNIST-format IDX files".into(),
        });
    }
    let mut parts = Vec::new();
    for part in ["train", "t10k"] {
        let ip = find(dir, &format!("{part}-images-idx3-ubyte"))?;
        let lp = find(dir, &format!("{part}-labels-idx1-ubyte"))?;
        let images = idx::read(&ip)?;
        let labels = idx::read(&lp)?;
        parts.push(assemble(&ip, &lp, images, labels, variant, part)?);
    }
    let test = parts.pop().expect("two parts");
    let train = parts.pop().expect("two parts");
    Ok(Split { train, test })
}

fn assemble(
    image_path: &Path,
    label_path: &Path,
    images: idx::IdxArray,
    labels: idx::IdxArray,
    variant: Variant,
    part: &str,
) -> Result<Dataset> {
    if images.dims.len() != 3 {
        return Err(DataError::invalid(
            image_path,
            format!(
                "expected 3 dimensions (N x rows x cols), found {:?}",
                images.dims
            ),
        ));
    }
    if labels.dims.len() != 1 {
        return Err(DataError::invalid(
            label_path,
            format!("expected 1 dimension (N), found {:?}", labels.dims),
        ));
    }
    let (n, h, w) = (images.dims[0], images.dims[1], images.dims[2]);
    if labels.dims[0] != n {
        return Err(DataError::invalid(
            label_path,
            format!(
                "{} labels, but {} holds {n} images",
                labels.dims[0],
                image_path.display()
            ),
        ));
    }
    let names = variant.class_names();
    if let Some((record, &y)) = labels
        .data
        .iter()
        .enumerate()
        .find(|&(_, &y)| y as usize >= names.len())
    {
        return Err(DataError::LabelOutOfRange {
            path: label_path.into(),
            record,
            offset: 8 + record as u64,
            label: y as u32,
            max: names.len() as u32 - 1,
        });
    }
    let label_vec = labels.data.iter().map(|&y| y as u32).collect();
    let name = format!(
        "{} ({})",
        variant.label(),
        if part == "train" { "train" } else { "test" }
    );
    Dataset::new(
        name,
        images.data,
        [n, 1, h, w],
        Some(label_vec),
        Some(names),
    )
    .map_err(|m| DataError::invalid(image_path, m))
}
