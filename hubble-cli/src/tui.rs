//! `hubble tui` and `hubble observe --tui`: a live flow table in the terminal, fed by
//! a `GetFlows` follow stream, with a filter bar that takes `hubble observe`'s flags.
//!
//! Modules: [`filter`] (filter line to request), [`row`] (column texts), [`state`]
//! (bounded rows, pause, selection, rates), [`feed`] (server tasks), [`view`]
//! (drawing), [`terminal`] (raw mode and alternate screen, restored on exit and
//! panic).

use std::time::{Duration, Instant};

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use proto::observer::GetFlowsRequest;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::cli::ObserveArgs;
use crate::cmd::Context;
use crate::conn::{self, ConnOptions, HubbleChannel};

pub mod feed;
pub mod filter;
pub mod row;
pub mod state;
pub mod terminal;
pub mod view;

use feed::{Event, Feed};
use row::Row;
use state::State;

/// Shortest time between two redraws.
pub const FRAME_INTERVAL: Duration = Duration::from_millis(100);

/// Key events queued between the reader thread and the view.
const KEY_CAPACITY: usize = 256;

/// What a key asks the loop to do beyond changing the state.
#[derive(Debug, PartialEq)]
pub enum Action {
    None,
    Quit,
    /// Restart the stream with this request (the filter line is already stored).
    Restart(Box<GetFlowsRequest>),
}

/// Applies a key to the state.
pub fn handle_key(state: &mut State, key: KeyEvent, ctx: &Context) -> Action {
    if key.kind == KeyEventKind::Release {
        return Action::None;
    }
    if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
        return Action::Quit;
    }
    if let Some(line) = state.editing.as_mut() {
        match key.code {
            KeyCode::Esc => state.editing = None,
            KeyCode::Backspace => {
                line.pop();
            }
            KeyCode::Char(c) => line.push(c),
            KeyCode::Enter => {
                let line = state.editing.take().unwrap_or_default();
                match filter::parse_filter(&line, ctx) {
                    Ok(request) => {
                        state.filter = line;
                        state.filter_error = None;
                        return Action::Restart(Box::new(request));
                    }
                    Err(e) => state.filter_error = Some(e),
                }
            }
            _ => {}
        }
        return Action::None;
    }
    let page = 10;
    match key.code {
        KeyCode::Char('q') => return Action::Quit,
        KeyCode::Char('/') => state.editing = Some(state.filter.clone()),
        KeyCode::Char(' ') => state.toggle_pause(),
        KeyCode::Char('?') => state.help = !state.help,
        KeyCode::Esc => state.help = false,
        KeyCode::Enter => state.detail = !state.detail,
        KeyCode::Up => state.scroll(-1),
        KeyCode::Down => state.scroll(1),
        KeyCode::PageUp => state.scroll(-page),
        KeyCode::PageDown => state.scroll(page),
        KeyCode::Home => state.home(),
        KeyCode::End => state.end(),
        _ => {}
    }
    Action::None
}

/// Applies one event from the server tasks; events of an older stream are ignored.
pub fn apply_event(state: &mut State, generation: u64, tagged: u64, event: Event) {
    match event {
        Event::Status {
            connected,
            unavailable,
        } => {
            state.status_nodes = Some((connected, unavailable));
        }
        Event::Error(e) if tagged == 0 => state.server_error = Some(e),
        _ if tagged != generation => {}
        Event::Flow(f) => {
            if !f.node_name.is_empty() && !state.connected_nodes.contains(&f.node_name) {
                state.connected_nodes.insert(f.node_name.clone());
            }
            state.push(Row::new(f));
        }
        Event::Lost(n) => state.lost_events += n,
        Event::Nodes { names, connected } => {
            for name in names {
                if connected {
                    state.connected_nodes.insert(name);
                } else {
                    state.connected_nodes.remove(&name);
                }
            }
        }
        Event::Error(e) => state.server_error = Some(e),
    }
}

/// Applies every queued event and takes over the count of flows the queue discarded;
/// returns whether the state changed.
pub fn drain_events(
    state: &mut State,
    events: &mut mpsc::Receiver<(u64, Event)>,
    feed: &Feed,
    generation: u64,
) -> bool {
    let mut changed = false;
    while let Ok((tagged, event)) = events.try_recv() {
        apply_event(state, generation, tagged, event);
        changed = true;
    }
    let discarded = feed.discarded.load(std::sync::atomic::Ordering::Relaxed);
    if discarded != state.discarded {
        state.discarded = discarded;
        changed = true;
    }
    changed
}

/// The running stream and its generation (status events use generation 0).
struct Stream {
    generation: u64,
    task: JoinHandle<()>,
}

impl Stream {
    fn restart(&mut self, feed: &Feed, channel: &HubbleChannel, request: GetFlowsRequest) {
        self.task.abort();
        self.generation += 1;
        self.task = feed.spawn_flows(channel.clone(), request, self.generation);
    }
}

/// Runs the live view until `q` or Ctrl-C.
pub async fn run(args: &ObserveArgs, ctx: &mut Context) -> anyhow::Result<()> {
    let request = filter::request_from_args(args, ctx).map_err(anyhow::Error::msg)?;
    let opts = ConnOptions::from_settings(&ctx.settings)?;
    let channel = conn::connect(&opts).await?;
    let (feed, mut events) = Feed::new();
    let mut stream = Stream {
        generation: 1,
        task: feed.spawn_flows(channel.clone(), request, 1),
    };
    let status = feed.spawn_status(channel.clone(), opts.request_timeout);
    let mut state = State::new(state::ROW_CAPACITY, Instant::now());
    state.filter = filter::line_from_args(args);

    let mut term = terminal::Guard::enter()?;
    let (key_tx, mut keys) = mpsc::channel(KEY_CAPACITY);
    terminal::spawn_key_reader(key_tx);
    let mut frames = tokio::time::interval(FRAME_INTERVAL);
    frames.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dirty = true;
    let result = loop {
        tokio::select! {
            key = keys.recv() => match key {
                Some(Ok(TermEvent::Key(key))) => {
                    match handle_key(&mut state, key, ctx) {
                        Action::Quit => break Ok(()),
                        Action::Restart(request) => {
                            state.clear_rows();
                            state.server_error = None;
                            stream.restart(&feed, &channel, *request);
                        }
                        Action::None => {}
                    }
                    dirty = true;
                }
                Some(Ok(_)) => dirty = true,
                Some(Err(e)) => break Err(anyhow::Error::new(e).context("reading the terminal")),
                None => break Ok(()),
            },
            _ = frames.tick() => {
                dirty |= drain_events(&mut state, &mut events, &feed, stream.generation);
                state.tick(Instant::now());
                if dirty {
                    if let Err(e) = term.draw(&state) {
                        break Err(e.into());
                    }
                    dirty = false;
                }
            }
        }
    };
    stream.task.abort();
    status.abort();
    drop(term);
    let discarded = feed.discarded.load(std::sync::atomic::Ordering::Relaxed);
    if discarded > 0 {
        eprintln!("{discarded} flows were discarded because the view could not keep up");
    }
    result
}
