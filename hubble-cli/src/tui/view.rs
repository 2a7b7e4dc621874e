//! Drawing the state: header with rates and server facts, the flow table, the
//! detail pane, the filter bar and the key help.

use std::borrow::Cow;

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
        Line::raw(format!("nodes: {nodes}  lost: {}", state.lost())),
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

/// Width of the clock (`16:01:42.000`): the time shown until the table has room for
/// the date as well.
const CLOCK_WIDTH: u16 = 12;
/// Width of the whole time (`Jul 25 16:01:42.000`).
const DATE_TIME_WIDTH: u16 = 19;
const NODE_WIDTH: u16 = 16;
/// Fits `to-endpoint`, `from-endpoint`, `Policy denied`.
const KIND_WIDTH: u16 = 14;
/// Fits every verdict (`REDIRECTED`, `TRANSLATED`).
const VERDICT_WIDTH: u16 = 10;
const SUMMARY_MIN: u16 = 20;
/// Optional columns are added only while source and destination keep this much
/// (`default/deathstar-1:80` and `kube-system/coredns:53` fit).
const HOST_WANTED: u16 = 26;
/// With a summary shown, source and destination get at most this; the summary the rest.
const HOST_MAX: u16 = 40;
/// Below this much for source and destination each, the time is left out...
const HOST_WITH_TIME: u16 = 16;
/// ... and below this, the type.
const HOST_WITH_KIND: u16 = 12;

/// Width of each column of the table; 0 hides a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    pub time: u16,
    pub node: u16,
    pub source: u16,
    pub destination: u16,
    pub kind: u16,
    pub verdict: u16,
    pub summary: u16,
}

impl Columns {
    /// Width left to source and destination together, with one blank between columns.
    fn host_room(&self, width: u16) -> u16 {
        let others = [self.time, self.node, self.kind, self.verdict, self.summary];
        let shown = others.iter().filter(|w| **w > 0).count() as u16 + 2;
        width.saturating_sub(others.iter().sum::<u16>() + shown - 1)
    }
}

/// The columns for a table `width` wide. Source, destination and verdict are always
/// shown; time (the clock) and type unless the terminal is too narrow for source and
/// destination; summary, node and the date are added in that order while source and
/// destination keep [`HOST_WANTED`] columns each.
pub fn columns(width: u16) -> Columns {
    let mut c = Columns {
        time: CLOCK_WIDTH,
        node: 0,
        source: 0,
        destination: 0,
        kind: KIND_WIDTH,
        verdict: VERDICT_WIDTH,
        summary: 0,
    };
    // On a narrow terminal the time goes first, then the type.
    if c.host_room(width) / 2 < HOST_WITH_TIME {
        c.time = 0;
    }
    if c.host_room(width) / 2 < HOST_WITH_KIND {
        c.kind = 0;
    }
    let optional: [fn(&mut Columns); 3] = [
        |c| c.summary = SUMMARY_MIN,
        |c| c.node = NODE_WIDTH,
        |c| {
            if c.time > 0 {
                c.time = DATE_TIME_WIDTH;
            }
        },
    ];
    for add in optional {
        let mut wider = c;
        add(&mut wider);
        if wider != c && wider.host_room(width) / 2 >= HOST_WANTED {
            c = wider;
        }
    }
    let room = c.host_room(width);
    if c.summary > 0 {
        let host = (room / 2).min(HOST_MAX);
        c.summary += room - 2 * host;
        (c.source, c.destination) = (host, host);
    } else {
        c.source = room / 2;
        c.destination = room - c.source;
    }
    c
}

/// `text` cut to `width` characters, the cut marked with `…` at the end.
pub fn fit_end(text: &str, width: u16) -> Cow<'_, str> {
    let width = usize::from(width);
    if text.chars().count() <= width {
        return Cow::Borrowed(text);
    }
    if width == 0 {
        return Cow::Borrowed("");
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    Cow::Owned(out)
}

/// `text` cut to `width` characters in the middle (more of the start kept).
fn cut_middle(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n <= width {
        return text.to_string();
    }
    let kept = width.saturating_sub(1);
    let head = (kept * 2).div_ceil(3);
    let tail = kept - head;
    let mut out: String = text.chars().take(head).collect();
    out.push('…');
    out.extend(text.chars().skip(n - tail));
    out
}

/// Splits `host:port` (or `[ipv6]:port`) into the host and `:port`; an IPv6 address
/// without brackets has no port.
fn split_port(text: &str) -> Option<(&str, &str)> {
    let at = if text.starts_with('[') {
        text.rfind("]:")? + 1
    } else {
        let at = text.find(':')?;
        if text[at + 1..].contains(':') {
            return None;
        }
        at
    };
    let port = &text[at + 1..];
    (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then(|| text.split_at(at))
}

/// A source or destination (`namespace/pod:port`, `ip:port`, `[ipv6]:port`, DNS
/// names) fitted into `width` characters, never cut silently: the port stays whole,
/// the namespace is shortened first (`defa…/deathstar-1:80`), then the middle of the
/// name, and every cut shows as `…`.
pub fn fit_host(text: &str, width: u16) -> Cow<'_, str> {
    let n = text.chars().count();
    if n <= usize::from(width) {
        return Cow::Borrowed(text);
    }
    let (host, port) = split_port(text).unwrap_or((text, ""));
    let port_len = port.chars().count();
    let width = usize::from(width);
    if width < port_len + 2 {
        if !port.is_empty() && width == port_len + 1 {
            return Cow::Owned(format!("…{port}"));
        }
        return fit_end(text, width as u16);
    }
    let room = width - port_len;
    let short = match host.rsplit_once('/') {
        Some((namespace, name)) if name.chars().count() + 2 <= room => {
            let keep = room - name.chars().count() - 2;
            let namespace: String = namespace.chars().take(keep).collect();
            format!("{namespace}…/{name}")
        }
        Some((_, name)) if room >= 8 => format!("…/{}", cut_middle(name, room - 2)),
        _ => cut_middle(host, room),
    };
    Cow::Owned(short + port)
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
    let c = columns(area.width);
    let named = [
        ("TIME", c.time),
        ("NODE", c.node),
        ("SOURCE", c.source),
        ("DESTINATION", c.destination),
        ("TYPE", c.kind),
        ("VERDICT", c.verdict),
        ("SUMMARY", c.summary),
    ];
    let header: Vec<&str> = named
        .iter()
        .filter(|(_, w)| *w > 0)
        .map(|(n, _)| *n)
        .collect();
    let widths: Vec<Constraint> = named
        .iter()
        .filter(|(_, w)| *w > 0)
        .map(|(_, w)| Constraint::Length(*w))
        .collect();
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
        if c.time == CLOCK_WIDTH {
            let clock = r.time.rsplit(' ').next().unwrap_or_default();
            cells.push(Cell::from(fit_end(clock, c.time)));
        } else if c.time > 0 {
            cells.push(Cell::from(fit_end(&r.time, c.time)));
        }
        if c.node > 0 {
            cells.push(Cell::from(fit_end(&r.node, c.node)));
        }
        cells.push(Cell::from(fit_host(&r.source, c.source)));
        cells.push(Cell::from(fit_host(&r.destination, c.destination)));
        cells.push(Cell::from(fit_end(&r.kind, c.kind)));
        cells.push(Cell::from(fit_end(&r.verdict, c.verdict)).style(verdict_style(r.class)));
        if c.summary > 0 {
            cells.push(Cell::from(fit_end(&r.summary, c.summary)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_keep_their_port_and_mark_every_cut() {
        let cases = [
            ("default/xwing:36486", 19, "default/xwing:36486"),
            ("default/xwing:36486", 17, "defa…/xwing:36486"),
            ("default/deathstar-1:80", 20, "defa…/deathstar-1:80"),
            ("default/deathstar-1:80", 17, "d…/deathstar-1:80"),
            ("default/deathstar-1:80", 16, "…/deathstar-1:80"),
            ("default/deathstar-1:80", 12, "…/deat…-1:80"),
            (
                "kube-system/coredns-5d78c9869d-abcde:53",
                20,
                "…/coredns-5d…bcde:53",
            ),
            ("10.244.1.21:36486", 12, "10.2…1:36486"),
            ("[fd00:200:1::12]:36486", 16, "[fd00:…12]:36486"),
            ("fd00:200:1::12", 10, "fd00:2…:12"),
            ("default/xwing", 10, "def…/xwing"),
            ("default/xwing:36486", 7, "…:36486"),
            ("default/xwing:36486", 5, "defa…"),
            ("default/xwing:36486", 0, ""),
        ];
        for (text, width, want) in cases {
            assert_eq!(fit_host(text, width), want, "{text} in {width}");
        }
        let text = "kube-system/coredns-5d78c9869d-abcde:53";
        for width in 0..45u16 {
            let got = fit_host(text, width);
            assert!(
                got.chars().count() <= usize::from(width),
                "{got} in {width}"
            );
            if width > 0 && got != text {
                assert!(got.contains('…'), "{got} in {width}");
            }
            if width >= 5 {
                assert!(got.ends_with(":53"), "{got} in {width}");
            }
        }
    }

    #[test]
    fn other_cells_are_cut_with_a_marker() {
        assert_eq!(fit_end("to-endpoint", 14), "to-endpoint");
        assert_eq!(
            fit_end("policy-verdict:L3-L4 INGRESS", 14),
            "policy-verdic…"
        );
        assert_eq!(fit_end("x", 0), "");
    }

    #[test]
    fn columns_fill_the_width_and_grow_by_importance() {
        for width in [20u16, 40, 60, 72, 80, 100, 120, 140, 200] {
            let c = columns(width);
            let all = [
                c.time,
                c.node,
                c.source,
                c.destination,
                c.kind,
                c.verdict,
                c.summary,
            ];
            let shown = all.iter().filter(|w| **w > 0).count() as u16;
            assert_eq!(all.iter().sum::<u16>() + shown - 1, width, "{width}: {c:?}");
        }
        // 80 columns: clock, hosts of 20, type, verdict; no node, no summary.
        let c = columns(80);
        assert_eq!(
            (
                c.time,
                c.node,
                c.source,
                c.destination,
                c.kind,
                c.verdict,
                c.summary
            ),
            (12, 0, 20, 20, 14, 10, 0)
        );
        let c = columns(120);
        assert!(c.summary >= SUMMARY_MIN && c.node == 0, "{c:?}");
        let c = columns(200);
        assert_eq!((c.time, c.node, c.source), (19, 16, HOST_MAX), "{c:?}");
        let c = columns(60);
        assert_eq!((c.time, c.kind, c.source), (0, 14, 16), "{c:?}");
        let c = columns(40);
        assert_eq!((c.time, c.kind, c.source), (0, 0, 14), "{c:?}");
    }

    fn screen(state: &State) -> Vec<String> {
        use ratatui::backend::TestBackend;
        let mut terminal = ratatui::Terminal::new(TestBackend::new(80, 24)).unwrap();
        terminal.draw(|f| draw(f, state)).unwrap();
        let buffer = terminal.backend().buffer();
        (0..24)
            .map(|y| (0..80).map(|x| buffer[(x, y)].symbol()).collect::<String>())
            .collect()
    }

    #[test]
    fn an_80_column_row_keeps_ports_and_the_filter_bar_shows_the_flags() {
        use proto::flow::{self, layer4, Flow};
        let endpoint = |pod: &str| flow::Endpoint {
            namespace: "default".into(),
            pod_name: pod.into(),
            ..Default::default()
        };
        let flow = Flow {
            time: Some(pbjson_types::Timestamp {
                seconds: 1_721_923_302,
                nanos: 0,
            }),
            verdict: flow::Verdict::Forwarded as i32,
            ip: Some(flow::Ip {
                source: "10.200.1.14".into(),
                destination: "10.200.1.11".into(),
                ..Default::default()
            }),
            l4: Some(flow::Layer4 {
                protocol: Some(layer4::Protocol::Tcp(flow::Tcp {
                    source_port: 36486,
                    destination_port: 80,
                    flags: None,
                })),
            }),
            source: Some(endpoint("xwing")),
            destination: Some(endpoint("deathstar-1")),
            event_type: Some(flow::CiliumEventType {
                r#type: 4,
                sub_type: 0,
            }),
            ..Default::default()
        };
        let mut state = State::new(10, std::time::Instant::now());
        state.push(Row::new(Box::new(flow)));
        state.filter = "--from-pod default/xwing --verdict DROPPED".into();
        let lines = screen(&state);
        let row = lines
            .iter()
            .find(|l| l.contains("xwing"))
            .unwrap_or_else(|| panic!("{lines:#?}"));
        assert!(row.contains(" default/xwing:36486 "), "{row}");
        assert!(row.contains(" defa…/deathstar-1:80 "), "{row}");
        assert!(row.trim_end().ends_with("FORWARDED"), "{row}");
        let bar = &lines[23];
        assert!(
            bar.starts_with("filter: --from-pod default/xwing --verdict DROPPED "),
            "{bar}"
        );
    }
}
