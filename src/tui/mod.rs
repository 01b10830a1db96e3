//! `genmod-tui`: pick a model, train it, watch it learn, in any terminal, local or over
//! SSH. The state and its update live in [`app`], drawing in [`ui`]; this module is the
//! runner: it owns the terminal, turns keys, trainer events and signals into messages, and
//! carries out the app's effects (starting runs, sending commands, saving PNGs).
//!
//! Redraws are throttled to ten a second, so an open dashboard does not slow training; the
//! terminal is restored on every exit path (normal quit, Ctrl-C, SIGTERM, SIGHUP, panic).
//!
//! Keys are read on their own thread and arrive as messages like everything else. The main
//! loop never blocks in crossterm: on a hung-up terminal (an SSH drop, `tmux kill-server`)
//! crossterm's `poll` spins inside its read loop and would never return, so a main loop
//! waiting in it would neither see SIGHUP nor save its work. A draw that fails (EIO on a
//! dead terminal) is treated like SIGHUP: stop with a checkpoint, then exit.

pub mod app;
pub mod graphics;
pub mod theme;
pub mod ui;

use crate::classical::catalog;
use crate::data::{DataSource, Split};
use crate::neural::ModelKind;
use crate::train::{self, TrainConfig, TrainEvent, TrainHandle};
use app::{App, Effect, Msg};
use crossterm::event::{self, Event, KeyEventKind};
use graphics::ImageMode;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

/// How genmod-tui was started.
#[derive(Debug, Clone)]
pub struct Options {
    pub source: DataSource,
    pub seed: u64,
    /// Run folders go under here (`runs/` by default).
    pub runs_dir: PathBuf,
    /// A checkpoint or run folder to continue from.
    pub resume: Option<PathBuf>,
    /// Start in the runs browser of `runs_dir` instead of the picker.
    pub browse_runs: bool,
    /// Forced image mode; otherwise sixel where the terminal answers for it,
    /// else half-blocks.
    pub image_mode: Option<ImageMode>,
    /// Base URLs that replace the published mirrors when the picker downloads a dataset.
    pub mirrors: Vec<String>,
}

const FRAME: Duration = Duration::from_millis(100);

/// Why the TUI could not start.
#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Checkpoint(#[from] train::checkpoint::CheckpointError),
    #[error("installing the handler of signal {signal}: {cause}")]
    Signal { signal: i32, cause: std::io::Error },
}

/// Runs the TUI until the user quits.
pub fn run(opts: Options) -> Result<(), TuiError> {
    // Everything that can fail on bad input fails here, before the screen is taken over.
    let (split, report) = opts.source.load(opts.seed)?;
    let mut dataset = opts.source.describe();
    if let Some(r) = report
        && !r.skipped.is_empty()
    {
        dataset.push_str(&format!(" ({} skipped)", r.skipped.len()));
    }
    let resume = match &opts.resume {
        Some(p) => {
            let ckpt = train::checkpoint::resolve(p)?;
            let meta = train::checkpoint::read_meta(&ckpt)?;
            Some((ckpt, meta))
        }
        None => None,
    };
    let cuda = train::DeviceChoice::Cuda(0)
        .open()
        .map(|_| ())
        .map_err(|e| e.to_string());
    let mut app = App::new(dataset, cuda, opts.runs_dir.clone());
    app.set_dataset_fields(&opts.source);
    if let Some(m) = opts.image_mode {
        app.image_mode = m;
    }
    if let Some((ckpt, meta)) = &resume {
        if let Some(i) = app::MODELS
            .iter()
            .position(|m| m.entry == app::Entry::Neural(meta.model.kind))
        {
            app.select(i);
        }
        app.status = format!("Enter resumes {} at step {}", ckpt.display(), meta.step);
    }

    let stop_signal = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register(sig, Arc::clone(&stop_signal))
            .map_err(|cause| TuiError::Signal { signal: sig, cause })?;
    }
    let mut terminal = ratatui::init();
    // Ask the terminal for pixel graphics before the input thread starts reading its answers.
    // A forced text mode asks nothing (over a slow link the user said what they want).
    let graphics = match opts.image_mode {
        None => {
            let g = graphics::Graphics::query();
            // The best pixel mode the terminal answered for (kitty, then sixel).
            if let Some(&best) = g.available.first() {
                app.image_mode = best;
            }
            g
        }
        Some(m) if m.is_pixels() => {
            let mut g = graphics::Graphics::query();
            g.force(m);
            g
        }
        Some(_) => graphics::Graphics::none(),
    };
    app.set_pixel_modes(graphics.available.clone());
    event_loop(
        &mut terminal,
        &mut app,
        &graphics,
        (split, opts.source.clone(), opts.seed),
        resume.map(|(p, _)| p),
        &stop_signal,
        (opts.browse_runs, opts.mirrors.clone()),
    );
    ratatui::restore();
    Ok(())
}

struct Runner {
    /// The data in memory, the source it came from, and the seed that split it.
    split: Split,
    source: DataSource,
    seed: u64,
    trainer: Option<TrainHandle>,
    msgs_tx: Sender<Msg>,
    msgs_rx: Receiver<Msg>,
    resume: Option<PathBuf>,
    /// Replaces the published mirrors for the picker's downloads (empty: the published).
    mirrors: Vec<String>,
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    graphics: &graphics::Graphics,
    (split, source, seed): (Split, DataSource, u64),
    resume: Option<PathBuf>,
    stop_signal: &AtomicBool,
    (browse_runs, mirrors): (bool, Vec<String>),
) {
    let (msgs_tx, msgs_rx) = channel();
    spawn_input_thread(msgs_tx.clone());
    let mut r = Runner {
        split,
        source,
        seed,
        trainer: None,
        msgs_tx,
        msgs_rx,
        resume,
        mirrors,
    };
    if browse_runs {
        let fx = app.open_runs();
        r.apply(app, fx);
    }
    // Test-only: a key that makes the loop panic, so a test can check that the terminal
    // is restored after one, at a moment the test chooses.
    let panic_key = std::env::var("GENMOD_TUI_TEST_PANIC_ON_KEY")
        .ok()
        .and_then(|v| v.chars().next());
    let mut last_draw = Instant::now() - FRAME;
    let mut dirty = true;
    let mut terminal_lost = false;
    let mut drawn_mode = app.image_mode;
    loop {
        if (stop_signal.load(Ordering::Relaxed) || terminal_lost) && !app.quit {
            let fx = app.update(Msg::Terminate);
            r.apply(app, fx);
        }
        // Trainer events, keys and background results.
        let mut incoming = Vec::new();
        if let Some(h) = &r.trainer {
            while let Ok(ev) = h.events.try_recv() {
                incoming.push(Msg::Train(ev));
            }
        }
        while let Ok(m) = r.msgs_rx.try_recv() {
            incoming.push(m);
        }
        if incoming.is_empty()
            && let Ok(m) = r.msgs_rx.recv_timeout(Duration::from_millis(20))
        {
            incoming.push(m);
        }
        let mut key_pressed = false;
        for m in incoming {
            if let (Some(c), Msg::Key(k)) = (panic_key, &m)
                && k.code == crossterm::event::KeyCode::Char(c)
            {
                panic!("test-only panic injected by GENMOD_TUI_TEST_PANIC_ON_KEY");
            }
            key_pressed |= matches!(m, Msg::Key(_));
            dirty = true;
            let fx = app.update(m);
            r.apply(app, fx);
        }
        if app.quit {
            r.finish(app);
            return;
        }
        // Keys redraw at once (typing must not wait for the frame clock); the rest at most
        // ten times a second.
        if dirty && (key_pressed || last_draw.elapsed() >= FRAME) {
            // Pixels a protocol drew are not cells ratatui knows of: a new image mode starts
            // from a cleared screen so no stale picture stays behind the text.
            if app.image_mode != drawn_mode {
                terminal_lost |= terminal.clear().is_err();
                drawn_mode = app.image_mode;
            }
            if terminal.draw(|f| ui::draw(f, app, graphics)).is_err() {
                terminal_lost = true;
            }
            terminal_lost |= graphics.after_draw(terminal.backend_mut()).is_err();
            last_draw = Instant::now();
            dirty = false;
        }
    }
}

/// Reads terminal input on its own thread and forwards it as messages; a closed or broken
/// terminal becomes `Terminate`.
fn spawn_input_thread(tx: Sender<Msg>) {
    std::thread::Builder::new()
        .name("genmod-input".into())
        .spawn(move || {
            loop {
                let msg = match event::poll(Duration::from_millis(200)) {
                    Ok(true) => match event::read() {
                        Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => Some(Msg::Key(k)),
                        Ok(Event::Resize(_, _)) => Some(Msg::Redraw),
                        Ok(_) => None,
                        Err(_) => {
                            let _ = tx.send(Msg::Terminate);
                            return;
                        }
                    },
                    Ok(false) => None,
                    Err(_) => {
                        let _ = tx.send(Msg::Terminate);
                        return;
                    }
                };
                if let Some(m) = msg
                    && tx.send(m).is_err()
                {
                    return;
                }
            }
        })
        .expect("spawning the input thread");
}

impl Runner {
    fn apply(&mut self, app: &mut App, effects: Vec<Effect>) {
        for fx in effects {
            match fx {
                Effect::StartNeural(mut cfg, source) => {
                    self.stop_trainer();
                    if let Err(message) = self.switch_data(app, source) {
                        let fx = app.update(Msg::Train(TrainEvent::Failed { step: 0, message }));
                        self.apply(app, fx);
                        continue;
                    }
                    let split = &self.split;
                    let resume = self.resume.take();
                    let folder = train::runs::RunFolder::New(app.runs_dir.clone());
                    let started = train::runs::settle(&folder, cfg.model.kind, resume.as_deref())
                        .map_err(|e| e.to_string())
                        .and_then(|dir| {
                            if let Some(r) = &mut app.run {
                                r.log(format!("run folder {}", dir.display()));
                                r.folder = Some(dir.clone());
                            }
                            cfg.out_dir = Some(dir);
                            train::spawn(*cfg, split.clone(), resume).map_err(|e| e.to_string())
                        });
                    match started {
                        Ok(h) => self.trainer = Some(h),
                        Err(message) => {
                            let fx =
                                app.update(Msg::Train(TrainEvent::Failed { step: 0, message }));
                            self.apply(app, fx);
                        }
                    }
                }
                Effect::StartClassical(cfg) => {
                    let tx = self.msgs_tx.clone();
                    let split = self.split.clone();
                    std::thread::spawn(move || {
                        let it_tx = tx.clone();
                        let out = catalog::fit(&cfg, &split, |it, ll| {
                            let _ = it_tx.send(Msg::EmIteration(it, ll));
                        });
                        let msg = match out {
                            Ok((fitted, report)) => {
                                let [_, c, h, w] = split.train.shape();
                                let grid = fitted.sample_grid(6, [c, h, w], cfg.seed);
                                Msg::ClassicalDone(Box::new(report), grid)
                            }
                            Err(e) => Msg::ClassicalFailed(e.to_string()),
                        };
                        let _ = tx.send(msg);
                    });
                }
                Effect::StartTennis { seed } => {
                    let _ = self.msgs_tx.send(Msg::TennisText(tennis_lines(seed)));
                }
                Effect::Command(c) => {
                    if let Some(h) = &self.trainer {
                        let _ = h.commands.send(c);
                    }
                }
                Effect::SaveGrid => {
                    let Some(run) = &app.run else { continue };
                    let grid = if app.show_interpolation {
                        run.interpolation.as_ref()
                    } else {
                        run.grid.as_ref()
                    };
                    let Some(grid) = grid else {
                        app.status = "no grid to save yet".into();
                        continue;
                    };
                    let name = run.info.name.to_lowercase().replace([' ', ','], "-");
                    let kind = if app.show_interpolation {
                        "interpolation"
                    } else {
                        "samples"
                    };
                    // Into the run's own folder; a classical fit has none.
                    let dir = run.folder.as_ref().unwrap_or(&app.runs_dir);
                    if let Err(e) = std::fs::create_dir_all(dir) {
                        app.status = format!("could not save: {}: {e}", dir.display());
                        continue;
                    }
                    let path = dir.join(format!("{name}-{kind}-step{}.png", run.step));
                    app.status = match grid.upscale(3).save_png(&path) {
                        Ok(()) => format!("saved {}", path.display()),
                        Err(e) => format!("could not save: {e:#}"),
                    };
                }
                Effect::ListRuns => {
                    let listed = train::runs::list_runs(&app.runs_dir)
                        .map_err(|e| format!("{}: {e}", app.runs_dir.display()));
                    let fx = app.update(Msg::Runs(listed));
                    self.apply(app, fx);
                }
                Effect::OpenRun(dir) => {
                    let fx = match self.open_run(app, &dir) {
                        Ok(fx) => fx,
                        Err(m) => app.update(Msg::RunsFailed(m)),
                    };
                    self.apply(app, fx);
                }
                Effect::CompareRuns(dirs) => {
                    let fx = match read_runs(&dirs) {
                        Ok(runs) => app.update(Msg::Compared(runs)),
                        Err(m) => app.update(Msg::RunsFailed(m)),
                    };
                    self.apply(app, fx);
                }
                Effect::ResumeRun(dir) => {
                    let held = train::checkpoint::resolve(&dir).and_then(|ckpt| {
                        train::checkpoint::read_meta(&ckpt).map(|meta| (ckpt, meta))
                    });
                    let fx = match held {
                        Ok((ckpt, meta)) => {
                            self.resume = Some(ckpt.clone());
                            app.update(Msg::ResumeReady {
                                checkpoint: ckpt,
                                kind: meta.model.kind,
                                step: meta.step,
                            })
                        }
                        Err(e) => app.update(Msg::RunsFailed(e.to_string())),
                    };
                    self.apply(app, fx);
                }
                Effect::DeleteRun(dir) => {
                    // An opened run's model is still held by a finished trainer: let it go
                    // before its files do.
                    if app.run.as_ref().and_then(|r| r.folder.as_ref()) == Some(&dir) {
                        self.stop_trainer();
                        app.run = None;
                    }
                    if self.resume.as_deref().map(train::runs::run_of).as_ref() == Some(&dir) {
                        self.resume = None;
                    }
                    app.status = match train::runs::delete_run(&dir) {
                        Ok(()) => format!("deleted {}", dir.display()),
                        Err(e) => format!("could not delete: {e}"),
                    };
                    self.apply(app, vec![Effect::ListRuns]);
                }
                Effect::FetchData(name) => self.fetch(name),
                Effect::Quit => app.quit = true,
            }
        }
    }

    /// Loads the newest good checkpoint of the run in `dir` into a trainer that has nothing
    /// left to train, so the dashboard can sample and interpolate it, and shows its curves.
    /// Writes nothing to the run folder but the PNGs the user saves.
    fn open_run(&mut self, app: &mut App, dir: &std::path::Path) -> Result<Vec<Effect>, String> {
        let ckpt = train::checkpoint::resolve(dir).map_err(|e| e.to_string())?;
        let meta = train::checkpoint::read_meta(&ckpt).map_err(|e| e.to_string())?;
        let summary = train::runs::summarise(dir)
            .ok_or_else(|| format!("{}: holds no run", dir.display()))?;
        let rows = read_rows(dir)?;
        self.stop_trainer();
        let mut cfg = TrainConfig::new(meta.model.clone());
        let steps_per_epoch = (self.split.train.len() / meta.batch_size.max(1)).max(1) as u64;
        cfg.epochs = meta.step.div_ceil(steps_per_epoch).max(1) as usize;
        cfg.max_steps = Some(meta.step);
        cfg.out_dir = None;
        cfg.sample_every = 0;
        cfg.linger = true;
        let fx = app.update(Msg::RunOpened {
            summary: Box::new(summary),
            kind: meta.model.kind,
            grid_codes: app::GridCodes::of(&meta.model),
            step: meta.step,
            rows,
        });
        match train::spawn(cfg, self.split.clone(), Some(ckpt)) {
            Ok(h) => {
                self.trainer = Some(h);
                Ok(fx)
            }
            Err(e) => {
                let message = e.to_string();
                Ok(app.update(Msg::Train(TrainEvent::Failed {
                    step: meta.step,
                    message,
                })))
            }
        }
    }

    /// Makes `source` the data in memory, loading it if it is not already; the header then
    /// names it. Loading full MNIST or CIFAR-10 takes a few seconds, during which the
    /// screen waits (the status says so first).
    fn switch_data(&mut self, app: &mut App, source: DataSource) -> Result<(), String> {
        if source == self.source {
            return Ok(());
        }
        let (split, report) = source.load(self.seed).map_err(|e| e.to_string())?;
        let mut name = source.describe();
        if let Some(r) = report
            && !r.skipped.is_empty()
        {
            name.push_str(&format!(" ({} skipped)", r.skipped.len()));
        }
        app.dataset = name;
        self.split = split;
        self.source = source;
        Ok(())
    }

    /// Downloads dataset `name` into the cache folder on a thread of its own, so the screen
    /// stays live: progress at most ten times a second, then the folder or the error (which
    /// names the files, the mirrors tried and where to put a copy made by hand).
    fn fetch(&self, name: String) {
        let tx = self.msgs_tx.clone();
        let mirrors = self.mirrors.clone();
        std::thread::spawn(move || {
            let result = match crate::data::download::manifest(&name) {
                None => Err(format!("no published dataset is called {name}")),
                Some(manifest) => {
                    let mut last: Option<Instant> = None;
                    let mut progress = |file: &str, bytes: u64, total: Option<u64>| {
                        let done = Some(bytes) == total;
                        if done || last.is_none_or(|t| t.elapsed() >= FRAME) {
                            last = Some(Instant::now());
                            let _ = tx.send(Msg::FetchProgress {
                                file: file.to_string(),
                                bytes,
                                total,
                            });
                        }
                    };
                    let mirrors = (!mirrors.is_empty()).then_some(&mirrors[..]);
                    crate::data::download::fetch(
                        &manifest,
                        &crate::data::download::default_cache_dir(),
                        mirrors,
                        &mut progress,
                    )
                    .map_err(|e| e.to_string())
                }
            };
            let _ = tx.send(Msg::Fetched { name, result });
        });
    }

    fn stop_trainer(&mut self) {
        if let Some(h) = self.trainer.take() {
            let _ = h.commands.send(train::TrainCommand::Stop);
            let _ = h.thread.join();
        }
    }

    /// On quit: let a stopping trainer write its checkpoint, then hand events to the app.
    fn finish(&mut self, app: &mut App) {
        if let Some(h) = self.trainer.take() {
            let _ = h.commands.send(train::TrainCommand::Stop);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                match h.events.recv_timeout(Duration::from_millis(200)) {
                    Ok(ev @ (TrainEvent::Finished { .. } | TrainEvent::Failed { .. })) => {
                        app.update(Msg::Train(ev));
                        break;
                    }
                    Ok(ev) => {
                        app.update(Msg::Train(ev));
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(_) => break,
                }
            }
            let _ = h.thread.join();
        }
    }
}

/// A run folder's metric rows; a run without a metrics file has none.
fn read_rows(dir: &std::path::Path) -> Result<Vec<train::runs::MetricRow>, String> {
    let path = dir.join(train::runs::METRICS_FILE);
    match train::runs::read_metrics(&path) {
        Ok(rows) => Ok(rows),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Each run's name, model and metric rows, for a comparison.
type ComparedRun = (String, Option<ModelKind>, Vec<train::runs::MetricRow>);

fn read_runs(dirs: &[PathBuf]) -> Result<Vec<ComparedRun>, String> {
    dirs.iter()
        .map(|d| {
            let s = train::runs::summarise(d)
                .ok_or_else(|| format!("{}: holds no run", d.display()))?;
            Ok((s.name, s.kind, read_rows(d)?))
        })
        .collect()
}

/// The Play Tennis analysis of report 3.1–3.2, as lines for the dashboard.
pub fn tennis_lines(seed: u64) -> Vec<String> {
    let mut out = Vec::new();
    for alpha in [0.0, 1.0] {
        let r = match crate::classical::tennis::report(alpha, 4, seed) {
            Ok(r) => r,
            Err(e) => return vec![format!("Play Tennis: {e}")],
        };
        out.push(format!(
            "alpha {alpha}: seen day {:.4}, unseen day {:.4}, sum {:.4}",
            r.p_seen_day, r.p_unseen_day, r.total
        ));
        if alpha == 1.0 {
            out.push(format!(
                "the report's (n+1)/(N+1) sums to {:.4}: not a distribution",
                r.report_total
            ));
            out.push("sampled days:".into());
            for d in &r.sampled_days {
                out.push(format!(
                    "  {} {} {} {}",
                    d.outlook, d.temperature, d.humidity, d.wind
                ));
            }
            out.push(format!(
                "naive Bayes: p(No | Sunny, Cool, High, Strong) = {:.3}",
                r.p_no_for_query
            ));
        }
    }
    out
}
