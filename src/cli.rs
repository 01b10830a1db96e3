//! Command-line arguments shared by `genmod` and `genmod-tui`.

use crate::data::{DataError, DataSource};
use clap::builder::{PossibleValue, TypedValueParser};
use clap::error::ErrorKind;
use clap::{Args, ValueEnum};
use std::ffi::OsStr;
use std::marker::PhantomData;
use std::path::PathBuf;

/// Which dataset to use: the embedded digits unless told otherwise.
#[derive(Args, Clone, Debug)]
pub struct DataArgs {
    /// mnist-10k (embedded, default), mnist, fashion-mnist, cifar10 or folder.
    #[arg(long, default_value = "mnist-10k")]
    pub dataset: String,
    /// Folder holding the dataset's files (all but mnist-10k).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Side of the square images an image folder is resized to.
    #[arg(long, default_value_t = 64, value_parser = at_least_one::<u32>)]
    pub image_size: u32,
    /// Load at most this many images from an image folder.
    #[arg(long, value_parser = at_least_one::<usize>)]
    pub limit: Option<usize>,
    /// Seed of every random choice (splits, initialisation, batches, noise).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl DataArgs {
    /// The dataset these arguments name; a clear error if they do not add up.
    pub fn source(&self) -> Result<DataSource, DataError> {
        DataSource::from_name(
            &self.dataset,
            self.data_dir.as_deref(),
            self.image_size,
            self.limit,
        )
    }
}

/// A count of at least 1 (clap names the flag in its error).
fn at_least_one<T: std::str::FromStr<Err = std::num::ParseIntError> + PartialEq + From<u8>>(
    s: &str,
) -> Result<T, String> {
    match s.parse::<T>() {
        Ok(n) if n == T::from(0) => Err("must be at least 1, got 0".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("expected a whole number: {e}")),
    }
}

/// A parser for an enum argument that names the closest choice when a value is mistyped
/// (`vea` -> `vae`, which clap's own suggestion misses) and lists the choices; `--help`
/// still shows them. Use as `#[arg(value_parser = choice::<T>())]`.
pub fn choice<T: ValueEnum + Clone + Send + Sync + 'static>() -> Choice<T> {
    Choice(PhantomData)
}

/// See [`choice`].
#[derive(Clone, Copy)]
pub struct Choice<T>(PhantomData<T>);

impl<T: ValueEnum + Clone + Send + Sync + 'static> TypedValueParser for Choice<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let input = value.to_string_lossy();
        if let Ok(v) = T::from_str(&input, false) {
            return Ok(v);
        }
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .filter(|p| !p.is_hide_set())
            .map(|p| p.get_name().to_string())
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let hint = crate::util::closest(&input, &refs)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        let what = arg.map_or_else(|| "the argument".to_string(), |a| format!("`{a}`"));
        let mut cmd = cmd.clone();
        Err(cmd.error(
            ErrorKind::InvalidValue,
            format!(
                "invalid value `{input}` for {what}{hint}; expected one of: {}",
                refs.join(", ")
            ),
        ))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            T::value_variants()
                .iter()
                .filter_map(ValueEnum::to_possible_value),
        ))
    }
}
