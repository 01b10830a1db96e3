//! `genmod-tui`: the terminal workbench. Argument parsing and wiring only.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, ValueEnum};
use genmod::cli::{DataArgs, choice};
use genmod::tui::graphics::ImageMode;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "genmod-tui",
    version,
    about = "Train the report's generative models and watch them learn"
)]
struct Cli {
    /// Start in the runs browser of this folder of run folders (a run folder itself opens
    /// its parent's browser): open, resume, compare or delete runs.
    #[arg(value_name = "RUNS", conflicts_with_all = ["runs_dir", "resume"])]
    browse: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    /// Parent folder of run folders: each run started gets its own, MODEL-YYYYMMDD-HHMMSS
    /// (UTC), holding its checkpoints, samples.png, metrics.csv and saved PNGs.
    #[arg(long, default_value = "runs")]
    runs_dir: PathBuf,
    /// Continue from a checkpoint, or a run folder's newest good checkpoint, in that run's
    /// folder.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// CPU threads for training and the matrix products (default: the physical cores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: Option<u32>,
    /// Colours for a dark or a light terminal background, or none (the default is none
    /// where NO_COLOR is set, else dark).
    #[arg(long, value_parser = choice::<ThemeArg>())]
    theme: Option<ThemeArg>,
    /// How sample grids are drawn.
    #[arg(long, value_parser = choice::<ImageModeArg>(), default_value = "auto")]
    image_mode: ImageModeArg,
    /// Base URL the picker's downloads (f) fetch from instead of the published mirrors
    /// (repeatable; a local copy of the files, for example).
    #[arg(long, value_name = "URL")]
    mirror: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ThemeArg {
    /// Colours that read on a dark background.
    Dark,
    /// Colours that read on a light background.
    Light,
    /// No colour (what NO_COLOR asks for).
    Mono,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ImageModeArg {
    /// Ask the terminal: kitty graphics or sixel if it answers for them, else half-blocks.
    Auto,
    /// '▀' cells with 24-bit colours, any UTF-8 terminal.
    #[value(alias = "half-blocks")]
    Halfblocks,
    /// A character ramp: any terminal, no colour needed.
    Ascii,
    /// Real pixels through the sixel protocol.
    Sixel,
    /// Real pixels through the kitty graphics protocol.
    Kitty,
}

fn main() {
    // SAFETY: the first statement of main: no other thread exists yet.
    unsafe { genmod::util::settle_thread_count() };
    genmod::util::keep_freed_memory();
    let cli = Cli::parse();
    if let Some(t) = cli.theme {
        use genmod::tui::theme;
        theme::choose(match t {
            ThemeArg::Dark => theme::DARK,
            ThemeArg::Light => theme::LIGHT,
            ThemeArg::Mono => theme::MONO,
        });
    }
    let result = (|| -> anyhow::Result<()> {
        let image_mode = match cli.image_mode {
            ImageModeArg::Auto => None,
            ImageModeArg::Halfblocks => Some(ImageMode::HalfBlocks),
            ImageModeArg::Ascii => Some(ImageMode::Ascii),
            ImageModeArg::Sixel => Some(ImageMode::Sixel),
            ImageModeArg::Kitty => Some(ImageMode::Kitty),
        };
        let runs_dir = match &cli.browse {
            Some(dir) if !dir.is_dir() => {
                anyhow::bail!("{}: no such folder of runs", dir.display())
            }
            // A run folder: browse the runs beside it.
            Some(dir) if genmod::train::runs::existing_run(dir).is_some() => dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), PathBuf::from),
            Some(dir) => dir.clone(),
            None => cli.runs_dir,
        };
        genmod::tui::run(genmod::tui::Options {
            source: cli.data.source()?,
            seed: cli.data.seed,
            runs_dir,
            resume: cli.resume,
            browse_runs: cli.browse.is_some(),
            image_mode,
            mirrors: cli.mirror,
        })?;
        Ok(())
    })();
    if let Err(e) = result {
        eprintln!(
            "error: {}",
            genmod::util::printable_lines(&format!("{e:#}"))
        );
        std::process::exit(1);
    }
}
