//! `genmod-tui`: the terminal workbench. Argument parsing and wiring only.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use genmod::cli::DataArgs;
use genmod::tui::graphics::ImageMode;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "genmod-tui",
    version,
    about = "Train the report's generative models and watch them learn"
)]
struct Cli {
    #[command(flatten)]
    data: DataArgs,
    /// Folder for run folders (checkpoints) and saved PNGs.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Continue from a checkpoint or a run folder's newest checkpoint.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// auto (ask the terminal: kitty graphics or sixel if it answers for them, else
    /// half-blocks), halfblocks, ascii, sixel or kitty.
    #[arg(long)]
    image_mode: Option<String>,
}

fn main() {
    genmod::util::settle_thread_count();
    genmod::util::keep_freed_memory();
    let cli = Cli::parse();
    let result = (|| -> anyhow::Result<()> {
        let image_mode = match cli.image_mode.as_deref() {
            None | Some("auto") => None,
            Some("halfblocks" | "half-blocks") => Some(ImageMode::HalfBlocks),
            Some("ascii") => Some(ImageMode::Ascii),
            Some("sixel") => Some(ImageMode::Sixel),
            Some("kitty") => Some(ImageMode::Kitty),
            Some(o) => anyhow::bail!(
                "--image-mode must be auto, halfblocks, ascii, sixel or kitty, got `{o}`"
            ),
        };
        genmod::tui::run(genmod::tui::Options {
            source: cli.data.source()?,
            seed: cli.data.seed,
            out_root: cli.out,
            resume: cli.resume,
            image_mode,
        })
    })();
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
