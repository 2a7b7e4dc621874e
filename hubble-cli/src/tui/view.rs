//! Drawing the state: header with rates and server facts, the flow table, the
//! detail pane, the filter bar and the key help.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, Paragraph, Row as TableRow, Sparkline, Table, TableState, Wrap,
};
use ratatui::Frame;

use super::row::{Row, VerdictClass};
use super::state::State;

/// The key help shown by `?`.
pub const HELP: &[(&str, &str)] = &[
    (
        "/",
        "edit the filter (hubble observe flags), Enter applies, Esc cancels",
    ),
    (
        "space",
        "pause / resume the view (the stream keeps being read)",
    ),
    ("Up/Down", "select a row"),
    ("PgUp/PgDn", "scroll a page"),
    ("Home/End", "oldest row / follow the newest"),
    ("Enter", "show / hide the selected flow as JSON"),
    ("?", "show / hide this help"),
    ("q, Ctrl-C", "quit"),
];

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, state: &State) {
    let [header, body, bar] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, header, state);
    if state.detail {
        let [table, detail] =
            Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(body);
        draw_table(frame, table, state);
        draw_detail(frame, detail, state);
    } else {
        draw_table(frame, body, state);
    }
    draw_bar(frame, bar, state);
    if state.help {
        draw_help(frame, frame.area());
    }
}

fn draw_header(frame: &mut Frame, area: Rect, state: &State) {
    let [text, sparks] =
        Layout::horizontal([Constraint::Min(30), Constraint::Percentage(40)]).areas(area);
    let nodes = match state.status_nodes {
        Some((up, down)) => format!("{up} connected, {down} unavailable"),
        None => format!("{} seen", state.connected_nodes.len()),
    };
    let flows_now = state.flows_rate.back().copied().unwrap_or(0);
    let drops_now = state.drops_rate.back().copied().unwrap_or(0);
    let mut first = vec![Span::styled(
        "Hubble ",
        Style::new().add_modifier(Modifier::BOLD),
    )];
    if state.paused {
        first.push(Span::styled(
            format!("PAUSED (+{} new) ", state.new_while_paused),
            Style::new().fg(Color::Black).bg(Color::Yellow),
        ));
    }
    first.push(Span::raw(format!(
        "flows/s {flows_now} drops/s {drops_now}"
    )));
    let lines = vec![
        Line::from(first),
        Line::raw(format!("nodes: {nodes}  lost: {}", state.lost_events)),
        Line::raw(format!(
            "rows {} shown, {} received, {} evicted",
            state.rows().len(),
            state.received,
            state.evicted
        )),
    ];
    frame.render_widget(Paragraph::new(lines), text);
    let [flows, drops] =
        Layout::vertical([Constraint::Length(2), Constraint::Length(1)]).areas(sparks);
    let data = |rates: &std::collections::VecDeque<u64>, width: u16| -> Vec<u64> {
        let skip = rates.len().saturating_sub(width as usize);
        rates.iter().skip(skip).copied().collect()
    };
    frame.render_widget(
        Sparkline::default()
            .data(data(&state.flows_rate, flows.width))
            .style(Style::new().fg(Color::Green)),
        flows,
    );
    frame.render_widget(
        Sparkline::default()
            .data(data(&state.drops_rate, drops.width))
            .style(Style::new().fg(Color::Red)),
        drops,
    );
}

/// Which columns fit: every width below the full one drops summary, node and time,
/// in that order.
fn columns(width: u16) -> (bool, bool, bool) {
    (width >= 60, width >= 110, width >= 90)
}

fn verdict_style(class: VerdictClass) -> Style {
    match class {
        VerdictClass::Forwarded => Style::new().fg(Color::Green),
        VerdictClass::Dropped => Style::new().fg(Color::Red),
        VerdictClass::Audit => Style::new().fg(Color::Yellow),
        VerdictClass::Other => Style::new(),
    }
}

fn draw_table(frame: &mut Frame, area: Rect, state: &State) {
    let (time, node, summary) = columns(area.width);
    let mut header = Vec::new();
    let mut widths = Vec::new();
    if time {
        header.push("TIME");
        widths.push(Constraint::Length(19));
    }
    if node {
        header.push("NODE");
        widths.push(Constraint::Max(16));
    }
    header.extend(["SOURCE", "DESTINATION", "TYPE", "VERDICT"]);
    widths.extend([
        Constraint::Fill(2),
        Constraint::Fill(2),
        Constraint::Max(14),
        Constraint::Length(9),
    ]);
    if summary {
        header.push("SUMMARY");
        widths.push(Constraint::Fill(2));
    }
    let visible = area.height.saturating_sub(1) as usize;
    let rows = state.rows();
    let selected = state.selected.unwrap_or(rows.len().saturating_sub(1));
    let start = if rows.len() <= visible {
        0
    } else {
        selected
            .saturating_sub(visible.saturating_sub(1))
            .min(rows.len() - visible)
    };
    let shown = rows.iter().skip(start).take(visible).map(|r: &Row| {
        let mut cells = Vec::new();
        if time {
            cells.push(Cell::from(r.time.as_str()));
        }
        if node {
            cells.push(Cell::from(r.node.as_str()));
        }
        cells.push(Cell::from(r.source.as_str()));
        cells.push(Cell::from(r.destination.as_str()));
        cells.push(Cell::from(r.kind.as_str()));
        cells.push(Cell::from(r.verdict.as_str()).style(verdict_style(r.class)));
        if summary {
            cells.push(Cell::from(r.summary.as_str()));
        }
        TableRow::new(cells)
    });
    let table = Table::new(shown, widths)
        .header(TableRow::new(header).style(Style::new().add_modifier(Modifier::BOLD)))
        .column_spacing(1)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut table_state = TableState::default();
    if state.selected.is_some() {
        table_state.select(Some(selected - start));
    }
    frame.render_stateful_widget(table, area, &mut table_state);
}

fn draw_detail(frame: &mut Frame, area: Rect, state: &State) {
    let text = state
        .selected_row()
        .map_or_else(|| "no flow selected".to_string(), Row::json);
    let pane = Paragraph::new(text)
        .block(Block::new().borders(Borders::TOP).title("flow"))
        .wrap(Wrap { trim: false });
    frame.render_widget(pane, area);
}

fn draw_bar(frame: &mut Frame, area: Rect, state: &State) {
    let line = if let Some(editing) = &state.editing {
        Line::from(vec![
            Span::styled("filter: ", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(editing.as_str()),
            Span::styled(" ", Style::new().add_modifier(Modifier::REVERSED)),
        ])
    } else if let Some(err) = &state.filter_error {
        Line::styled(
            format!("invalid filter: {err}"),
            Style::new().fg(Color::Red),
        )
    } else if let Some(err) = &state.server_error {
        Line::styled(err.as_str(), Style::new().fg(Color::Red))
    } else {
        let filter = if state.filter.is_empty() {
            "(none)"
        } else {
            state.filter.as_str()
        };
        Line::raw(format!(
            "filter: {filter}   / filter  space pause  ? help  q quit"
        ))
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn draw_help(frame: &mut Frame, area: Rect) {
    let width = area.width.min(76);
    let height = (HELP.len() as u16 + 2).min(area.height);
    let popup = Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    );
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(key, what)| Line::raw(format!("{key:>10}  {what}")))
        .collect();
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title("keys")),
        popup,
    );
}
