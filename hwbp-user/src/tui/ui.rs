//! Rendering: functions of `&App` onto a frame. No I/O, no clock, no locks:
//! everything they show is in the [`App`].
//!
//! Much of what is drawn comes from the traced world: a program names
//! itself (`prctl(PR_SET_NAME)`), its functions, its values, and writes
//! what it likes. ratatui draws a control character as it is (into the cell
//! before it), and the terminal obeys it: `\e[2J` in a comm would clear
//! root's screen. So every such string is drawn through [`printable`]
//! (`\e[2J` shows as such; a `-- CMD`'s output lines through
//! [`plain_line`], which drops escape sequences as a terminal would apply
//! them), and [`render`] ends by dropping any control character left in a
//! cell, so that one string missed here cannot reach the terminal.

use std::borrow::Cow;

use ratatui::{
    Frame,
    buffer::Buffer,
    layout::{Alignment, Constraint, Layout, Rect},
    style::{Color, Modifier, Style, Stylize as _},
    symbols::Marker,
    text::{Line, Span},
    widgets::{
        Axis, Block, BorderType, Cell, Chart, Dataset, GraphType, Paragraph, Row, Table,
        TableState, Wrap,
    },
};

use super::app::{
    App, Breakdown, CHART_SECONDS, CommandOutputView, DEBUG_REGISTERS, Focus, Traced,
};
use crate::{printable::printable, probe::aggregates::Records};

mod help;

use help::render_help;
pub use help::{HELP_MIN_HEIGHT, HELP_MIN_WIDTH, KEYS, help_fit};

/// Below this the dashboard shows a message instead.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

/// Targets shown without scrolling.
const TABLE_ROWS: usize = 8;
/// Frames shown per stack in the details.
const STACK_FRAMES: usize = 4;

const ACCENT: Color = Color::Cyan;
const SPARK: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// A second of a filtered history older than the hits kept.
const UNKNOWN: char = '·';

pub fn render(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        render_too_small(frame, area);
        // The help scrolls on smaller terminals than the dashboard.
        if app.help {
            render_help(frame, area, app);
        }
        drop_control_characters(frame.buffer_mut());
        return;
    }
    let status_lines = status_lines(app, area.width);
    let status_height = status_lines.len() as u16;
    let table_height = app.targets.len().clamp(1, TABLE_ROWS) as u16 + 3;
    let rest = area.height.saturating_sub(1 + status_height + table_height);
    let middle_height = (rest * 3 / 5).max(7).min(rest);
    let [status, table, middle, log, keys] = Layout::vertical([
        Constraint::Length(status_height),
        Constraint::Length(table_height),
        Constraint::Length(middle_height),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(status_lines), status);
    render_targets(frame, table, app);
    let [details, chart] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(middle);
    render_details(frame, details, app);
    render_chart(frame, chart, app);
    render_log(frame, log, app);
    render_keys(frame, keys, app);
    if app.help {
        render_help(frame, area, app);
    }
    drop_control_characters(frame.buffer_mut());
}

/// The last guard against a string drawn without [`printable`]: a cell
/// holding a control character keeps only the rest of its symbol (ratatui
/// appends zero-width graphemes, control characters among them, to the
/// cell before them, and the backend writes the symbol out whole).
fn drop_control_characters(buffer: &mut Buffer) {
    for cell in &mut buffer.content {
        if cell.symbol().chars().any(char::is_control) {
            let kept: String = cell.symbol().chars().filter(|c| !c.is_control()).collect();
            cell.set_symbol(if kept.is_empty() { " " } else { &kept });
        }
    }
}

fn render_too_small(frame: &mut Frame, area: Rect) {
    let text = vec![
        Line::from("terminal too small".bold()),
        Line::from(format!(
            "{}×{}: hwbp-trace needs {MIN_WIDTH}×{MIN_HEIGHT}",
            area.width, area.height
        )),
        Line::from("enlarge it, or q to quit"),
    ];
    let top = area.height.saturating_sub(3) / 2;
    let [_, middle] = Layout::vertical([Constraint::Length(top), Constraint::Fill(1)]).areas(area);
    frame.render_widget(
        Paragraph::new(text)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        middle,
    );
}

/// `MM:SS`, or `H:MM:SS` from an hour on.
pub fn elapsed(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s / 3600 {
        0 => format!("{:02}:{:02}", s / 60, s % 60),
        h => format!("{h}:{:02}:{:02}", (s / 60) % 60, s % 60),
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn run_state(app: &App) -> Span<'static> {
    match &app.ended {
        Some(e) => match e.reason.as_str() {
            "process-exit" => " ■ ended: process exited ".fg(Color::Yellow).bold(),
            reason => format!(" ■ ended: {reason} ").fg(Color::Yellow).bold(),
        },
        None if app.paused => " ‖ paused ".fg(Color::Magenta).bold(),
        None => " ● tracing ".fg(Color::Green).bold(),
    }
}

fn process_state(app: &App) -> String {
    match &app.traced {
        Traced::SystemWide { cpus } => {
            format!("system-wide, {}", plural(*cpus as u64, "CPU", "CPUs"))
        }
        Traced::Process { pid, name, .. } => {
            let state = match &app.ended {
                _ if app.process_exited() => match app.ended.as_ref().and_then(|e| e.exit_status) {
                    Some(status) => format!("exited, status {status}"),
                    None => "exited".to_owned(),
                },
                Some(_) => "no longer traced".to_owned(),
                None => "running".to_owned(),
            };
            format!("pid {pid} {} {state}", printable(name))
        }
    }
}

/// The status bar's items, in order: run state and elapsed time, hits
/// (those of the filter, of how many), lost, debug registers, the traced
/// process, the `-o` files.
fn status_items(app: &App) -> Vec<Vec<Span<'static>>> {
    let hits = match &app.filter {
        None => Span::raw(plural(app.total_hits(), "hit", "hits")),
        Some(f) => format!(
            "filter: {} — {} of {} match",
            printable(f),
            app.total_hits(),
            plural(app.view.total, "hit", "hits")
        )
        .fg(Color::Yellow)
        .bold(),
    };
    let mut items = vec![
        vec![run_state(app), Span::raw(elapsed(app.elapsed_s()))],
        vec![hits],
    ];
    // Lost hits have no comm: under a filter, say they are all comms'.
    let lost = app.lost();
    let text = match app.filter {
        Some(_) => format!("lost {lost} (all comms)"),
        None => format!("lost {lost}"),
    };
    items.push(vec![if lost > 0 {
        text.fg(Color::Red).bold()
    } else {
        Span::raw(text)
    }]);
    // Debug registers taken on each CPU (or thread) of those it has.
    items.push(vec![Span::raw(format!(
        "DR {}/{DEBUG_REGISTERS}",
        app.targets.len()
    ))]);
    items.push(vec![Span::raw(process_state(app))]);
    // Counts stay exact in every mode; the log and values do not.
    if app.records != Records::All {
        items.push(vec![format!("records: {}", app.records).fg(Color::Yellow)]);
    }
    // File names: the status bar is short, the paths were typed.
    for (name, failed) in app.outputs() {
        let name = printable(name);
        items.push(vec![match failed {
            None => Span::raw(format!("writing {name}")),
            Some(_) => format!("stopped writing {name}").fg(Color::Red).bold(),
        }]);
    }
    items
}

/// The status bar: one line when every item fits, else two (at 80 columns
/// the process and the files go to the second line), so that no item is
/// cut.
pub fn status_lines(app: &App, width: u16) -> Vec<Line<'static>> {
    let dim = Style::new().fg(Color::DarkGray);
    let mut items = status_items(app);
    let item_width = |item: &[Span]| item.iter().map(Span::width).sum::<usize>();
    let sep = 3;
    let one_line = items.iter().map(|i| item_width(i)).sum::<usize>() + sep * (items.len() - 1);
    let width = width as usize;
    // The name only where it does not push the facts off the line.
    let name = " hwbp-trace ".bold().reversed();
    if one_line <= width {
        let mut spans = Vec::new();
        if one_line + name.width() <= width {
            spans.push(name);
        }
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                spans.push(Span::styled(" │ ", dim));
            }
            spans.extend(item);
        }
        return vec![Line::from(spans)];
    }
    // Else the run's facts first, then the process and the files, each
    // group on lines of its own (more lines only for long names).
    let rest = items.split_off(4.min(items.len()));
    let mut lines = Vec::new();
    for group in [items, rest] {
        let mut line: Vec<Span<'static>> = Vec::new();
        let mut used = 0;
        for item in group {
            let w = item_width(&item);
            if used > 0 && used + sep + w > width {
                lines.push(Line::from(std::mem::take(&mut line)));
                used = 0;
            }
            if used > 0 {
                line.push(Span::styled(" │ ", dim));
                used += sep;
            } else if !lines.is_empty() {
                // Under the run state's leading blank.
                line.push(Span::raw(" "));
                used += 1;
            }
            line.extend(item);
            used += w;
        }
        if !line.is_empty() {
            lines.push(Line::from(line));
        }
    }
    lines
}

fn panel(title: String, focused: bool) -> Block<'static> {
    let block = Block::bordered()
        .border_type(BorderType::Rounded)
        .title(title);
    if focused {
        block
            .border_style(Style::new().fg(ACCENT))
            .title_style(Style::new().fg(ACCENT).bold())
    } else {
        block.border_style(Style::new().fg(Color::DarkGray))
    }
}

/// An address as shown: `0x…` under `--redact-addresses`, so that `e`
/// snapshots can be shared like the trace files.
fn address(app: &App, addr: u64) -> String {
    match app.redact {
        true => crate::record::redact::REDACTED.to_owned(),
        false => format!("{addr:#x}"),
    }
}

/// A text sparkline of `values`, one character each, scaled to their max;
/// `·` where a value is unknown.
pub fn sparkline(values: &[Option<u64>]) -> String {
    let max = values.iter().flatten().copied().max().unwrap_or(0);
    values
        .iter()
        .map(|&v| match v {
            None => UNKNOWN,
            Some(0) => ' ',
            Some(v) => SPARK[((v.saturating_mul(8)).div_ceil(max.max(1)) as usize).clamp(1, 8) - 1],
        })
        .collect()
}

/// A rate, `?` when unknown.
fn rate_text(rate: Option<u64>) -> String {
    rate.map_or_else(|| "?".to_owned(), |r| r.to_string())
}

fn render_targets(frame: &mut Frame, area: Rect, app: &App) {
    let rows = app.rows();
    let width_of = |f: &dyn Fn(&super::app::TargetView) -> usize, header: usize| {
        rows.iter()
            .map(|r| f(r.view))
            .max()
            .unwrap_or(0)
            .max(header)
            .min(24) as u16
    };
    let target_w = width_of(&|v| printable(&v.target).chars().count(), 6);
    let symbol_w = width_of(&|v| printable(&v.symbol).chars().count(), 6);
    let fixed = target_w + symbol_w + 4 + 9 + 7 + 6 + 8 + 2;
    let show_addr = area.width.saturating_sub(fixed + 19) >= 20;
    let history_w = area
        .width
        .saturating_sub(fixed + if show_addr { 19 } else { 0 })
        .max(4);

    // The last 5 minutes in the column's width: each cell the busiest
    // second of those it covers.
    let (_, per_cell) = app.history_cells(0, history_w as usize);
    let history_header = [
        format!("HISTORY 5m, max/{per_cell}s"),
        format!("5m max/{per_cell}s"),
        "5m".to_owned(),
    ]
    .into_iter()
    .find(|h| h.chars().count() <= history_w as usize)
    .unwrap_or_default();
    let mut header = vec!["TARGET".to_owned(), "SYMBOL".to_owned()];
    let mut widths = vec![Constraint::Length(target_w), Constraint::Length(symbol_w)];
    if show_addr {
        header.push("ADDRESS".to_owned());
        widths.push(Constraint::Length(18));
    }
    header.extend(
        ["MODE", "HITS", "HITS/S"]
            .into_iter()
            .map(str::to_owned)
            .chain([history_header, "LOST".to_owned()]),
    );
    widths.extend([
        Constraint::Length(4),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Fill(1),
        Constraint::Length(6),
    ]);
    let header = Row::new(header.into_iter().map(|h| Cell::from(h.bold())));

    let table_rows: Vec<Row> = rows
        .iter()
        .map(|r| {
            let mut cells = vec![
                Cell::from(printable(&r.view.target).into_owned()),
                Cell::from(printable(&r.view.symbol).into_owned()),
            ];
            if show_addr {
                cells.push(Cell::from(address(app, r.view.addr)));
            }
            cells.extend([
                Cell::from(r.view.mode),
                Cell::from(Line::from(r.hits.to_string()).alignment(Alignment::Right)),
                Cell::from(Line::from(rate_text(r.rate)).alignment(Alignment::Right)),
                Cell::from(Span::styled(
                    // Right-aligned: the newest cell at the column's edge.
                    format!(
                        "{:>w$}",
                        sparkline(&app.history_cells(r.slot, history_w as usize).0),
                        w = history_w as usize
                    ),
                    Style::new().fg(ACCENT),
                )),
                Cell::from(
                    Line::from(r.dropped.to_string())
                        .alignment(Alignment::Right)
                        .style(if r.dropped > 0 {
                            Style::new().fg(Color::Red)
                        } else {
                            Style::new()
                        }),
                ),
            ]);
            Row::new(cells)
        })
        .collect();
    let focused = app.focus == Focus::Targets;
    let filter = app
        .filter
        .as_ref()
        .map(|f| format!(" · comm ~ {} · LOST: all comms", printable(f)))
        .unwrap_or_default();
    let table = Table::new(table_rows, widths)
        .header(header)
        .block(panel(
            format!(" targets · sort: {}{filter} ", app.sort.label()),
            focused,
        ))
        .row_highlight_style(if focused {
            Style::new()
                .bg(Color::DarkGray)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        })
        .highlight_symbol("›")
        .highlight_spacing(ratatui::widgets::HighlightSpacing::Always);
    let mut state =
        TableState::default().with_selected(rows.iter().position(|r| r.slot == app.selected));
    frame.render_stateful_widget(table, area, &mut state);
}

fn render_details(frame: &mut Frame, area: Rect, app: &App) {
    let title = match app.selected_target() {
        Some((v, _)) => format!(
            " {} · {} {} · {}/{} ",
            printable(&v.target),
            if v.kernel { "kernel" } else { "user" },
            v.mode,
            address(app, v.addr),
            v.len
        ),
        None => " details ".to_owned(),
    };
    // The hits a condition rejected, which the targets table's HITS leave
    // out, and the condition: first after the target, as the title may be
    // cut.
    let title = match app.selected_target() {
        Some((v, _)) if v.condition.is_some() => {
            let rejected = app
                .view
                .counters
                .get(app.selected)
                .map_or(0, |c| c.cond_rejected);
            let target = printable(&v.target);
            let rest = title.strip_prefix(&format!(" {target} ")).unwrap_or(&title);
            format!(
                " {target} · rejected {rejected} · if {} {rest}",
                printable(v.condition.as_deref().unwrap_or_default())
            )
        }
        _ => title,
    };
    // arm64's repeated traps (not hits, not lost: docs/arm64.md), when any.
    let retraps = app.view.counters.get(app.selected).map_or(0, |c| c.retraps);
    let title = if retraps > 0 {
        format!("{title}· re-traps {retraps} ")
    } else {
        title
    };
    let block = panel(title, app.focus == Focus::Details);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [tabs_area, body] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(inner);
    // The selected breakdown in brackets, so that it shows in text
    // captures (`e`) too, not only in colour.
    let mut tabs: Vec<Span> = Vec::new();
    for b in Breakdown::ALL {
        if !tabs.is_empty() {
            tabs.push(Span::raw(" "));
        }
        tabs.push(match b == app.breakdown {
            true => Span::styled(format!("[{}]", b.label()), Style::new().fg(ACCENT).bold()),
            false => Span::styled(b.label(), Style::new().dark_gray()),
        });
    }
    let tabs = Paragraph::new(Line::from(tabs));
    frame.render_widget(tabs, tabs_area);

    let Some((view, stats)) = app.selected_target() else {
        frame.render_widget(Paragraph::new("no targets").dark_gray(), body);
        return;
    };
    let rows = app.breakdown_rows();
    let total: u64 = rows.iter().map(|(n, _)| n).sum::<u64>().max(1);
    let mut lines: Vec<Line> = if rows.is_empty() {
        let why = match app.breakdown {
            Breakdown::Values if !view.data => {
                "execute target: no values (arguments are in the log)"
            }
            _ if stats.hits > 0 && app.hits(app.selected) == 0 => "no hits from matching comms",
            Breakdown::Stacks if stats.hits > 0 => "no stacks captured (--stack)",
            Breakdown::Values if stats.hits > 0 => "no values from matching comms",
            _ => "no hits yet",
        };
        vec![Line::from(why).dark_gray()]
    } else {
        match app.breakdown {
            Breakdown::Values => rows
                .iter()
                .map(|(_, text)| Line::from(printable(text).into_owned()))
                .collect(),
            Breakdown::Stacks => rows
                .iter()
                .flat_map(|(n, stack)| {
                    let stack = printable(stack);
                    let frames: Vec<&str> = stack.split(" ← ").collect();
                    let shown = frames.len().min(STACK_FRAMES);
                    let mut lines = vec![Line::from(vec![
                        Span::styled(format!("{n:>7} "), Style::new().fg(ACCENT)),
                        Span::raw(frames.first().copied().unwrap_or("?").to_owned()),
                    ])];
                    lines.extend(
                        frames[1..shown]
                            .iter()
                            .map(|f| Line::from(format!("        ← {f}"))),
                    );
                    if frames.len() > shown {
                        lines.push(
                            Line::from(format!("        ← … {} more", frames.len() - shown))
                                .dark_gray(),
                        );
                    }
                    lines
                })
                .collect(),
            _ => rows
                .iter()
                .map(|(n, label)| {
                    Line::from(vec![
                        Span::styled(format!("{n:>7} "), Style::new().fg(ACCENT)),
                        Span::styled(
                            format!("{:>5.1}% ", *n as f64 * 100.0 / total as f64),
                            Style::new().dark_gray(),
                        ),
                        Span::raw(printable(label).into_owned()),
                    ])
                })
                .collect(),
        }
    };
    // Counted from the kept hits only: say so above the rows.
    if let Some((counted, matching)) = app.breakdown_sample() {
        lines.insert(
            0,
            Line::from(format!(
                "filtered: the last {counted} of {matching} hits (older ones not kept)"
            ))
            .yellow(),
        );
    }
    let skip = match app.breakdown {
        // Scroll by stack, not by line.
        Breakdown::Stacks => lines
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                !l.spans
                    .first()
                    .is_some_and(|s| s.content.starts_with("        "))
            })
            .nth(app.details_scroll)
            .map_or(0, |(i, _)| i),
        _ => app.details_scroll,
    };
    frame.render_widget(
        Paragraph::new(lines.into_iter().skip(skip).collect::<Vec<_>>()),
        body,
    );
}

fn render_chart(frame: &mut Frame, area: Rect, app: &App) {
    let slot = app.selected;
    // The window grows with the run, up to CHART_SECONDS, so that a young
    // run is not a spike at the right edge.
    let (seconds, labels) = match app.elapsed_s() {
        e if e < 60.0 => (60, ["-60s", "-30s", "now"]),
        e if e < 120.0 => (120, ["-2m", "-1m", "now"]),
        _ => (CHART_SECONDS, ["-5m", "-2.5m", "now"]),
    };
    let history = app.history(slot, seconds);
    let max = history.iter().flatten().copied().max().unwrap_or(0);
    // Seconds older than a filter's kept hits are not drawn.
    let points: Vec<(f64, f64)> = history
        .iter()
        .enumerate()
        .filter_map(|(i, v)| Some((i as f64 - (seconds - 1) as f64, (*v)? as f64)))
        .collect();
    let name = app
        .targets
        .get(slot)
        .map_or(Cow::Borrowed(""), |t| printable(&t.target));
    let filter = app
        .filter
        .as_ref()
        .map(|f| format!(" ~ {}", printable(f)))
        .unwrap_or_default();
    let title = format!(
        " {name}{filter} · {}/s now · max {max}/s ",
        rate_text(app.rate(slot))
    );
    let mut block = panel(title, false);
    let unknown = history.iter().filter(|v| v.is_none()).count();
    if unknown > 0 {
        block = block.title_bottom(
            Line::from(format!(" filtered: last {}s kept ", seconds - unknown)).yellow(),
        );
    }
    let top = max.max(1) as f64 * 1.1;
    let chart = Chart::new(vec![
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(ACCENT))
            .data(&points),
    ])
    .block(block)
    .x_axis(
        Axis::default()
            .bounds([-((seconds - 1) as f64), 0.0])
            .labels(labels)
            .style(Style::new().dark_gray()),
    )
    .y_axis(
        Axis::default()
            .bounds([0.0, top])
            .labels(["0".to_owned(), max.to_string()])
            .style(Style::new().dark_gray()),
    );
    frame.render_widget(chart, area);
}

fn render_log(frame: &mut Frame, area: Rect, app: &App) {
    if app.show_output
        && let Some(output) = &app.output
    {
        render_output(frame, area, app, output);
        return;
    }
    let log = app.log();
    let height = area.height.saturating_sub(2) as usize;
    let end = log.len().saturating_sub(app.log_scroll);
    let start = end.saturating_sub(height);
    let scrolled = match app.log_scroll {
        0 => String::new(),
        n => format!(" · {n} back"),
    };
    let title = format!(" latest hits{scrolled} ");
    let lines: Vec<Line> = if log.is_empty() {
        let why = if app.view.recent.is_empty() {
            "waiting for hits…"
        } else {
            "no hits from matching comms"
        };
        vec![Line::from(why).dark_gray()]
    } else {
        let texts: Vec<String> = log[start..end]
            .iter()
            // `line` escapes control characters itself (once is enough:
            // twice would show `\\e` for ESC).
            .map(|h| h.line())
            .collect();
        // The comm column is right-aligned in 16: drop the blanks every
        // shown line starts with, so that arguments and values fit.
        let blank = texts
            .iter()
            .map(|t| t.len() - t.trim_start_matches(' ').len())
            .min()
            .unwrap_or(0);
        texts
            .into_iter()
            .map(|t| Line::from(t[blank..].to_owned()))
            .collect()
    };
    let mut block = panel(title, app.focus == Focus::Log);
    // Where the command's output went, and the key that shows it.
    if let Some(output) = &app.output {
        block = block.title_top(
            Line::from(format!(
                " {} output: {} (o) ",
                printable(&output.name),
                plural(output.tail.written(), "line", "lines")
            ))
            .right_aligned(),
        );
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The log panel after `o`: the last lines of the command's output that
/// fit, newest at the bottom.
fn render_output(frame: &mut Frame, area: Rect, app: &App, output: &CommandOutputView) {
    let tail = &output.tail;
    let height = area.height.saturating_sub(2) as usize;
    let end = tail.kept().saturating_sub(output.scroll);
    let start = end.saturating_sub(height);
    let name = printable(&output.name);
    let mut title = format!(
        " output of {name} · {}",
        plural(tail.written(), "line", "lines")
    );
    if tail.written() > tail.kept() as u64 {
        title.push_str(&format!(" · last {} kept", tail.kept()));
    }
    if output.scroll > 0 {
        title.push_str(&format!(" · {} back", output.scroll));
    }
    title.push(' ');
    let lines: Vec<Line> = if tail.kept() == 0 {
        let why = match tail.closed() {
            true => format!("{name} wrote nothing"),
            false => format!("{name} has written nothing yet"),
        };
        vec![Line::from(why).dark_gray()]
    } else {
        tail.lines()
            .skip(start)
            .take(end - start)
            .map(|l| Line::from(plain_line(l)))
            .collect()
    };
    let block =
        panel(title, app.focus == Focus::Log).title_top(Line::from(" o: hits ").right_aligned());
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// A line of the command's output as plain text for a panel: what follows
/// its last carriage return (a progress bar's latest state), without escape
/// sequences (colours) or other control characters, tabs expanded.
pub fn plain_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.split('\r').rfind(|s| !s.is_empty()).unwrap_or("");
    let mut out = String::with_capacity(text.len());
    let mut column = 0;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI: parameters up to a final byte in @..~.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC (a title, a link): up to BEL or ESC \.
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' {
                            break;
                        }
                        if c == '\x1b' {
                            chars.next();
                            break;
                        }
                    }
                }
                // nF (a character set): intermediates, then a final byte.
                Some(' '..='/') => {
                    for c in chars.by_ref() {
                        if !(' '..='/').contains(&c) {
                            break;
                        }
                    }
                }
                // Two-character sequences.
                _ => {}
            },
            '\t' => {
                let to = (column / 8 + 1) * 8;
                out.extend(std::iter::repeat_n(' ', to - column));
                column = to;
            }
            c if c.is_control() => {}
            c => {
                out.push(c);
                column += 1;
            }
        }
    }
    out
}

fn render_keys(frame: &mut Frame, area: Rect, app: &App) {
    let key = |k: &str| Span::styled(format!(" {k} "), Style::new().fg(Color::Black).bg(ACCENT));
    let line = if let Some(p) = &app.prompt {
        super::prompt::line(p, &app.targets, key(" "))
    } else if let Some(input) = &app.input {
        Line::from(vec![
            key("/"),
            Span::raw(format!(" filter comm: {}▏ ", printable(input))),
            Span::raw("Enter apply · Esc cancel").dark_gray(),
        ])
    } else {
        let mut spans = Vec::new();
        if let Some(message) = &app.message {
            spans.push(Span::styled(
                format!(" {} ", printable(message)),
                Style::new().fg(Color::Yellow).bold(),
            ));
        }
        // What went wrong stays in view, before the keys.
        let error = Style::new().fg(Color::Red).bold();
        if let Some(e) = app.ended.as_ref().and_then(|e| e.error.as_ref()) {
            spans.push(Span::styled(format!(" error: {} ", printable(e)), error));
        }
        for (name, failed) in app.outputs() {
            if let Some(e) = failed {
                spans.push(Span::styled(
                    format!(" {}: {} ", printable(name), printable(e)),
                    error,
                ));
            }
        }
        let pause = if app.paused { "resume" } else { "pause" };
        for (k, what) in [
            ("?", "help".to_owned()),
            ("q", "quit".to_owned()),
            ("p", pause.to_owned()),
            ("c", "clear".to_owned()),
            ("s", format!("sort:{}", app.sort.label())),
            ("/", "filter".to_owned()),
            ("Tab", "focus".to_owned()),
            ("e", "snapshot".to_owned()),
        ] {
            spans.push(key(k));
            spans.push(Span::raw(format!("{what} ")));
        }
        Line::from(spans)
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// The text of a rendered buffer, one line per row, trailing blanks cut:
/// what `e` writes and what the snapshot tests compare.
pub fn buffer_text(buffer: &Buffer) -> String {
    let area = buffer.area;
    let mut out = String::new();
    for y in area.top()..area.bottom() {
        let mut line = String::new();
        for x in area.left()..area.right() {
            if let Some(cell) = buffer.cell((x, y))
                && !cell.skip
            {
                line.push_str(cell.symbol());
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
