//! Small helpers shared across the crate.

use std::io::Write;
use std::path::Path;

/// What long work (an evaluation, the figures) tells its caller as it goes: lines worth
/// showing, and how far along it is, so a front end can draw a bar with a rate and an ETA.
/// Any `FnMut(&str)` takes the lines and ignores the counts.
pub trait Progress {
    fn line(&mut self, text: &str);
    /// `done` of `total` units of work (rows of a scoreboard, groups of figures) finished.
    fn advance(&mut self, _done: u64, _total: u64) {}
}

impl<F: FnMut(&str)> Progress for F {
    fn line(&mut self, text: &str) {
        self(text)
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, fsync, then
/// rename over the target, then fsync of the folder. A crash leaves either the old file or
/// the new one, never a half-written one.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".genmod-tmp-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    // tempfile creates 0600 files; what we write is the user's ordinary output.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The name a choice has on the command line (clap's `ValueEnum`), which is also what the
/// TUI's fields parse back and what the book's generated tables print.
pub fn cli_name<T: clap::ValueEnum>(choice: &T) -> String {
    choice
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// The candidate closest to `input` by edit distance, if it is close enough to be a typo.
pub fn closest<'a>(input: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (levenshtein(input, c), *c))
        .filter(|&(d, c)| d <= (c.len().max(input.len()) / 3).max(1) + 1)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + (ca != cb) as usize)
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Settles the CPU thread count once, for a binary's `main` to call before it starts any
/// thread. Without RAYON_NUM_THREADS, candle works out its thread count on every matrix
/// product by reading /proc/cpuinfo, a file read per product; setting the variable to
/// that same count, the physical cores, makes it a lookup. Rayon's pool, which our own
/// kernels use, then has the same size as candle's GEMM.
///
/// It also sets CANDLE_NUM_THREADS to 1 unless the user chose a value: candle's element-wise
/// ops otherwise start a second pool of spinning threads beside rayon's, and on a small
/// machine the two pools take turns stealing each other's cores. The heavy element-wise
/// work of our models runs in genmod's own rayon kernels (see [`on_compute_pool`]);
/// candle's GEMMs still use every core.
///
/// # Safety
/// It writes environment variables, which is sound only while no other thread can read or
/// write the environment: call it first thing in `main`, before any thread is started.
pub unsafe fn settle_thread_count() {
    if let Some(n) = threads_argument(std::env::args_os()) {
        // SAFETY: the caller guarantees that the process has a single thread.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = candle_core::utils::get_num_threads();
        // SAFETY: the caller guarantees that the process has a single thread.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: as above.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
}

/// `text` with every control character (escape sequences' ESC among them, and newlines)
/// shown as `�`: file names, folder names and error messages can come from anyone, and
/// must not reach a terminal as commands to it.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// [`printable`], keeping line breaks and tabs (for messages printed whole to stderr).
pub fn printable_lines(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// The value of a `--threads N` (or `--threads=N`) argument, if one parses as a count of
/// at least 1. The thread count must be settled before clap runs (and before any thread
/// starts), so it is read from the raw arguments; clap, which also declares the option,
/// reports a bad value.
pub fn threads_argument(args: impl IntoIterator<Item = std::ffi::OsString>) -> Option<usize> {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let value = args.iter().enumerate().find_map(|(i, a)| {
        if a == "--threads" {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix("--threads=").map(str::to_string)
        }
    })?;
    value.parse().ok().filter(|&n| n >= 1)
}

/// The independent random streams drawn from one user seed. Each use of randomness takes
/// its own stream, so that adding draws to one (a larger grid, more evaluation batches)
/// leaves every other unchanged. The values are part of what makes a seeded run
/// reproducible across versions: changing one changes that stream's results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    /// Samples drawn from a fitted or trained model for grids and files.
    Sampling = 0x5A3D,
    /// The fixed noise (and test images) behind the live sample grid.
    FixedNoise = 0xF1CED,
    /// Noise of test-set evaluation (the VAE's codes) and of the scoreboard's classical
    /// samples.
    Evaluation = 0xE7A1,
    /// The importance samples of the VAE's likelihood on the scoreboard.
    Likelihood = 0x1EAF,
    /// Initialisation and batches of the scoreboard's digit classifier.
    Classifier = 0xC1A55,
    /// The k-means++ seeding of the clusters the MLP GAN and the DCGAN condition on.
    Clusters = 0xC105,
}

impl Stream {
    /// The seed of this stream for a user's `seed`.
    pub fn seed(self, seed: u64) -> u64 {
        seed ^ self as u64
    }

    /// A generator for this stream of a user's `seed`.
    pub fn rng(self, seed: u64) -> rand_chacha::ChaCha8Rng {
        use rand::SeedableRng;
        rand_chacha::ChaCha8Rng::seed_from_u64(self.seed(seed))
    }
}

/// mimalloc's index of its `purge_delay` option in the v3 sources libmimalloc-sys 0.1.49
/// builds (`mi_option_e` in include/mimalloc.h; the crate names no constant for it), and
/// that option's default there in milliseconds (src/options.c).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const MI_PURGE_DELAY_DEFAULT: std::os::raw::c_long = 1000;

/// Keeps the pages a training step frees for the next step instead of handing them back to
/// the OS. A step frees and allocates the same large buffers (layer outputs, gradients,
/// patch matrices) over and over; once mimalloc has purged them, each reuse page-faults
/// and the kernel zeroes the pages again. Keeping them costs a little resident memory
/// (on the DCGAN, about 7% more at its peak) and changes no result. For a binary's
/// `main`. Left alone when the option does not hold that default: any other value a user
/// sets in MIMALLOC_PURGE_DELAY wins, and so does any other mimalloc build.
pub fn keep_freed_memory() {
    // SAFETY: both calls only read and write an entry of mimalloc's option table; option
    // values may be changed at any time.
    unsafe {
        if libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) == MI_PURGE_DELAY_DEFAULT {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        }
    }
}

/// Runs `f` on a worker of a new rayon pool (RAYON_NUM_THREADS threads) and waits for it.
/// The parallel kernels `f` calls then split their work with the other workers by work
/// stealing; called from an outside thread, every parallel op would instead park the
/// caller and wake it afterwards, hundreds of times per training step (VAE 17.8k → 22.2k,
/// MLP GAN 4.6k → 5.1k img/s, medians of interleaved runs on 2 cores). If no pool can be
/// built, `f` runs on the calling thread.
pub fn on_compute_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("genmod-compute-{i}"))
        .build()
    {
        Ok(pool) => pool.install(f),
        Err(_) => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let name = "runs/\u{1b}]0;pwned\u{7}\u{1b}[2Jx\u{9b}1m\nend";
        let shown = printable(name);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(
            shown,
            "runs/\u{FFFD}]0;pwned\u{FFFD}\u{FFFD}[2Jx\u{FFFD}1m\u{FFFD}end"
        );
        assert_eq!(printable_lines("a\tb\n\u{1b}c"), "a\tb\n\u{FFFD}c");
    }

    #[test]
    fn the_threads_argument_is_read_in_both_spellings_and_bad_values_left_to_clap() {
        let args = |v: &[&str]| {
            v.iter()
                .map(|s| s.into())
                .collect::<Vec<std::ffi::OsString>>()
        };
        assert_eq!(
            threads_argument(args(&["genmod", "train", "--threads", "3"])),
            Some(3)
        );
        assert_eq!(
            threads_argument(args(&["genmod", "--threads=2", "eval"])),
            Some(2)
        );
        assert_eq!(threads_argument(args(&["genmod", "--threads", "0"])), None);
        assert_eq!(threads_argument(args(&["genmod", "--threads", "x"])), None);
        assert_eq!(threads_argument(args(&["genmod", "train"])), None);
    }

    #[test]
    fn closest_suggests_typos_and_rejects_strangers() {
        let names = ["mnist", "fashion-mnist", "cifar10"];
        assert_eq!(closest("mnsit", &names), Some("mnist"));
        assert_eq!(closest("cifar-10", &names), Some("cifar10"));
        assert_eq!(closest("imagenet", &names), None);
    }

    #[test]
    fn atomic_write_replaces_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.bin");
        atomic_write(&p, b"first version, long").unwrap();
        atomic_write(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary files were left behind");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(
                mode, 0o644,
                "written files must be readable by others, got {mode:o}"
            );
        }
    }
}
