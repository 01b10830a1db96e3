//! `genmod`: the headless command line. Argument parsing and wiring only; the work is in
//! the library.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use genmod::data::{DataSource, download};
use genmod::render::Grid;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "genmod",
    version,
    about = "Classical and deep generative models, headless"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect, preview and download datasets.
    #[command(subcommand)]
    Data(DataCommand),
}

/// Which dataset to use: the embedded digits unless told otherwise.
#[derive(Args, Clone)]
struct DataArgs {
    /// mnist-10k (embedded, default), mnist, fashion-mnist, cifar10 or folder.
    #[arg(long, default_value = "mnist-10k")]
    dataset: String,
    /// Folder holding the dataset's files (all but mnist-10k).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Side of the square images an image folder is resized to.
    #[arg(long, default_value_t = 64)]
    image_size: u32,
    /// Load at most this many images from an image folder.
    #[arg(long)]
    limit: Option<usize>,
    /// Seed of the train/test split of an image folder.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl DataArgs {
    fn source(&self) -> Result<DataSource> {
        if self.image_size == 0 {
            bail!("--image-size must be at least 1, got 0");
        }
        Ok(DataSource::from_name(
            &self.dataset,
            self.data_dir.as_deref(),
            self.image_size,
            self.limit,
        )?)
    }
}

#[derive(Subcommand)]
enum DataCommand {
    /// Print a dataset's shape and class counts.
    Info(DataArgs),
    /// Write the first images of a dataset as a PNG grid.
    Grid {
        #[command(flatten)]
        data: DataArgs,
        /// Number of images.
        #[arg(long, default_value_t = 64)]
        count: usize,
        /// Output PNG.
        #[arg(long)]
        out: PathBuf,
    },
    /// Download a dataset into the cache and verify its checksums.
    Fetch {
        /// mnist, fashion-mnist or cifar10.
        name: String,
        /// Cache folder (default: $GENMOD_CACHE, else ~/.cache/genmod).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Base URL to fetch from instead of the published mirrors (repeatable).
        #[arg(long)]
        mirror: Vec<String>,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Data(cmd) => data(cmd),
    }
}

fn data(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Info(args) => {
            let source = args.source()?;
            let (split, report) = source.load(args.seed)?;
            println!("dataset: {}", source.describe());
            print!("{}", split.describe());
            if let Some(r) = report {
                println!("folder: {}", r.summary());
            }
        }
        DataCommand::Grid { data, count, out } => {
            if count == 0 {
                bail!("--count must be at least 1");
            }
            let (split, _) = data.source()?.load(data.seed)?;
            let ds = split.train.take(count);
            let [n, c, h, w] = ds.shape();
            let cols = (n as f64).sqrt().ceil() as usize;
            Grid::from_u8(ds.pixels(), n, c, h, w, cols)
                .upscale(2)
                .save_png(&out)?;
            println!("wrote {n} images to {}", out.display());
        }
        DataCommand::Fetch {
            name,
            cache,
            mirror,
        } => {
            let manifest = download::manifest(&name).with_context(|| {
                let hint = genmod::util::closest(&name, &download::DATASETS)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                format!(
                    "unknown dataset `{name}`{hint}; expected one of: {}",
                    download::DATASETS.join(", ")
                )
            })?;
            let cache = cache.unwrap_or_else(download::default_cache_dir);
            let mirrors = (!mirror.is_empty()).then_some(mirror);
            let mut last_report = std::time::Instant::now();
            let dir = download::fetch(
                &manifest,
                &cache,
                mirrors.as_deref(),
                &mut |f, got, total| {
                    if last_report.elapsed().as_millis() > 500 {
                        last_report = std::time::Instant::now();
                        match total {
                            Some(t) => eprintln!("{f}: {got}/{t} bytes"),
                            None => eprintln!("{f}: {got} bytes"),
                        }
                    }
                },
            )?;
            println!("{name}: verified in {}", dir.display());
            println!("use it with: --dataset {name} --data-dir {}", dir.display());
        }
    }
    Ok(())
}
