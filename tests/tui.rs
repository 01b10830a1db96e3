//! genmod-tui: every screen drawn on ratatui's TestBackend from scripted messages (no real
//! training) and pinned with insta, the key flows of the app, and an end-to-end run of the
//! real binary in tmux.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use genmod::neural::Metric;
use genmod::render::Grid;
use genmod::train::{TrainCommand, TrainEvent};
use genmod::tui::app::{App, Effect, GridCodes, Msg, Screen};
use genmod::tui::graphics::{Graphics, ImageMode};
use genmod::tui::ui;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::path::PathBuf;

macro_rules! snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!($name, $value);
        })
    };
}

fn app() -> App {
    App::new(
        "embedded MNIST (10k digits)".into(),
        Err("this genmod was built without CUDA".into()),
        PathBuf::from("runs"),
    )
}

/// The one run folder of `kind` under `runs` (each run gets its own, KIND-timestamp).
fn only_run(runs: &std::path::Path, kind: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(runs)
        .unwrap_or_else(|e| panic!("{}: {e}", runs.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{kind}-")))
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {kind} run under {}: {found:?}",
        runs.display()
    );
    found.into_iter().next().unwrap()
}

fn key(c: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn render(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| ui::draw(f, app, &Graphics::none())).unwrap();
    t
}

fn screen_text(t: &Terminal<TestBackend>) -> String {
    t.backend().to_string()
}

#[test]
fn picker_screen() {
    let a = app();
    let t = render(&a, 100, 24);
    let s = screen_text(&t);
    assert!(
        s.contains("> 3.7 Variational autoencoder") && s.contains("KL schedule"),
        "{s}"
    );
    snapshot!("tui_picker", t.backend());
}

#[test]
fn fields_are_validated_as_typed() {
    let mut a = app();
    a.update(key(KeyCode::Tab)); // epochs
    a.update(key(KeyCode::Tab)); // batch size
    a.update(key(KeyCode::Tab)); // learning rate
    for _ in 0..4 {
        a.update(key(KeyCode::Backspace));
    }
    for c in "-0.1".chars() {
        a.update(key(KeyCode::Char(c)));
    }
    assert!(!a.form_valid());
    let s = screen_text(&render(&a, 100, 24));
    assert!(
        s.contains("finite, > 0 and < 10") && s.contains("fix red fields"),
        "{s}"
    );
    // Enter does not start a run while a field is invalid.
    assert!(a.update(key(KeyCode::Enter)).is_empty());
    assert_eq!(a.screen, Screen::Picker);
    // The device field refuses CUDA with the build's reason.
    for _ in 0..4 {
        a.update(key(KeyCode::Backspace));
    }
    for c in "3e-4".chars() {
        a.update(key(KeyCode::Char(c)));
    }
    assert!(a.form_valid());
    for _ in 0..4 {
        a.update(key(KeyCode::Tab));
    }
    for _ in 0..3 {
        a.update(key(KeyCode::Backspace));
    }
    for c in "cuda".chars() {
        a.update(key(KeyCode::Char(c)));
    }
    let s = screen_text(&render(&a, 110, 24));
    assert!(s.contains("built without CUDA"), "{s}");
}

/// The VAE's "samples from" field: it starts at `mixture`, the default, and
/// `standard-normal` starts a run that samples from the prior, whose grid then says its
/// codes go straight to the decoder; `fitted-gaussian`, which only the autoencoder has, is
/// refused with the reason before anything starts.
#[test]
fn the_vae_form_chooses_where_sample_codes_come_from() {
    use genmod::tui::app::FieldKind;
    let mut a = app();
    let field = a
        .fields()
        .iter()
        .position(|f| f.kind == FieldKind::CodeSampling)
        .unwrap();
    assert!(a.visible_fields().contains(&field));
    assert_eq!(a.fields()[field].value, "mixture");
    let retype = |a: &mut App, text: &str| {
        a.update(key(KeyCode::Tab));
        while a.focus != genmod::tui::app::Focus::Field(field) {
            a.update(key(KeyCode::Tab));
        }
        while !a.fields()[field].value.is_empty() {
            a.update(key(KeyCode::Backspace));
        }
        for c in text.chars() {
            a.update(key(KeyCode::Char(c)));
        }
    };
    retype(&mut a, "fitted-gaussian");
    assert!(a.update(key(KeyCode::Enter)).is_empty());
    assert!(
        a.status
            .contains("the VAE samples from its prior or from a mixture"),
        "{}",
        a.status
    );
    assert_eq!(a.screen, Screen::Picker);
    a.update(key(KeyCode::Esc));
    retype(&mut a, "standard-normal");
    let fx = a.update(key(KeyCode::Enter));
    let Some(Effect::StartNeural(cfg, _)) = fx.first() else {
        panic!("{fx:?}")
    };
    assert_eq!(
        cfg.model.code_sampling,
        genmod::neural::CodeSampling::StandardNormal
    );
    let s = screen_text(&render(&a, 140, 40));
    assert!(s.contains(" samples (fixed noise) "), "{s}");
    assert!(!s.contains("code mixture"), "{s}");
}

#[test]
fn enter_starts_the_selected_model_with_the_form_values() {
    let mut a = app();
    a.update(key(KeyCode::Tab));
    // The VAE's default budget has three digits.
    for _ in 0..3 {
        a.update(key(KeyCode::Backspace));
    }
    a.update(key(KeyCode::Char('3')));
    let fx = a.update(key(KeyCode::Enter));
    let Some(Effect::StartNeural(cfg, source)) = fx.first() else {
        panic!("{fx:?}")
    };
    assert_eq!(cfg.epochs, 3);
    assert_eq!(*source, genmod::data::DataSource::EmbeddedMnist);
    assert_eq!(cfg.model.kind, genmod::neural::ModelKind::Vae);
    // The runner makes the run's own folder when it starts the run (the tmux tests check it).
    assert_eq!(cfg.out_dir, None);
    assert_eq!(a.screen, Screen::Dashboard);
    // Keys on the dashboard become trainer commands.
    a.update(Msg::Train(TrainEvent::Started {
        model: genmod::neural::ModelKind::Vae,
        device: genmod::train::DeviceChoice::Cpu,
        parameters: 10,
        steps_per_epoch: 62,
        total_steps: 186,
        start_step: 0,
    }));
    assert!(matches!(
        a.update(key(KeyCode::Char('p')))[..],
        [Effect::Command(TrainCommand::Pause)]
    ));
    assert!(matches!(
        a.update(key(KeyCode::Char('c')))[..],
        [Effect::Command(TrainCommand::SaveNow)]
    ));
    // Quitting while training asks first; 'y' stops (with a checkpoint) and quits.
    assert!(a.update(key(KeyCode::Char('q'))).is_empty());
    assert!(a.confirm_quit);
    snapshot!("tui_confirm_quit", render(&a, 100, 24).backend());
    let fx = a.update(key(KeyCode::Char('y')));
    assert!(
        matches!(fx[..], [Effect::Command(TrainCommand::Stop), Effect::Quit]),
        "{fx:?}"
    );
    // Ctrl-C and SIGTERM take the same path.
    let mut b = app();
    b.update(key(KeyCode::Enter));
    let fx = b.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('c'),
        KeyModifiers::CONTROL,
    )));
    assert!(
        matches!(fx[..], [Effect::Command(TrainCommand::Stop), Effect::Quit]),
        "{fx:?}"
    );
}

/// The first 16 embedded training digits as a 4x4 grid.
fn digit_grid() -> Grid {
    let ds = genmod::data::mnist::embedded().train.take(16);
    Grid::from_u8(ds.pixels(), 16, 1, 28, 28, 4)
}

/// The dashboard of a GAN run that has just started (ASCII images, no real training).
fn gan_dashboard() -> App {
    let mut a = app();
    a.image_mode = ImageMode::Ascii;
    a.select(9); // 4.1 GAN
    a.update(key(KeyCode::Enter));
    a.update(Msg::Train(TrainEvent::Started {
        model: genmod::neural::ModelKind::Gan,
        device: genmod::train::DeviceChoice::Cpu,
        parameters: 1_489_936,
        steps_per_epoch: 125,
        total_steps: 2500,
        start_step: 0,
    }));
    a
}

#[test]
fn dashboard_mid_run_from_scripted_events() {
    let mut a = gan_dashboard();
    for s in 1..=300u64 {
        let t = s as f64 / 300.0;
        a.update(Msg::Train(TrainEvent::Step {
            step: s,
            epoch: (s / 125) as usize,
            metrics: vec![
                (Metric::DLoss, 1.38 - 0.5 * t),
                (Metric::GLoss, 0.7 + 0.9 * t),
                (Metric::DReal, 0.5 + 0.2 * t),
                (Metric::DFake, 0.5 - 0.2 * t),
                (Metric::GGradNorm, 1.0 + t),
            ],
            images_per_sec: 2000.0,
        }));
    }
    a.update(Msg::Train(TrainEvent::Epoch {
        epoch: 1,
        step: 250,
        train: vec![],
        test: vec![(Metric::DReal, 0.61), (Metric::DFake, 0.35)],
    }));
    a.update(Msg::Train(TrainEvent::Checkpoint {
        step: 250,
        path: PathBuf::from("runs/gan/ckpt-0000000250"),
    }));
    a.update(Msg::Train(TrainEvent::Samples {
        step: 300,
        grid: digit_grid(),
    }));
    let t = render(&a, 120, 36);
    let s = screen_text(&t);
    assert!(
        s.contains("step 300/2500") && s.contains("2000 img/s"),
        "{s}"
    );
    assert!(
        s.contains("d_real 0.700") && s.contains("d_fake 0.300"),
        "legend shows the last values:\n{s}"
    );
    assert!(
        s.contains("epoch 2 test: d_real 0.610, d_fake 0.350"),
        "{s}"
    );
    snapshot!("tui_dashboard_gan", t.backend());
}

/// A noisy GAN run: the curves are exponential moving averages drawn over the faint raw
/// values, the legend gives both latest values, `[`/`]` step the smoothing and `l` puts the
/// losses (not the probabilities) on a log scale.
#[test]
fn curves_are_smoothed_over_faint_raw_values_and_l_puts_losses_on_a_log_scale() {
    use genmod::tui::app::smoothed;
    use genmod::tui::theme::THEME;
    let mut a = gan_dashboard();
    let mut d_loss = Vec::new();
    for s in 1..=200u64 {
        let sign = if s % 2 == 0 { 1.0 } else { -1.0 };
        let d = 1.0 + 0.5 * sign;
        d_loss.push((s as f64, d));
        a.update(Msg::Train(TrainEvent::Step {
            step: s,
            epoch: 0,
            metrics: vec![
                (Metric::DLoss, d),
                (Metric::GLoss, 2.0 - sign),
                (Metric::DReal, 0.6 + 0.1 * sign),
                (Metric::DFake, 0.4 - 0.1 * sign),
                (Metric::GGradNorm, 1.0),
            ],
            images_per_sec: 2000.0,
        }));
    }
    assert_eq!(a.chart_view.smoothing, 0.9);
    let t = render(&a, 120, 36);
    let text = screen_text(&t);
    let avg = smoothed(&d_loss, 0.9).last().unwrap().1;
    assert!((avg - 1.0).abs() < 0.1, "{avg}");
    assert!(
        text.contains("losses · smoothing 0.90")
            && text.contains(&format!("d_loss 1.500 (avg {avg:.3})")),
        "{text}"
    );
    // Raw values in the faint colour, the averages in the series' colours.
    let cells = t.backend().buffer().content();
    let braille = |c: &&ratatui::buffer::Cell| {
        c.symbol()
            .chars()
            .any(|ch| ('\u{2801}'..='\u{28ff}').contains(&ch))
    };
    let faint = cells
        .iter()
        .filter(braille)
        .filter(|c| c.fg == THEME.dim)
        .count();
    let bright = cells
        .iter()
        .filter(braille)
        .filter(|c| c.fg == THEME.series[0])
        .count();
    // (Without colour, under NO_COLOR, the raw values are not drawn: they would look alike.)
    if THEME.raw_behind_average {
        assert!(faint > 20 && bright > 20, "faint {faint}, bright {bright}");
    }
    snapshot!("tui_dashboard_smoothed", t.backend());

    a.update(key(KeyCode::Char(']')));
    a.update(key(KeyCode::Char(']')));
    assert_eq!(a.chart_view.smoothing, 0.98);
    for _ in 0..10 {
        a.update(key(KeyCode::Char('[')));
    }
    assert_eq!(a.chart_view.smoothing, 0.0);
    let text = screen_text(&render(&a, 120, 36));
    assert!(
        !text.contains("losses · smoothing")
            && text.contains("d_loss 1.500")
            && !text.contains("avg"),
        "{text}"
    );

    a.update(key(KeyCode::Char('l')));
    let text = screen_text(&render(&a, 120, 36));
    assert!(text.contains("losses · log scale"), "{text}");
    assert!(
        !text.contains("D(G(z)) · log scale"),
        "probabilities stay linear:\n{text}"
    );
}

#[test]
fn help_overlay_lists_every_key_of_its_screen() {
    let mut a = app();
    for screen in [
        Screen::Picker,
        Screen::Dashboard,
        Screen::Runs,
        Screen::Compare,
    ] {
        a.screen = screen;
        a.update(key(KeyCode::Char('?')));
        let t = render(&a, 100, 26);
        let s = screen_text(&t);
        let keys = genmod::tui::app::help(screen);
        for (k, _) in &keys {
            assert!(s.contains(k), "{screen:?} help lacks {k}:\n{s}");
        }
        assert!(
            keys.iter().any(|(k, _)| *k == "q"),
            "{screen:?}: quitting is everywhere"
        );
        if screen == Screen::Picker {
            snapshot!("tui_help", t.backend());
        }
        a.update(key(KeyCode::Char('x')));
        assert!(!a.help, "any key closes the help");
    }
}

#[test]
fn too_small_terminal_gets_a_message_not_a_panic() {
    let a = app();
    for (w, h) in [(40, 10), (1, 1), (63, 19), (200, 5)] {
        let t = render(&a, w, h);
        if w >= 30 && h >= 3 {
            assert!(screen_text(&t).contains("Terminal too small"), "{w}x{h}");
        }
    }
    snapshot!("tui_too_small", render(&a, 40, 10).backend());
}

#[test]
fn grid_widget_shows_fewer_larger_tiles_in_a_small_panel() {
    let g = digit_grid();
    let w = ui::GridWidget {
        grid: &g,
        mode: ImageMode::Ascii,
    };
    let small = w.visible(ratatui::layout::Rect::new(0, 0, 30, 15));
    assert_eq!(small.tiles.unwrap().cols, 2);
    let big = w.visible(ratatui::layout::Rect::new(0, 0, 120, 60));
    assert_eq!(big.tiles.unwrap().cols, 4);
}

// ---------------------------------------------------------------- end to end in tmux

fn tmux(args: &[&str]) -> String {
    let out = std::process::Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux must be installed (.ci/run installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for(session: &str, secs: u64, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let pane = tmux(&["capture-pane", "-p", "-t", session]);
        if pred(&pane) {
            return pane;
        }
        if std::time::Instant::now() > deadline {
            let _ = tmux(&["kill-session", "-t", session]);
            panic!("timed out waiting for {what}; the pane shows:\n{pane}");
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

#[test]
fn image_mode_key_cycles_through_pixel_modes_only_where_the_terminal_has_them() {
    let mut a = app();
    a.update(key(KeyCode::Enter)); // the dashboard, where `m` switches the mode
    let mut seen = vec![a.image_mode];
    for _ in 0..3 {
        a.update(key(KeyCode::Char('m')));
        seen.push(a.image_mode);
    }
    assert_eq!(
        seen,
        [
            ImageMode::HalfBlocks,
            ImageMode::Ascii,
            ImageMode::HalfBlocks,
            ImageMode::Ascii
        ],
        "a terminal without graphics never reaches sixel or kitty"
    );
    a.set_pixel_modes(vec![ImageMode::Sixel]);
    a.update(key(KeyCode::Char('m')));
    assert_eq!(a.image_mode, ImageMode::Sixel);
    assert_eq!(a.status, "image mode: sixel");
    a.update(key(KeyCode::Char('m')));
    assert_eq!(a.image_mode, ImageMode::HalfBlocks);
}

/// Starts `command` (run in `dir`) in a detached tmux session of `width` x `height`; when it
/// exits, the pane shows `EXIT=<status>`, whether the terminal is back in cooked mode
/// (`icanon echo`) and `DONE`. Waits for the model picker.
fn start_in_tmux(session: &str, dir: &std::path::Path, command: &str, width: u16, height: u16) {
    start_in_tmux_showing(session, dir, command, width, height, "pick a model");
}

/// [`start_in_tmux`], waiting for `ready` on the first screen instead of the picker.
fn start_in_tmux_showing(
    session: &str,
    dir: &std::path::Path,
    command: &str,
    width: u16,
    height: u16,
    ready: &str,
) {
    let script = format!(
        "cd {} && {command}; echo EXIT=$?; stty -a | tr ' ' '\\n' | grep -x -e icanon -e echo | tr '\\n' ' '; echo; echo DONE; sleep 60",
        dir.display()
    );
    let (w, h) = (width.to_string(), height.to_string());
    // When the previous test closed the server's last session, the server may still be
    // shutting down and take this session with it: start it again until it exists.
    for _ in 0..5 {
        tmux(&[
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            &w,
            "-y",
            &h,
            &script,
        ]);
        let exists = std::process::Command::new("tmux")
            .args(["has-session", "-t", session])
            .status()
            .is_ok_and(|s| s.success());
        if exists {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    wait_for(session, 30, ready, |p| p.contains(ready));
}

/// From the picker's model list, sets the form's first field, Epochs (two digits by default),
/// to 1.
fn set_one_epoch(session: &str) {
    // Enough backspaces to empty the longest default budget (three digits).
    tmux(&[
        "send-keys",
        "-t",
        session,
        "Tab",
        "BSpace",
        "BSpace",
        "BSpace",
        "BSpace",
        "1",
    ]);
}

/// Waits for the program started by [`start_in_tmux`] to exit after `how`, closes the
/// session, and checks exit status 0, cooked mode and the main screen back.
fn wait_for_clean_exit(session: &str, how: &str) {
    let pane = wait_for(session, 30, "the exit", |p| p.contains("DONE"));
    let _ = tmux(&["kill-session", "-t", session]);
    assert!(pane.contains("EXIT=0"), "{how}:\n{pane}");
    assert!(
        pane.contains("icanon echo"),
        "{how}: the terminal was not restored to cooked mode:\n{pane}"
    );
    assert!(
        !pane.contains("pick a model"),
        "{how}: the alternate screen was not left:\n{pane}"
    );
}

/// `NO_COLOR` (no-color.org) leaves every cell in the terminal's own colours; without it,
/// and with `--theme light`, the picker is coloured.
#[test]
fn no_color_draws_without_colour_codes_and_themes_colour_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_genmod-tui");
    let colour_codes = |pane: &str| {
        // SGR foreground/background colours: 30–37, 40–47, 90–97, 100–107, 38;… and 48;….
        pane.split("\x1b[")
            .skip(1)
            .filter_map(|seq| seq.split('m').next())
            .flat_map(|params| params.split(';').map(str::to_string).collect::<Vec<_>>())
            .filter(|p| {
                p.parse::<u32>()
                    .is_ok_and(|n| matches!(n, 30..=38 | 40..=48 | 90..=97 | 100..=107))
            })
            .count()
    };
    for (name, command, coloured) in [
        ("nocolor", format!("NO_COLOR=1 {bin}"), false),
        ("dark", format!("env -u NO_COLOR {bin}"), true),
        (
            "light",
            format!("env -u NO_COLOR {bin} --theme light"),
            true,
        ),
    ] {
        let session = format!("genmod-theme-{name}-{}", std::process::id());
        start_in_tmux(&session, dir.path(), &command, 100, 30);
        let pane = tmux(&["capture-pane", "-e", "-p", "-t", &session]);
        let _ = tmux(&["kill-session", "-t", &session]);
        let n = colour_codes(&pane);
        assert_eq!(n > 0, coloured, "{name}: {n} colour codes in:\n{pane}");
    }
}

#[test]
fn end_to_end_in_tmux_train_vae_save_png_quit() {
    let dir = tempfile::tempdir().unwrap();
    let session = format!("genmod-e2e-{}", std::process::id());
    let bin = env!("CARGO_BIN_EXE_genmod-tui");
    let runs = dir.path().join("runs");
    start_in_tmux(
        &session,
        dir.path(),
        &format!("{bin} --runs-dir {}", runs.display()),
        120,
        36,
    );
    // The VAE is preselected; one epoch of training.
    set_one_epoch(&session);
    tmux(&["send-keys", "-t", &session, "Enter"]);
    wait_for(&session, 120, "a finished epoch", |p| {
        p.contains("epoch 1 test:")
    });
    let pane = wait_for(&session, 120, "the end of training", |p| {
        p.contains("finished at step 62")
    });
    assert!(pane.contains("reconstruction and KL"), "{pane}");
    assert!(
        !pane.contains("waiting for the first grid"),
        "the grid never arrived:\n{pane}"
    );
    tmux(&["send-keys", "-t", &session, "g"]);
    let pane = wait_for(&session, 20, "the PNG to be saved", |p| {
        p.contains("saved ")
    });
    let png = pane
        .split_whitespace()
        .skip_while(|w| *w != "saved")
        .nth(1)
        .map(|p| dir.path().join(p))
        .unwrap();
    let img = image::open(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert!(img.width() > 100 && img.height() > 100);
    // The run is finished and checkpointed: q quits without asking.
    tmux(&["send-keys", "-t", &session, "q"]);
    wait_for_clean_exit(&session, "q");
    assert!(
        only_run(&runs, "vae")
            .join("ckpt-0000000062")
            .join("meta.json")
            .is_file()
    );
}

#[test]
fn terminal_is_restored_after_a_panic_and_survives_a_tiny_resize() {
    let dir = tempfile::tempdir().unwrap();
    let session = format!("genmod-panic-{}", std::process::id());
    let bin = env!("CARGO_BIN_EXE_genmod-tui");
    let command = format!("GENMOD_TUI_TEST_PANIC_ON_KEY=Z {bin} 2>panic.txt");
    start_in_tmux(&session, dir.path(), &command, 100, 30);
    // A tiny window: the too-small screen, no panic; then back to a usable size.
    tmux(&["resize-window", "-t", &session, "-x", "20", "-y", "6"]);
    wait_for(&session, 10, "the too-small screen", |p| {
        p.contains("Terminal too small")
    });
    tmux(&["resize-window", "-t", &session, "-x", "100", "-y", "30"]);
    wait_for(&session, 10, "the picker again", |p| {
        p.contains("pick a model")
    });
    // The injected panic: the terminal comes back in cooked mode and the message is kept.
    tmux(&["send-keys", "-t", &session, "Z"]);
    let pane = wait_for(&session, 30, "the exit after the panic", |p| {
        p.contains("DONE")
    });
    let _ = tmux(&["kill-session", "-t", &session]);
    assert!(pane.contains("EXIT=101"), "a panic exits with 101:\n{pane}");
    assert!(
        pane.contains("icanon echo"),
        "terminal not restored after the panic:\n{pane}"
    );
    let msg = std::fs::read_to_string(dir.path().join("panic.txt")).unwrap();
    assert!(msg.contains("test-only panic injected"), "{msg}");
}

/// The checkpoint folders a run has written, as step numbers.
fn checkpoint_steps(run: &std::path::Path) -> Vec<u64> {
    let mut steps: Vec<u64> = std::fs::read_dir(run)
        .map(|d| {
            d.filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_prefix("ckpt-")?.parse().ok()
            })
            .collect()
        })
        .unwrap_or_default();
    steps.sort();
    steps
}

#[test]
fn ctrl_c_sigterm_and_sighup_mid_epoch_save_a_checkpoint_and_restore_the_terminal() {
    let bin = env!("CARGO_BIN_EXE_genmod-tui");
    // The VAE checkpoints at the end of each 62-step epoch: a checkpoint at any other step
    // can only be the one written on the way out.
    for how in ["ctrl-c", "sigterm", "sighup"] {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let session = format!("genmod-sig-{how}-{}", std::process::id());
        start_in_tmux(
            &session,
            dir.path(),
            &format!("{bin} --runs-dir {}", runs.display()),
            120,
            36,
        );
        tmux(&["send-keys", "-t", &session, "Enter"]);
        wait_for(&session, 60, "training under way", |p| {
            p.split_whitespace()
                .skip_while(|w| *w != "step")
                .nth(1)
                .and_then(|s| s.split('/').next()?.parse::<u64>().ok())
                .is_some_and(|s| (3..50).contains(&s))
        });
        match how {
            "ctrl-c" => {
                tmux(&["send-keys", "-t", &session, "C-c"]);
            }
            "sigterm" => {
                let pid = tmux(&["list-panes", "-t", &session, "-F", "#{pane_pid}"]);
                // The pane's shell runs genmod-tui as its child.
                let child = std::process::Command::new("pgrep")
                    .args(["-P", pid.trim()])
                    .output()
                    .unwrap();
                let child = String::from_utf8_lossy(&child.stdout).trim().to_string();
                assert!(!child.is_empty(), "no genmod-tui under pane {pid}");
                std::process::Command::new("kill")
                    .args(["-TERM", &child])
                    .status()
                    .unwrap();
            }
            _ => {
                // The SSH drop: the terminal goes away and the process gets SIGHUP.
                tmux(&["kill-session", "-t", &session]);
            }
        }
        let run = only_run(&runs, "vae");
        if how == "sighup" {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while checkpoint_steps(&run).is_empty() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        } else {
            wait_for_clean_exit(&session, how);
        }
        let steps = checkpoint_steps(&run);
        let newest = steps.last().copied().unwrap_or(0);
        assert!(
            newest > 0 && newest % 62 != 0,
            "{how}: expected a mid-epoch checkpoint written on the way out, found steps {steps:?}"
        );
        let ckpt = run.join(format!("ckpt-{newest:010}"));
        assert!(ckpt.join("model.safetensors").is_file(), "{how}: {ckpt:?}");
        println!("RELIABILITY: tui_signal {how} checkpoint_step={newest}");
    }
}

#[test]
fn the_cgan_form_sets_the_average_the_dropout_and_the_conditioning() {
    let mut a = app();
    a.select(11); // 4.3 conditional GAN
    let typed = |a: &mut App, text: &str| {
        for _ in 0..12 {
            a.update(key(KeyCode::Backspace));
        }
        for c in text.chars() {
            a.update(key(KeyCode::Char(c)));
        }
    };
    // epochs, batch size, learning rate, latent size, k, EMA of G.
    for _ in 0..6 {
        a.update(key(KeyCode::Tab));
    }
    typed(&mut a, "1.5");
    assert!(!a.form_valid(), "an EMA decay of 1.5 is refused");
    let s = screen_text(&render(&a, 110, 24));
    assert!(s.contains("in [0, 1); 0 = off"), "{s}");
    typed(&mut a, "0.99");
    a.update(key(KeyCode::Tab)); // D dropout
    typed(&mut a, "1");
    assert!(!a.form_valid(), "a dropout probability of 1 is refused");
    typed(&mut a, "0.25");
    a.update(key(KeyCode::Tab)); // D conditioning
    typed(&mut a, "concat");
    assert!(a.form_valid());
    let cfg = started_config(&a.update(key(KeyCode::Enter)));
    assert_eq!(cfg.model.ema_decay, 0.99);
    assert_eq!(cfg.model.d_dropout, 0.25);
    assert_eq!(cfg.model.conditioning, genmod::neural::Conditioning::Concat);
}

/// The configuration of the neural run that `fx` (Enter's effects) starts.
fn started_config(fx: &[Effect]) -> genmod::train::TrainConfig {
    fx.iter()
        .find_map(|e| match e {
            Effect::StartNeural(c, _) => Some((**c).clone()),
            _ => None,
        })
        .expect("Enter starts the run")
}

#[test]
fn the_unlabelled_gans_forms_set_their_clusters_or_turn_them_off() {
    let mut a = app();
    a.select(10); // 4.2 DCGAN
    let s = screen_text(&render(&a, 110, 28));
    assert!(s.contains("clusters  40"), "{s}");
    // epochs, batch size, learning rate, latent size, k, EMA of G, D dropout, clusters.
    for _ in 0..8 {
        a.update(key(KeyCode::Tab));
    }
    let typed = |a: &mut App, text: &str| {
        for _ in 0..12 {
            a.update(key(KeyCode::Backspace));
        }
        for c in text.chars() {
            a.update(key(KeyCode::Char(c)));
        }
    };
    typed(&mut a, "1");
    assert!(!a.form_valid(), "one cluster is refused");
    let s = screen_text(&render(&a, 110, 28));
    assert!(s.contains("0 (off) or at least 2"), "{s}");
    typed(&mut a, "0");
    assert!(a.form_valid());
    let cfg = started_config(&a.update(key(KeyCode::Enter)));
    assert_eq!(cfg.model.clusters, 0, "the report's unconditional DCGAN");
    // The MLP GAN clusters too, read by a projection D; the labelled GANs do not.
    let mut b = app();
    b.select(9); // 4.1 GAN
    let s = screen_text(&render(&b, 110, 28));
    assert!(
        s.contains("clusters  40") && s.contains("D conditioning  projection"),
        "{s}"
    );
    b.select(12); // 4.3 conditional DCGAN
    let s = screen_text(&render(&b, 110, 28));
    assert!(!s.contains("clusters"), "{s}");
}

/// Two made-up runs at fixed times, as the runs folder would list them.
fn two_runs() -> Vec<genmod::train::runs::RunSummary> {
    use genmod::neural::ModelKind;
    let at = |s: u64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s);
    let run = |name: &str, kind, steps, epochs, metrics: &[(&str, f64)], written| {
        let dir = PathBuf::from("runs").join(name);
        genmod::train::runs::RunSummary {
            name: name.into(),
            kind: Some(kind),
            dataset: Some("mnist (train)".into()),
            steps,
            epochs,
            last_metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            newest_checkpoint: Some((dir.join(format!("ckpt-{steps:010}")), at(written))),
            diverged: 0,
            modified: at(written),
            dir,
        }
    };
    vec![
        run(
            "gan-20261203-101500",
            ModelKind::Gan,
            7500,
            60,
            &[("d_loss", 1.21), ("g_loss", 0.93), ("d_real", 0.58)],
            1_796_300_000,
        ),
        run(
            "vae-20261203-093000",
            ModelKind::Vae,
            2480,
            40,
            &[("loss", 101.2), ("recon", 76.5), ("kl", 24.7)],
            1_796_290_000,
        ),
    ]
}

#[test]
fn runs_browser_lists_marks_compares_resumes_and_asks_before_deleting() {
    let mut a = app();
    assert_eq!(
        a.update(key(KeyCode::Char('r'))).len(),
        1,
        "r lists the runs"
    );
    assert_eq!(a.screen, Screen::Runs);
    a.update(Msg::Runs(Ok(two_runs())));
    let (gan, vae) = (two_runs()[0].dir.clone(), two_runs()[1].dir.clone());
    let t = render(&a, 120, 24);
    let text = screen_text(&t);
    for want in [
        "runs in runs · 2 runs",
        "gan-20261203-101500",
        "d_loss 1.210, g_loss 0.930, d_real 0.580",
        "2026-12-03 12:13",
        "gan on mnist (train), 7500 steps in 60 epochs",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
    snapshot!("tui_runs", t.backend());

    // One mark is not a comparison; two are.
    a.update(key(KeyCode::Char(' ')));
    assert!(a.update(key(KeyCode::Char('c'))).is_empty());
    assert!(a.status.contains("mark two or more"), "{}", a.status);
    a.update(key(KeyCode::Down));
    a.update(key(KeyCode::Char(' ')));
    assert!(matches!(
        &a.update(key(KeyCode::Char('c')))[..],
        [Effect::CompareRuns(dirs)] if *dirs == [gan.clone(), vae.clone()]
    ));

    // Delete asks first; only y deletes.
    a.update(key(KeyCode::Char('d')));
    let text = screen_text(&render(&a, 120, 24));
    assert!(text.contains("Delete vae-20261203-093000?"), "{text}");
    assert!(a.update(key(KeyCode::Char('n'))).is_empty());
    assert_eq!(a.status, "not deleted");
    a.update(key(KeyCode::Char('d')));
    assert!(matches!(
        &a.update(key(KeyCode::Char('y')))[..],
        [Effect::DeleteRun(d)] if *d == vae
    ));

    assert!(matches!(&a.update(key(KeyCode::Enter))[..], [Effect::OpenRun(d)] if *d == vae));
    assert!(matches!(&a.update(key(KeyCode::Char('r')))[..], [Effect::ResumeRun(d)] if *d == vae));
    a.update(Msg::ResumeReady {
        checkpoint: vae.join("ckpt-0000002480"),
        kind: genmod::neural::ModelKind::Vae,
        step: 2480,
    });
    assert_eq!(a.screen, Screen::Picker);
    assert!(
        a.status
            .starts_with("Enter resumes runs/vae-20261203-093000/ckpt-0000002480 at step 2480")
    );
    assert_eq!(a.info().name, "Variational autoencoder");
}

/// Metric rows of a made-up GAN run whose losses settle at `d` and `g`.
fn gan_rows(steps: u64, d: f64, g: f64) -> Vec<genmod::train::runs::MetricRow> {
    let row = |step, metric: &str, value| genmod::train::runs::MetricRow {
        step,
        epoch: 0,
        metric: metric.into(),
        value,
    };
    (1..=steps)
        .flat_map(|s| {
            let t = s as f64 / steps as f64;
            [
                row(s, "d_loss", 1.4 + (d - 1.4) * t),
                row(s, "g_loss", 0.7 + (g - 0.7) * t),
                row(s, "d_real", 0.5 + 0.2 * t),
                row(s, "d_fake", 0.5 - 0.2 * t),
            ]
        })
        .collect()
}

#[test]
fn comparison_draws_every_run_on_shared_axes_and_needs_a_shared_metric() {
    use genmod::neural::ModelKind;
    let mut a = app();
    a.update(key(KeyCode::Char('r')));
    a.update(Msg::Compared(vec![
        (
            "gan-lr2e-4".into(),
            Some(ModelKind::Gan),
            gan_rows(200, 1.2, 0.9),
        ),
        (
            "gan-lr1e-3".into(),
            Some(ModelKind::Gan),
            gan_rows(120, 0.6, 2.4),
        ),
    ]));
    assert_eq!(a.screen, Screen::Compare);
    let t = render(&a, 120, 30);
    let text = screen_text(&t);
    for want in [
        "losses · smoothing 0.90",
        "1 ━ gan-lr2e-4 d_loss 1.200",
        "4 ━ gan-lr1e-3 g_loss 2.400",
        "D(x) and D(G(z))",
        "gan-lr1e-3 d_fake 0.300",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
    // The x axis spans the longer run.
    assert!(text.contains("200"), "{text}");
    snapshot!("tui_compare", t.backend());
    a.update(key(KeyCode::Char('b')));
    assert_eq!(a.screen, Screen::Runs);

    // A VAE and a GAN log no metric in common: nothing to draw, and the user is told.
    let vae_rows = vec![genmod::train::runs::MetricRow {
        step: 1,
        epoch: 0,
        metric: "recon".into(),
        value: 200.0,
    }];
    a.update(Msg::Compared(vec![
        ("gan".into(), Some(ModelKind::Gan), gan_rows(10, 1.0, 1.0)),
        ("vae".into(), Some(ModelKind::Vae), vae_rows),
    ]));
    assert_eq!(a.screen, Screen::Runs);
    assert_eq!(a.status, "these runs logged no metric in common");
}

#[test]
fn an_opened_run_shows_its_logged_curves_and_asks_its_model_for_samples() {
    use genmod::neural::ModelKind;
    let mut a = app();
    let summary = two_runs().remove(0);
    let fx = a.update(Msg::RunOpened {
        summary: Box::new(summary),
        kind: ModelKind::Gan,
        grid_codes: GridCodes::Fixed,
        step: 300,
        rows: gan_rows(300, 1.1, 1.3),
    });
    assert!(matches!(
        &fx[..],
        [Effect::Command(TrainCommand::SampleNow)]
    ));
    assert_eq!(a.screen, Screen::Dashboard);
    let run = a.run.as_ref().unwrap();
    assert_eq!(run.series(Metric::DLoss).unwrap().points.len(), 300);
    assert_eq!(
        run.folder.as_deref(),
        Some(std::path::Path::new("runs/gan-20261203-101500"))
    );
    let text = screen_text(&render(&a, 120, 36));
    assert!(text.contains("d_loss 1.100"), "{text}");
    assert!(
        text.contains("opened runs/gan-20261203-101500 at step 300"),
        "{text}"
    );
    // Ended, so n (sample) and i (interpolate) go to the model the trainer holds.
    assert!(matches!(
        &a.update(key(KeyCode::Char('n')))[..],
        [Effect::Command(TrainCommand::SampleNow)]
    ));
    assert!(matches!(
        &a.update(key(KeyCode::Char('i')))[..],
        [Effect::Command(TrainCommand::Interpolate { .. })]
    ));
    assert!(text.contains(" samples (fixed noise) "), "{text}");
}

#[test]
fn an_opened_run_whose_codes_go_through_a_mixture_or_pick_clusters_says_so() {
    use genmod::neural::{CodeSampling, ModelKind, NeuralConfig};
    // What the runner reads from the checkpoint's configuration.
    let mut vae = NeuralConfig::new(ModelKind::Vae);
    assert_eq!(GridCodes::of(&vae), GridCodes::ThroughMixture);
    vae.code_sampling = CodeSampling::StandardNormal;
    assert_eq!(GridCodes::of(&vae), GridCodes::Fixed);
    vae.code_sampling = CodeSampling::Mixture;
    // The autoencoder's grid shows reconstructions, whatever its codes' source.
    let autoencoder = NeuralConfig::new(ModelKind::Autoencoder);
    assert_eq!(autoencoder.code_sampling, CodeSampling::Mixture);
    assert_eq!(GridCodes::of(&autoencoder), GridCodes::Fixed);
    // The unlabelled GANs' codes pick a cluster, unless clusters are off.
    let mut dcgan = NeuralConfig::new(ModelKind::Dcgan);
    assert_eq!(GridCodes::of(&dcgan), GridCodes::Clusters(40));
    dcgan.clusters = 0;
    assert_eq!(GridCodes::of(&dcgan), GridCodes::Fixed);
    assert_eq!(
        GridCodes::of(&NeuralConfig::new(ModelKind::Cgan)),
        GridCodes::Fixed
    );

    let mut a = app();
    let mut summary = two_runs().remove(0);
    summary.dir = "runs/vae-20261204-040000".into();
    a.update(Msg::RunOpened {
        summary: Box::new(summary),
        kind: ModelKind::Vae,
        grid_codes: GridCodes::of(&vae),
        step: 300,
        rows: Vec::new(),
    });
    let text = screen_text(&render(&a, 160, 40));
    assert!(
        text.contains(" samples (fixed noise, code mixture) "),
        "{text}"
    );

    let mut a = app();
    a.update(Msg::RunOpened {
        summary: Box::new(two_runs().remove(0)),
        kind: ModelKind::Gan,
        grid_codes: GridCodes::of(&NeuralConfig::new(ModelKind::Gan)),
        step: 300,
        rows: gan_rows(300, 1.1, 1.3),
    });
    let text = screen_text(&render(&a, 160, 40));
    assert!(
        text.contains("samples (fixed noise; 40 clusters)"),
        "{text}"
    );
}

#[test]
fn a_missing_runs_folder_is_refused_before_the_screen_is_taken() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_genmod-tui"))
        .arg("/nonexistent/genmod-runs")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/genmod-runs: no such folder of runs"),
        "{err}"
    );
}

/// The runs browser on real runs: two short VAE runs trained by the CLI, compared, one
/// opened (its model samples), then resumed from the picker to the end of its first epoch,
/// continuing its own metrics file.
#[test]
fn runs_browser_in_tmux_compares_two_runs_opens_one_and_resumes_it() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let cli = env!("CARGO_BIN_EXE_genmod");
    for (name, lr) in [("a", "1e-3"), ("b", "3e-4")] {
        let out = std::process::Command::new(cli)
            .args(["train", "vae", "--max-steps", "20", "--sample-every", "0"])
            .args(["--checkpoint-every", "10", "--lr", lr, "--out"])
            .arg(runs.join(name))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let session = format!("genmod-runs-{}", std::process::id());
    let bin = env!("CARGO_BIN_EXE_genmod-tui");
    start_in_tmux_showing(
        &session,
        dir.path(),
        &format!("{bin} runs --image-mode ascii"),
        120,
        36,
        "2 runs",
    );
    tmux(&["send-keys", "-t", &session, "Space", "Down", "Space", "c"]);
    wait_for(&session, 20, "both runs in the comparison", |p| {
        p.contains("a recon") && p.contains("b recon") && p.contains("a kl")
    });
    tmux(&["send-keys", "-t", &session, "b"]);
    wait_for(&session, 20, "the runs again", |p| p.contains("2 runs"));
    // The selection stayed on the second run listed.
    let pane = tmux(&["capture-pane", "-p", "-t", &session]);
    let second = pane
        .lines()
        .find(|l| l.contains("> "))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or_else(|| panic!("no selected row:\n{pane}"))
        .to_string();
    tmux(&["send-keys", "-t", &session, "Enter"]);
    wait_for(&session, 30, "the opened run's samples", |p| {
        p.contains("at step 20")
            && p.contains("samples")
            && !p.contains("waiting for the first grid")
    });
    tmux(&["send-keys", "-t", &session, "r"]);
    wait_for(&session, 20, "the runs", |p| p.contains("2 runs"));
    tmux(&["send-keys", "-t", &session, "r"]);
    wait_for(&session, 20, "the resume prompt", |p| {
        p.contains("Enter resumes")
    });
    // One epoch (62 steps of 128) in all: the first field is Epochs.
    set_one_epoch(&session);
    tmux(&["send-keys", "-t", &session, "Enter"]);
    wait_for(&session, 120, "the end of the resumed run", |p| {
        p.contains("finished at step 62")
    });
    tmux(&["send-keys", "-t", &session, "q"]);
    wait_for_clean_exit(&session, "q");
    let resumed = runs.join(&second);
    let rows = genmod::train::runs::read_metrics(&resumed.join("metrics.csv")).unwrap();
    let steps: std::collections::BTreeSet<u64> = rows.iter().map(|r| r.step).collect();
    assert_eq!(steps, (1..=62).collect(), "one curve, no gaps or repeats");
    assert!(resumed.join("ckpt-0000000062/meta.json").is_file());
}

/// The picker's dataset fields: validated as typed, kept when another model is picked, and a
/// dataset without its folder refused with what to put there.
#[test]
fn the_dataset_fields_choose_the_data_a_run_trains_on() {
    use genmod::tui::app::FieldKind;
    let mut a = app();
    let field = |a: &App, kind| a.fields().iter().position(|f| f.kind == kind).unwrap();
    let (ds, dir) = (field(&a, FieldKind::Dataset), field(&a, FieldKind::DataDir));
    assert!(a.visible_fields().contains(&ds) && a.visible_fields().contains(&dir));
    assert_eq!(a.fields()[ds].value, "mnist-10k");
    // Tab to the dataset field (the last fields) and type a name that is no dataset.
    a.update(key(KeyCode::Tab));
    while a.focus != genmod::tui::app::Focus::Field(ds) {
        a.update(key(KeyCode::Tab));
    }
    for _ in 0..9 {
        a.update(key(KeyCode::Backspace));
    }
    for c in "mnist".chars() {
        a.update(key(KeyCode::Char(c)));
    }
    assert!(a.fields()[ds].error.is_none());
    let text = screen_text(&render(&a, 120, 36));
    assert!(
        text.contains("dataset") && text.contains("data folder"),
        "{text}"
    );
    // No folder: Enter explains instead of starting.
    assert!(a.update(key(KeyCode::Enter)).is_empty());
    assert!(a.status.contains("needs its files' folder"), "{}", a.status);
    assert_eq!(a.screen, Screen::Picker);
    // A folder that does not exist is marked as typed.
    a.update(key(KeyCode::Tab));
    for c in "/nonexistent".chars() {
        a.update(key(KeyCode::Char(c)));
    }
    assert_eq!(a.fields()[dir].error.as_deref(), Some("no such folder"));
    // Another model keeps the choice.
    a.update(key(KeyCode::Esc));
    a.update(key(KeyCode::Down));
    assert_eq!(a.fields()[ds].value, "mnist");
    assert_eq!(a.fields()[dir].value, "/nonexistent");
    // An existing folder: Enter starts with that source (the runner loads it).
    let folder = tempfile::tempdir().unwrap();
    a.update(key(KeyCode::Tab));
    while a.focus != genmod::tui::app::Focus::Field(dir) {
        a.update(key(KeyCode::Tab));
    }
    for _ in 0.."/nonexistent".len() {
        a.update(key(KeyCode::Backspace));
    }
    for c in folder.path().display().to_string().chars() {
        a.update(key(KeyCode::Char(c)));
    }
    let fx = a.update(key(KeyCode::Enter));
    let Some(Effect::StartNeural(_, source)) = fx.first() else {
        panic!("{fx:?} {}", a.status)
    };
    assert_eq!(
        *source,
        genmod::data::DataSource::Mnist(folder.path().to_path_buf())
    );
}

/// The dataset field end to end: MNIST-format IDX files written from the embedded digits,
/// chosen in the picker; the header then names them and a run trains on them.
#[test]
fn a_run_chosen_on_an_mnist_folder_in_the_picker_trains_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mnist");
    std::fs::create_dir(&data).unwrap();
    let split = genmod::data::mnist::embedded();
    for (part, ds) in [("train", &split.train), ("t10k", &split.test)] {
        let [n, _, h, w] = ds.shape();
        genmod::data::idx::write(
            &data.join(format!("{part}-images-idx3-ubyte")),
            &[n, h, w],
            ds.pixels(),
            false,
        )
        .unwrap();
        let labels: Vec<u8> = ds.labels().unwrap().iter().map(|&l| l as u8).collect();
        genmod::data::idx::write(
            &data.join(format!("{part}-labels-idx1-ubyte")),
            &[n],
            &labels,
            false,
        )
        .unwrap();
    }
    let session = format!("genmod-dataset-{}", std::process::id());
    let bin = env!("CARGO_BIN_EXE_genmod-tui");
    start_in_tmux(
        &session,
        dir.path(),
        &format!("{bin} --runs-dir runs --image-mode ascii"),
        120,
        40,
    );
    // The VAE's form: epochs, batch size, learning rate, latent size, KL schedule, samples
    // from, mixture size, seed, device, dataset, data folder. Epochs 1, then nine Tabs to
    // the dataset.
    set_one_epoch(&session);
    for _ in 0..9 {
        tmux(&["send-keys", "-t", &session, "Tab"]);
    }
    for _ in 0.."mnist-10k".len() {
        tmux(&["send-keys", "-t", &session, "BSpace"]);
    }
    tmux(&["send-keys", "-t", &session, "-l", "mnist"]);
    tmux(&["send-keys", "-t", &session, "Tab"]);
    tmux(&[
        "send-keys",
        "-t",
        &session,
        "-l",
        &data.display().to_string(),
    ]);
    let typed = data.display().to_string();
    wait_for(&session, 10, "the folder typed in", |p| p.contains(&typed));
    tmux(&["send-keys", "-t", &session, "Enter"]);
    let pane = wait_for(&session, 120, "the end of the run on the folder", |p| {
        p.contains("finished at step 62")
    });
    assert!(pane.contains("MNIST from"), "{pane}");
    tmux(&["send-keys", "-t", &session, "q"]);
    wait_for_clean_exit(&session, "q");
    let run = only_run(&dir.path().join("runs"), "vae");
    assert!(run.join("ckpt-0000000062/meta.json").is_file());
}

/// The picker's `f`: only for a published dataset, one download at a time, progress as a bar
/// in the status line, and the verified folder filled into the form when it ends (or the
/// error shown when it fails).
#[test]
fn the_picker_downloads_the_named_dataset_and_fills_its_folder() {
    use genmod::tui::app::FieldKind;
    let mut a = app();
    let field = |a: &App, kind| a.fields().iter().position(|f| f.kind == kind).unwrap();
    let (ds, dir) = (field(&a, FieldKind::Dataset), field(&a, FieldKind::DataDir));
    // The embedded digits are nothing to download.
    assert!(a.update(key(KeyCode::Char('f'))).is_empty());
    assert!(a.status.contains("f downloads mnist"), "{}", a.status);
    assert!(!screen_text(&render(&a, 120, 36)).contains("f download data"));
    while a.focus != genmod::tui::app::Focus::Field(ds) {
        a.update(key(KeyCode::Tab));
    }
    for _ in 0.."mnist-10k".len() {
        a.update(key(KeyCode::Backspace));
    }
    for c in "mnist".chars() {
        a.update(key(KeyCode::Char(c)));
    }
    a.update(key(KeyCode::Esc));
    assert!(screen_text(&render(&a, 120, 36)).contains("f download data"));
    // Enter without a folder says how to get one.
    assert!(a.update(key(KeyCode::Enter)).is_empty());
    assert!(
        a.status.contains("f on the model list downloads it"),
        "{}",
        a.status
    );
    let fx = a.update(key(KeyCode::Char('f')));
    assert!(
        matches!(fx.as_slice(), [Effect::FetchData(n)] if n == "mnist"),
        "{fx:?}"
    );
    assert!(a.fetching());
    assert_eq!(a.status, "downloading mnist: connecting ...");
    assert!(
        a.update(key(KeyCode::Char('f'))).is_empty(),
        "one at a time"
    );
    assert_eq!(a.status, "already downloading mnist");
    a.update(Msg::FetchProgress {
        file: "train-images-idx3-ubyte.gz".into(),
        bytes: 2_500_000,
        total: Some(10_000_000),
    });
    assert!(
        a.status.starts_with(
            "downloading mnist · train-images-idx3-ubyte.gz [█████░░░░░░░░░░░░░░░] 2.5/10.0 MB 25%"
        ),
        "{}",
        a.status
    );
    let text = screen_text(&render(&a, 140, 36));
    assert!(
        text.contains("[█████░░░░░░░░░░░░░░░] 2.5/10.0 MB 25%"),
        "{text}"
    );
    a.update(Msg::Fetched {
        name: "mnist".into(),
        result: Ok(PathBuf::from("/cache/mnist")),
    });
    assert!(!a.fetching());
    assert_eq!(a.fields()[dir].value, "/cache/mnist");
    assert!(a.status.contains("Enter trains on it"), "{}", a.status);
    // A failure is shown whole and leaves the form as it was.
    a.update(key(KeyCode::Char('f')));
    a.update(Msg::Fetched {
        name: "mnist".into(),
        result: Err("every mirror failed (...)".into()),
    });
    assert_eq!(
        a.status,
        "downloading mnist failed: every mirror failed (...)"
    );
    assert_eq!(a.fields()[dir].value, "/cache/mnist");
}

/// `f` in the picker against a real HTTP server on 127.0.0.1 (`--mirror`): the first answer
/// is a file that is not MNIST, whose download shows a progress bar and is then refused by
/// its checksum; the second is a 404, as offline, and the message names every file still
/// missing and the folder to put them in.
#[test]
fn the_picker_fetches_from_a_mirror_and_says_what_went_wrong() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            if i == 0 {
                // 2 MiB in 32 pieces over about three seconds: long enough to be seen.
                let body = vec![7u8; 2 << 20];
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                for piece in body.chunks(64 << 10) {
                    let _ = s.write_all(piece);
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            } else {
                let _ = s.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let session = format!("genmod-fetch-{}", std::process::id());
    let bin = env!("CARGO_BIN_EXE_genmod-tui");
    start_in_tmux(
        &session,
        dir.path(),
        &format!(
            "GENMOD_CACHE={} {bin} --runs-dir runs --image-mode ascii --mirror http://127.0.0.1:{port}/",
            cache.display()
        ),
        150,
        40,
    );
    // The VAE's form: Tab to the first field, nine more to the dataset.
    for _ in 0..10 {
        tmux(&["send-keys", "-t", &session, "Tab"]);
    }
    for _ in 0.."mnist-10k".len() {
        tmux(&["send-keys", "-t", &session, "BSpace"]);
    }
    tmux(&["send-keys", "-t", &session, "-l", "mnist"]);
    tmux(&["send-keys", "-t", &session, "Escape"]);
    wait_for(&session, 10, "the download hint", |p| {
        p.contains("f download data")
    });
    tmux(&["send-keys", "-t", &session, "f"]);
    let pane = wait_for(&session, 20, "a progress bar", |p| {
        p.contains("downloading mnist · train-images-idx3-ubyte.gz [█")
    });
    assert!(pane.contains("/2.1 MB"), "{pane}");
    let pane = wait_for(&session, 30, "the checksum's verdict", |p| {
        p.contains("SHA-256 mismatch")
    });
    assert!(pane.contains("downloading mnist failed"), "{pane}");
    tmux(&["send-keys", "-t", &session, "f"]);
    let pane = wait_for(&session, 30, "the offline message", |p| {
        p.contains("then fetch again")
    });
    let flat: String = pane
        .lines()
        .map(|l| l.trim_matches(|c: char| c == '│' || c.is_whitespace()))
        .collect::<Vec<_>>()
        .join(" ");
    for name in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        assert!(flat.contains(name), "{name} is not named:\n{pane}");
    }
    assert!(
        flat.replace(' ', "")
            .contains(&cache.join("mnist").display().to_string().replace(' ', "")),
        "{pane}"
    );
    tmux(&["send-keys", "-t", &session, "q"]);
    wait_for_clean_exit(&session, "q");
}
