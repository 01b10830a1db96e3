//! Drawing the TUI's screens from the app state. Pure: state in, cells out.

use super::app::{
    App, ChartView, Entry, Focus, MODELS, RunState, RunView, Screen, chart_groups, smoothed,
};
use super::graphics::{Graphics, ImageMode};
use super::theme::THEME;
use crate::neural::ModelKind;
use crate::render::{Grid, text};
use crate::util::printable;
use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Borders, Cell, Chart, Clear, Dataset, Gauge, GraphType, List, ListItem, ListState,
    Paragraph, Row, Table, TableState, Widget, Wrap,
};

/// The smallest terminal the layout works in.
pub const MIN_WIDTH: u16 = 64;
pub const MIN_HEIGHT: u16 = 20;

/// Draws the whole screen; `graphics` draws the sample grid where a pixel mode is chosen.
pub fn draw(f: &mut Frame, app: &App, graphics: &Graphics) {
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        draw_too_small(f, area);
        return;
    }
    match app.screen {
        Screen::Picker => draw_picker(f, area, app),
        Screen::Dashboard => draw_dashboard(f, area, app, graphics),
        Screen::Runs => draw_runs(f, area, app),
        Screen::Compare => draw_compare(f, area, app),
    }
    if app.help {
        draw_help(f, area, app.screen);
    }
    if app.confirm_quit {
        draw_confirm(f, area, app);
    }
}

/// The runs browser: a table of the run folders, the selected run's details, and the keys.
fn draw_runs(f: &mut Frame, area: Rect, app: &App) {
    let [main, details, status, footer] = Layout::vertical([
        Constraint::Min(5),
        Constraint::Length(6),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let runs = &app.runs;
    let title = format!(
        " runs in {} · {} run{} ",
        printable(&app.runs_dir.display().to_string()),
        runs.runs.len(),
        if runs.runs.len() == 1 { "" } else { "s" }
    );
    if let Some(e) = &runs.error {
        f.render_widget(
            Paragraph::new(printable(e))
                .fg(THEME.error)
                .wrap(Wrap { trim: false })
                .block(Block::bordered().title(title)),
            main,
        );
    } else if runs.runs.is_empty() {
        f.render_widget(
            Paragraph::new(vec![
                Line::from("no runs here yet"),
                Line::from("start one from the picker (b), or open another folder: genmod-tui DIR")
                    .fg(THEME.dim),
            ])
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(title)),
            main,
        );
    } else {
        let header = Row::new(
            [
                "",
                "run",
                "model",
                "steps",
                "epochs",
                "last metrics",
                "checkpoint",
            ]
            .map(|h| Cell::from(h).fg(THEME.dim)),
        );
        let rows: Vec<Row> = runs
            .runs
            .iter()
            .map(|r| {
                let mark = match runs.marked.iter().position(|d| *d == r.dir) {
                    Some(i) => format!("{}", i + 1),
                    None => String::new(),
                };
                let metrics: Vec<String> = r
                    .last_metrics
                    .iter()
                    .take(3)
                    .map(|(k, v)| format!("{k} {v:.3}"))
                    .collect();
                let ckpt = match &r.newest_checkpoint {
                    Some((_, t)) => crate::train::runs::utc_minute(*t),
                    None if r.diverged > 0 => "only diverged".into(),
                    None => "none".into(),
                };
                Row::new([
                    Cell::from(mark).fg(THEME.accent),
                    Cell::from(printable(&r.name)),
                    Cell::from(r.kind.map_or("?", |k| k.name())),
                    Cell::from(r.steps.to_string()),
                    Cell::from(r.epochs.to_string()),
                    Cell::from(metrics.join(", ")),
                    Cell::from(ckpt),
                ])
            })
            .collect();
        let table = Table::new(
            rows,
            [
                Constraint::Length(2),
                Constraint::Max(28),
                Constraint::Length(11),
                Constraint::Length(7),
                Constraint::Length(6),
                Constraint::Min(20),
                Constraint::Length(16),
            ],
        )
        .header(header)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ")
        .block(Block::bordered().title(title));
        let mut state = TableState::default().with_selected(Some(runs.selected));
        f.render_stateful_widget(table, main, &mut state);
    }
    let detail_lines: Vec<Line> = match runs.current() {
        Some(r) => {
            let mut lines = vec![Line::from(printable(&r.dir.display().to_string()))];
            lines.push(Line::from(format!(
                "{} on {}, {} steps in {} epoch{}",
                r.kind.map_or("unknown model", |k| k.name()),
                printable(r.dataset.as_deref().unwrap_or("unknown data")),
                r.steps,
                r.epochs,
                if r.epochs == 1 { "" } else { "s" }
            )));
            let all: Vec<String> = r
                .last_metrics
                .iter()
                .map(|(k, v)| format!("{k} {v:.4}"))
                .collect();
            lines.push(Line::from(format!("last: {}", all.join(", "))));
            lines.push(Line::from(match &r.newest_checkpoint {
                Some((p, t)) => format!(
                    "newest checkpoint {} written {} UTC{}",
                    printable(&p.file_name().unwrap_or_default().to_string_lossy()),
                    crate::train::runs::utc_minute(*t),
                    if r.diverged > 0 {
                        format!(" ({} newer marked DIVERGED)", r.diverged)
                    } else {
                        String::new()
                    }
                ),
                None => "no checkpoint to open or resume".into(),
            }));
            lines
        }
        None => Vec::new(),
    };
    f.render_widget(
        Paragraph::new(detail_lines).block(Block::bordered().title(" selected run ")),
        details,
    );
    f.render_widget(
        Paragraph::new(printable(&app.status)).fg(THEME.attention),
        status,
    );
    f.render_widget(
        Paragraph::new(
            " ↑↓ run · Enter open · Space mark · c compare · r resume · d delete · b back · ? help",
        )
        .style(Style::new().fg(THEME.dim)),
        footer,
    );
    if runs.confirm_delete
        && let Some(r) = runs.current()
    {
        let r_area = centered(area, 64, 4);
        f.render_widget(Clear, r_area);
        f.render_widget(
            Paragraph::new(vec![
                Line::from(format!("Delete {}?", printable(&r.name))).bold(),
                Line::from("y deletes its checkpoints, metrics and grid; other keys keep it"),
            ])
            .wrap(Wrap { trim: false })
            .block(Block::bordered().border_style(Style::new().fg(THEME.error))),
            r_area,
        );
    }
}

/// Two or more runs' curves, one chart per metric group, a line per run.
fn draw_compare(f: &mut Frame, area: Rect, app: &App) {
    let [main, status, footer] = Layout::vertical([
        Constraint::Min(0),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    if let Some(c) = &app.comparison {
        let rows = Layout::vertical(
            c.groups
                .iter()
                .map(|_| Constraint::Ratio(1, c.groups.len() as u32)),
        )
        .split(main);
        for (group, rect) in c.groups.iter().zip(rows.iter()) {
            let mut curves: Vec<(String, &[(f64, f64)])> = Vec::new();
            for metric in &group.metrics {
                for (name, series) in &c.runs {
                    if let Some(s) = series.iter().find(|s| s.name == *metric) {
                        let label = if group.metrics.len() > 1 {
                            format!("{} {metric}", printable(name))
                        } else {
                            printable(name)
                        };
                        curves.push((label, s.points.as_slice()));
                    }
                }
            }
            draw_curves(
                f,
                *rect,
                group.title,
                &curves,
                group.losses,
                app.chart_view,
                true,
            );
        }
    }
    f.render_widget(
        Paragraph::new(printable(&app.status)).fg(THEME.attention),
        status,
    );
    f.render_widget(
        Paragraph::new(" [ ] smoothing · l log scale · b back to the runs · ? help · q quit")
            .style(Style::new().fg(THEME.dim)),
        footer,
    );
}

fn draw_too_small(f: &mut Frame, area: Rect) {
    let msg = vec![
        Line::from("Terminal too small".bold()),
        Line::from(format!(
            "need {MIN_WIDTH}x{MIN_HEIGHT}, have {}x{}",
            area.width, area.height
        )),
        Line::from("enlarge the window; Ctrl-C saves and quits"),
    ];
    f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
}

fn draw_picker(f: &mut Frame, area: Rect, app: &App) {
    let [main, footer] = Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(area);
    let [left, right] =
        Layout::horizontal([Constraint::Length(36), Constraint::Min(0)]).areas(main);
    draw_model_list(f, left, app);
    let details = Paragraph::new(settings_lines(app))
        .wrap(Wrap { trim: false })
        .block(
            Block::bordered()
                .title(" settings ")
                .border_style(focus_style(app.focus != Focus::List)),
        );
    f.render_widget(details, right);
    let hint = if app.form_valid() {
        "Enter start"
    } else {
        "fix red fields to start"
    };
    let fetch = if app.offers_fetch() {
        " · f download data"
    } else {
        ""
    };
    f.render_widget(
        Paragraph::new(format!(
            " ↑↓ model · Tab fields · {hint}{fetch} · r runs · ? help · q quit"
        ))
        .style(Style::new().fg(THEME.dim)),
        footer,
    );
}

/// The models, by report section, the selected one highlighted.
fn draw_model_list(f: &mut Frame, area: Rect, app: &App) {
    let items: Vec<ListItem> = MODELS
        .iter()
        .map(|m| {
            ListItem::new(Line::from(vec![
                Span::styled(format!("{:<4}", m.section), Style::new().fg(THEME.dim)),
                Span::raw(m.name),
            ]))
        })
        .collect();
    let list = List::new(items)
        .block(
            Block::bordered()
                .title(" genmod: pick a model ")
                .border_style(focus_style(app.focus == Focus::List)),
        )
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    let mut state = ListState::default().with_selected(Some(app.selected()));
    f.render_stateful_widget(list, area, &mut state);
}

/// The selected model's description, its dataset, its fields (errors in red beside them)
/// and any status.
fn settings_lines(app: &App) -> Vec<Line<'static>> {
    let info = app.info();
    let mut lines = vec![
        Line::from(vec![
            Span::styled(format!("{} ", info.section), Style::new().fg(THEME.dim)),
            info.name.bold(),
        ]),
        Line::from(info.blurb),
        Line::from(""),
        // The data in memory; a neural run's own choice is the form's dataset field.
        Line::from(vec![
            Span::styled("loaded  ", Style::new().fg(THEME.dim)),
            Span::raw(match info.entry {
                Entry::Multinomial => "the Play Tennis table (14 days)".to_string(),
                _ => printable(&app.dataset),
            }),
        ]),
        Line::from(""),
    ];
    lines.extend(app.visible_fields().into_iter().map(|i| field_line(app, i)));
    if matches!(info.entry, Entry::Neural(_))
        && let Err(why) = &app.cuda
    {
        lines.push(Line::from(""));
        lines.push(Line::from(Span::styled(
            format!("CUDA unavailable: {why}"),
            Style::new().fg(THEME.dim),
        )));
    }
    if !app.status.is_empty() {
        lines.push(Line::from(""));
        lines.push(Line::from(Span::styled(
            printable(&app.status),
            Style::new().fg(THEME.attention),
        )));
    }
    lines
}

/// One field: its label, its value (a cursor when focused) and its error.
fn field_line(app: &App, i: usize) -> Line<'static> {
    let fld = &app.fields()[i];
    let focused = app.focus == Focus::Field(i);
    let value_style = match (&fld.error, focused) {
        (Some(_), _) => Style::new().fg(THEME.error),
        (None, true) => Style::new().add_modifier(Modifier::REVERSED),
        (None, false) => Style::new(),
    };
    let mut spans = vec![
        Span::styled(
            format!("{:>14}  ", fld.kind.label()),
            Style::new().fg(THEME.dim),
        ),
        Span::styled(
            format!("{}{}", fld.value, if focused { "_" } else { "" }),
            value_style,
        ),
    ];
    if let Some(e) = &fld.error {
        spans.push(Span::styled(format!("  {e}"), Style::new().fg(THEME.error)));
    }
    Line::from(spans)
}

fn focus_style(focused: bool) -> Style {
    if focused {
        Style::new().fg(THEME.accent)
    } else {
        Style::new().fg(THEME.dim)
    }
}

fn draw_dashboard(f: &mut Frame, area: Rect, app: &App, graphics: &Graphics) {
    let Some(run) = &app.run else { return };
    let [header, body, progress, log, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(8),
        Constraint::Length(1),
        Constraint::Length(5),
        Constraint::Length(1),
    ])
    .areas(area);
    let state = match &run.state {
        RunState::Running => "running".fg(THEME.running),
        RunState::Paused => "paused".fg(THEME.paused),
        RunState::Finished => "finished".fg(THEME.finished),
        RunState::Failed(_) => "failed".fg(THEME.error),
    };
    f.render_widget(
        Paragraph::new(Line::from(vec![
            format!(" {} {} ", run.info.section, run.info.name).bold(),
            Span::raw("· "),
            state,
            Span::raw(format!(
                " · {} · images: {}",
                printable(&app.dataset),
                app.image_mode.name()
            )),
        ])),
        header,
    );
    // The interpolation strip takes the whole width: a path needs many images side by side.
    let images = if app.show_interpolation {
        body
    } else {
        let [charts, images] =
            Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
                .areas(body);
        draw_charts(f, charts, run, app.chart_view);
        images
    };
    let (title, grid) = if app.show_interpolation {
        (
            " latent interpolation between two codes: linear (top), spherical (bottom) · b back "
                .to_string(),
            run.interpolation.as_ref(),
        )
    } else if run.info.entry == Entry::Neural(ModelKind::Autoencoder) {
        // The autoencoder's live grid is test digits over their reconstructions
        // (Model::preview), not samples.
        (
            " test digits and reconstructions ".to_string(),
            run.grid.as_ref(),
        )
    } else {
        (run.grid_codes.title(), run.grid.as_ref())
    };
    let block = Block::bordered().title(title);
    let inner = block.inner(images);
    f.render_widget(block, images);
    match grid {
        // A kitty picture lies above the text, so it would hide a pop-up drawn over it; while
        // one is open the grid waits (sixel pixels are plain cells and get overdrawn).
        Some(_) if app.image_mode == ImageMode::Kitty && (app.help || app.confirm_quit) => {}
        Some(g) if app.image_mode.is_pixels() => graphics.render(f, inner, g, app.image_mode),
        Some(g) => f.render_widget(
            GridWidget {
                grid: g,
                mode: app.image_mode,
            },
            inner,
        ),
        None => f.render_widget(
            Paragraph::new("waiting for the first grid…").fg(THEME.dim),
            inner,
        ),
    }
    draw_progress(f, progress, run, app.batch_size);
    let lines: Vec<Line> = run
        .log
        .iter()
        .rev()
        .take(log.height.saturating_sub(2) as usize)
        .rev()
        .map(|l| Line::from(printable(l)))
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(Block::new().borders(Borders::TOP).title(" events ")),
        log,
    );
    let keys = match (run.info.entry, &run.state) {
        (Entry::Neural(_), RunState::Running | RunState::Paused) => {
            " p pause · s stop · c checkpoint · n sample · i interpolate · g PNG · [ ] smooth · l log · m image · ? help · q quit"
        }
        // The trainer keeps an ended run's model: it still samples and interpolates.
        (Entry::Neural(_), RunState::Finished) => {
            " n sample · i interpolate · g PNG · [ ] smooth · l log · m image · r runs · b back · ? help · q quit"
        }
        _ => " g PNG · [ ] smooth · m image mode · r runs · b back · ? help · q quit",
    };
    let status = if app.status.is_empty() {
        keys.to_string()
    } else {
        format!(" {} ·{}", printable(&app.status), keys)
    };
    f.render_widget(Paragraph::new(status).fg(THEME.dim), footer);
}

fn draw_charts(f: &mut Frame, area: Rect, run: &RunView, view: ChartView) {
    if !run.text.is_empty() || chart_groups(run.info.entry).is_empty() {
        let groups = chart_groups(run.info.entry);
        let (text_area, chart_area) =
            if groups.is_empty() || run.series.iter().all(|s| s.points.len() < 2) {
                (area, None)
            } else {
                let [a, b] = Layout::vertical([
                    Constraint::Length(run.text.len() as u16 + 2),
                    Constraint::Min(0),
                ])
                .areas(area);
                (a, Some(b))
            };
        let lines: Vec<Line> = run.text.iter().map(|l| Line::from(printable(l))).collect();
        f.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(Block::bordered().title(" result ")),
            text_area,
        );
        if let Some(c) = chart_area {
            draw_chart_groups(f, c, run, view);
        }
        return;
    }
    draw_chart_groups(f, area, run, view);
}

/// A curve's (step, value) points.
type Points = Vec<(f64, f64)>;

fn draw_chart_groups(f: &mut Frame, area: Rect, run: &RunView, view: ChartView) {
    let groups = chart_groups(run.info.entry);
    let rows = Layout::vertical(
        groups
            .iter()
            .map(|_| Constraint::Ratio(1, groups.len() as u32)),
    )
    .split(area);
    for (group, rect) in groups.iter().zip(rows.iter()) {
        let curves: Vec<(String, &[(f64, f64)])> = group
            .metrics
            .iter()
            .filter_map(|n| run.series(*n))
            .map(|s| (s.name.to_string(), s.points.as_slice()))
            .collect();
        draw_curves(f, *rect, group.title, &curves, group.losses, view, false);
    }
}

/// One chart: each curve (its label and (step, value) points) on one pair of axes, smoothed
/// as `view` says with the raw values faint behind, on a log axis where asked for and
/// `losses` (a curve that touched 0 keeps the chart linear). The legend goes inside the
/// chart, where ratatui hides it when it would cover too much, or `beside` it, always
/// shown (a comparison is unreadable without it).
fn draw_curves(
    f: &mut Frame,
    rect: Rect,
    title: &str,
    curves: &[(String, &[(f64, f64)])],
    losses: bool,
    view: ChartView,
    beside: bool,
) {
    let log = view.log_losses && losses && curves.iter().all(|c| c.1.iter().all(|p| p.1 > 0.0));
    let axis = |y: f64| if log { y.log10() } else { y };
    let on_axis = |pts: &[(f64, f64)]| -> Vec<(f64, f64)> {
        pts.iter().map(|&(x, y)| (x, axis(y))).collect()
    };
    // (label, raw points, smoothed points), on the axis's scale; smoothing is done on the
    // values, then mapped.
    let curves: Vec<(&str, Points, Points)> = curves
        .iter()
        .map(|(label, pts)| {
            let smooth = smoothed(pts, view.smoothing);
            (label.as_str(), on_axis(pts), on_axis(&smooth))
        })
        .collect();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in curves.iter().flat_map(|c| c.1.iter()) {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    let mut title = format!(" {title} ");
    if view.smoothing > 0.0 {
        title.push_str(&format!("· smoothing {:.2} ", view.smoothing));
    }
    if log {
        title.push_str("· log scale ");
    }
    if x0 > x1 {
        f.render_widget(
            Paragraph::new("no data yet")
                .fg(THEME.dim)
                .block(Block::bordered().title(title)),
            rect,
        );
        return;
    }
    if (y1 - y0).abs() < 1e-12 {
        y0 -= 0.5;
        y1 += 0.5;
    }
    if (x1 - x0).abs() < 1e-12 {
        x1 = x0 + 1.0;
    }
    let mut datasets: Vec<Dataset> = Vec::new();
    if view.smoothing > 0.0 && THEME.raw_behind_average {
        // The raw values first, faint, so the averages are drawn over them.
        for (_, raw, _) in &curves {
            datasets.push(
                Dataset::default()
                    .marker(Marker::Braille)
                    .graph_type(GraphType::Line)
                    .style(Style::new().fg(THEME.dim))
                    .data(raw),
            );
        }
    }
    let mut legend = Vec::new();
    for (i, (name, raw, smooth)) in curves.iter().enumerate() {
        let value = |pts: &[(f64, f64)]| {
            let v = pts.last().map_or(f64::NAN, |p| p.1);
            if log { 10f64.powf(v) } else { v }
        };
        let label = if view.smoothing > 0.0 {
            format!("{name} {:.3} (avg {:.3})", value(raw), value(smooth))
        } else {
            format!("{name} {:.3}", value(raw))
        };
        let colour = THEME.series[i % THEME.series.len()];
        let mut dataset = Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(colour))
            .data(if view.smoothing > 0.0 { smooth } else { raw });
        if beside {
            legend.push(Line::from(vec![
                // Without colour the curves differ only by their order: number them.
                Span::styled(format!("{} ━ ", i + 1), Style::new().fg(colour)),
                Span::raw(label),
            ]));
        } else {
            dataset = dataset.name(label);
        }
        datasets.push(dataset);
    }
    let y_label = |y: f64| {
        if log {
            format!("{:.3}", 10f64.powf(y))
        } else {
            format!("{y:.2}")
        }
    };
    let chart = Chart::new(datasets)
        .hidden_legend_constraints((Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)))
        .block(Block::bordered().title(title))
        .x_axis(
            Axis::default()
                .bounds([x0, x1])
                .labels([format!("{x0:.0}"), format!("{x1:.0}")])
                .style(Style::new().fg(THEME.dim)),
        )
        .y_axis(
            Axis::default()
                .bounds([y0, y1])
                .labels([y_label(y0), y_label(y1)])
                .style(Style::new().fg(THEME.dim)),
        );
    if beside {
        let width = legend.iter().map(Line::width).max().unwrap_or(0) as u16 + 2;
        let [chart_area, legend_area] =
            Layout::horizontal([Constraint::Min(20), Constraint::Length(width)]).areas(rect);
        f.render_widget(chart, chart_area);
        f.render_widget(
            Paragraph::new(legend).block(Block::bordered().border_style(THEME.dim)),
            legend_area,
        );
    } else {
        f.render_widget(chart, rect);
    }
}

fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

fn draw_progress(f: &mut Frame, area: Rect, run: &RunView, batch_size: usize) {
    let ratio = if run.total > 0 {
        (run.step as f64 / run.total as f64).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let label = match run.info.entry {
        Entry::Neural(_) => format!(
            "epoch {} · step {}/{} · {:.0} img/s · ETA {}",
            run.epoch + 1,
            run.step,
            run.total,
            run.images_per_sec,
            run.eta_secs(batch_size)
                .map(fmt_secs)
                .unwrap_or_else(|| "-".into())
        ),
        Entry::Classical(_) => format!("EM iteration {}", run.step),
        Entry::Multinomial => "closed form".into(),
    };
    let ratio =
        if matches!(run.state, RunState::Finished) && !matches!(run.info.entry, Entry::Neural(_)) {
            1.0
        } else {
            ratio
        };
    f.render_widget(
        Gauge::default()
            .ratio(ratio)
            .label(label)
            .gauge_style(Style::new().fg(THEME.gauge).bg(THEME.gauge_track)),
        area,
    );
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn draw_help(f: &mut Frame, area: Rect, screen: Screen) {
    let keys = super::app::help(screen);
    let r = centered(area, 80, keys.len() as u16 + 2);
    let lines: Vec<Line> = keys
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:>16}  "), Style::new().fg(THEME.accent)),
                Span::raw(*what),
            ])
        })
        .collect();
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" keys ")),
        r,
    );
}

fn draw_confirm(f: &mut Frame, area: Rect, app: &App) {
    let r = centered(area, 56, 5);
    let what = if app
        .run
        .as_ref()
        .is_some_and(|r| matches!(r.state, RunState::Running | RunState::Paused))
    {
        "Training is running. Stop it (a checkpoint is saved) and quit?"
    } else {
        "The latest weights are not in a checkpoint. Quit anyway?"
    };
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(vec![
            Line::from(what),
            Line::from(""),
            Line::from("y: quit · any other key: stay".bold()),
        ])
        .wrap(Wrap { trim: true })
        .block(
            Block::bordered()
                .title(" quit? ")
                .border_style(Style::new().fg(THEME.attention)),
        ),
        r,
    );
}

/// A sample grid drawn with text cells.
pub struct GridWidget<'a> {
    pub grid: &'a Grid,
    pub mode: ImageMode,
}

/// Fewest pixels a tile may get across: below this a digit is no longer readable.
const MIN_TILE_CELLS: usize = 14;

impl GridWidget<'_> {
    /// The part of the grid to show in `area`: as many whole tiles as stay readable.
    pub fn visible(&self, area: Rect) -> Grid {
        if self.grid.tiles.is_none() {
            return self.grid.clone();
        }
        // Half-blocks and ASCII both give one pixel column per cell and about two pixel
        // rows per cell row.
        let fit_cols = (area.width as usize / MIN_TILE_CELLS).max(1);
        let fit_rows = ((area.height as usize * 2) / MIN_TILE_CELLS).max(1);
        self.grid.top_left_tiles(fit_cols, fit_rows)
    }
}

impl Widget for GridWidget<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.width == 0 || area.height == 0 {
            return;
        }
        let shown = self.visible(area);
        let grid = &shown;
        match self.mode {
            ImageMode::Ascii => {
                // Character cells are about twice as tall as wide.
                let (cols, rows) = text::fit(grid, area.width as usize, area.height as usize, 2);
                for (y, line) in text::ascii(grid, cols, rows).iter().enumerate() {
                    buf.set_string(area.x, area.y + y as u16, line, Style::new());
                }
            }
            // Pixel modes are drawn by `Graphics`; a grid that reaches here falls back to text.
            ImageMode::HalfBlocks | ImageMode::Sixel | ImageMode::Kitty => {
                let (cols, rows) = text::fit(grid, area.width as usize, area.height as usize, 2);
                for (y, row) in text::half_blocks(grid, cols, rows).iter().enumerate() {
                    for (x, (top, bottom)) in row.iter().enumerate() {
                        if let Some(cell) = buf.cell_mut((area.x + x as u16, area.y + y as u16)) {
                            cell.set_symbol("▀")
                                .set_fg(Color::Rgb(top[0], top[1], top[2]))
                                .set_bg(Color::Rgb(bottom[0], bottom[1], bottom[2]));
                        }
                    }
                }
            }
        }
    }
}
