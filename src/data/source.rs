//! Choosing a dataset by name, as the CLI and the TUI do.

use super::{DataError, Result, Split, cifar10, image_folder, mnist};
use std::path::{Path, PathBuf};

/// A dataset a front end can ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// The 10,000 MNIST digits built into genmod (the default everywhere).
    EmbeddedMnist,
    /// Full MNIST from a folder with the four standard IDX files.
    Mnist(PathBuf),
    /// Fashion-MNIST from a folder with the four standard IDX files.
    FashionMnist(PathBuf),
    /// CIFAR-10 binary batches from a folder.
    Cifar10(PathBuf),
    /// A folder of PNG/JPEG images, centre-cropped and resized to `size` x `size`.
    ImageFolder {
        dir: PathBuf,
        size: u32,
        limit: Option<usize>,
    },
}

/// Names accepted by [`DataSource::from_name`].
pub const NAMES: [&str; 5] = ["mnist-10k", "mnist", "fashion-mnist", "cifar10", "folder"];

impl DataSource {
    /// Parses a dataset name; all but `mnist-10k` need `data_dir`.
    pub fn from_name(
        name: &str,
        data_dir: Option<&Path>,
        image_size: u32,
        limit: Option<usize>,
    ) -> Result<Self> {
        let need_dir = |what: &str| -> Result<PathBuf> {
            let d = data_dir.ok_or_else(|| {
                DataError::Other(format!(
                    "dataset `{name}` needs --data-dir pointing at {what}"
                ))
            })?;
            if !d.is_dir() {
                return Err(DataError::MissingFile {
                    path: d.to_path_buf(),
                    expected: format!("an existing folder with {what}"),
                });
            }
            Ok(d.to_path_buf())
        };
        Ok(match name {
            "mnist-10k" | "embedded" if data_dir.is_some() => {
                // The embedded digits need no folder: a folder given with them is a
                // forgotten --dataset, and training on the wrong data silently is worse
                // than a refusal.
                return Err(DataError::Other(format!(
                    "--data-dir {} was given without --dataset; add --dataset mnist, fashion-mnist, cifar10 or folder (the embedded digits, the default, need no folder)",
                    data_dir
                        .map(|d| d.display().to_string())
                        .unwrap_or_default()
                )));
            }
            "mnist-10k" | "embedded" => DataSource::EmbeddedMnist,
            "mnist" => DataSource::Mnist(need_dir("the MNIST IDX files")?),
            "fashion-mnist" => DataSource::FashionMnist(need_dir("the Fashion-MNIST IDX files")?),
            "cifar10" => DataSource::Cifar10(need_dir("the CIFAR-10 binary batches")?),
            "folder" => DataSource::ImageFolder {
                dir: need_dir("PNG or JPEG images")?,
                size: image_size,
                limit,
            },
            other => {
                let suggestion = crate::util::closest(other, &NAMES);
                return Err(DataError::Other(format!(
                    "unknown dataset `{other}`{}; expected one of: {}",
                    suggestion
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default(),
                    NAMES.join(", ")
                )));
            }
        })
    }

    /// Loads the train and test parts. Image folders are split 90/10 with `seed`.
    pub fn load(&self, seed: u64) -> Result<(Split, Option<image_folder::FolderReport>)> {
        Ok(match self {
            DataSource::EmbeddedMnist => (mnist::embedded(), None),
            DataSource::Mnist(d) => (mnist::load_dir(d, mnist::Variant::Mnist)?, None),
            DataSource::FashionMnist(d) => {
                (mnist::load_dir(d, mnist::Variant::FashionMnist)?, None)
            }
            DataSource::Cifar10(d) => (cifar10::load_dir(d)?, None),
            DataSource::ImageFolder { dir, size, limit } => {
                let (ds, report) = image_folder::load(dir, *size, *limit)?;
                (ds.split(0.1, seed), Some(report))
            }
        })
    }

    /// A short description for logs and the TUI.
    /// The name [`DataSource::from_name`] takes for this source.
    pub fn name(&self) -> &'static str {
        match self {
            DataSource::EmbeddedMnist => "mnist-10k",
            DataSource::Mnist(_) => "mnist",
            DataSource::FashionMnist(_) => "fashion-mnist",
            DataSource::Cifar10(_) => "cifar10",
            DataSource::ImageFolder { .. } => "folder",
        }
    }

    /// The folder the source reads, if any.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            DataSource::EmbeddedMnist => None,
            DataSource::Mnist(d) | DataSource::FashionMnist(d) | DataSource::Cifar10(d) => Some(d),
            DataSource::ImageFolder { dir, .. } => Some(dir),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            DataSource::EmbeddedMnist => "embedded MNIST (10k digits)".into(),
            DataSource::Mnist(d) => format!("MNIST from {}", d.display()),
            DataSource::FashionMnist(d) => format!("Fashion-MNIST from {}", d.display()),
            DataSource::Cifar10(d) => format!("CIFAR-10 from {}", d.display()),
            DataSource::ImageFolder { dir, size, .. } => {
                format!("images from {} at {size}x{size}", dir.display())
            }
        }
    }
}
