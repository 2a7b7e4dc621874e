//! What the live view shows, apart from the terminal: the bounded list of rows, the
//! rows held back while paused, the selection, per-second rates and server facts.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::row::{Row, VerdictClass};

/// Rows kept for display. At thousands of flows per second this is a few seconds of
/// traffic; older rows are dropped (and counted in [`State::evicted`]) so memory
/// stays bounded.
pub const ROW_CAPACITY: usize = 10_000;

/// Seconds of history behind the flows/s and drops/s sparklines.
pub const RATE_WINDOW_SECS: usize = 60;

/// The view's state, changed by received events, keys and the clock.
#[derive(Debug)]
pub struct State {
    capacity: usize,
    rows: VecDeque<Row>,
    /// Rows received while paused, shown on resume (bounded like `rows`).
    held: VecDeque<Row>,
    /// Rows dropped from `rows` or `held` because they were full.
    pub evicted: u64,
    pub paused: bool,
    /// Rows received since the view was paused.
    pub new_while_paused: u64,
    /// Selected row (index into the rows), `None` to follow the newest one.
    pub selected: Option<usize>,
    pub detail: bool,
    pub help: bool,
    /// The filter line in effect and the one being edited (`Some` while editing).
    pub filter: String,
    pub editing: Option<String>,
    /// Why the last filter was rejected, shown in red under the table.
    pub filter_error: Option<String>,
    /// Last stream or status error from the server.
    pub server_error: Option<String>,
    pub received: u64,
    /// Flows the server reported lost (its ring overwritten before they were sent,
    /// or its own queues full).
    pub lost_events: u64,
    /// Flows discarded by the view's own queue ([`super::feed::Feed::discarded`]).
    pub discarded: u64,
    pub connected_nodes: BTreeSet<String>,
    pub status_nodes: Option<(u32, u32)>,
    pub flows_rate: VecDeque<u64>,
    pub drops_rate: VecDeque<u64>,
    current: (u64, u64),
    second_start: Instant,
}

impl State {
    /// An empty state keeping at most `capacity` rows.
    pub fn new(capacity: usize, now: Instant) -> Self {
        Self {
            capacity: capacity.max(1),
            rows: VecDeque::new(),
            held: VecDeque::new(),
            evicted: 0,
            paused: false,
            new_while_paused: 0,
            selected: None,
            detail: false,
            help: false,
            filter: String::new(),
            editing: None,
            filter_error: None,
            server_error: None,
            received: 0,
            lost_events: 0,
            discarded: 0,
            connected_nodes: BTreeSet::new(),
            status_nodes: None,
            flows_rate: VecDeque::with_capacity(RATE_WINDOW_SECS),
            drops_rate: VecDeque::with_capacity(RATE_WINDOW_SECS),
            current: (0, 0),
            second_start: now,
        }
    }

    /// Every flow lost on the way to the view: reported by the server or discarded
    /// by the view's queue. Rows evicted from the table are not lost (they were shown).
    pub fn lost(&self) -> u64 {
        self.lost_events + self.discarded
    }

    /// The rows on display, oldest first.
    pub fn rows(&self) -> &VecDeque<Row> {
        &self.rows
    }

    /// Adds a received row: to the view, or to the held rows while paused.
    pub fn push(&mut self, row: Row) {
        self.received += 1;
        self.current.0 += 1;
        if row.class == VerdictClass::Dropped {
            self.current.1 += 1;
        }
        if self.paused {
            self.new_while_paused += 1;
            if self.held.len() == self.capacity {
                self.held.pop_front();
                self.evicted += 1;
            }
            self.held.push_back(row);
            return;
        }
        self.append(row);
    }

    fn append(&mut self, row: Row) {
        if self.rows.len() == self.capacity {
            self.rows.pop_front();
            self.evicted += 1;
            self.selected = self.selected.map(|s| s.saturating_sub(1));
        }
        self.rows.push_back(row);
    }

    /// Pauses or resumes; resuming shows the rows held meanwhile.
    pub fn toggle_pause(&mut self) {
        if self.paused {
            self.paused = false;
            self.new_while_paused = 0;
            while let Some(row) = self.held.pop_front() {
                self.append(row);
            }
        } else {
            self.paused = true;
        }
    }

    /// Forgets all rows, for a stream restarted with a new filter.
    pub fn clear_rows(&mut self) {
        self.rows.clear();
        self.held.clear();
        self.selected = None;
        self.new_while_paused = 0;
    }

    /// Moves the selection by `delta` rows; moving past the newest row follows again.
    pub fn scroll(&mut self, delta: isize) {
        let Some(last) = self.rows.len().checked_sub(1) else {
            self.selected = None;
            return;
        };
        let from = self.selected.unwrap_or(last) as isize;
        let to = from + delta;
        self.selected = if to > last as isize {
            None
        } else {
            Some(to.max(0) as usize)
        };
    }

    /// Selects the oldest row.
    pub fn home(&mut self) {
        self.selected = (!self.rows.is_empty()).then_some(0);
    }

    /// Follows the newest row.
    pub fn end(&mut self) {
        self.selected = None;
    }

    /// The selected row, or the newest one when following.
    pub fn selected_row(&self) -> Option<&Row> {
        match self.selected {
            Some(i) => self.rows.get(i),
            None => self.rows.back(),
        }
    }

    /// Closes the current second of the rates when it is over.
    pub fn tick(&mut self, now: Instant) {
        while now.duration_since(self.second_start) >= Duration::from_secs(1) {
            for (rates, value) in [
                (&mut self.flows_rate, self.current.0),
                (&mut self.drops_rate, self.current.1),
            ] {
                if rates.len() == RATE_WINDOW_SECS {
                    rates.pop_front();
                }
                rates.push_back(value);
            }
            self.current = (0, 0);
            self.second_start += Duration::from_secs(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::flow::{Flow, Verdict};

    fn row(i: u32, verdict: Verdict) -> Row {
        Row::new(Box::new(Flow {
            node_name: format!("node-{i}"),
            verdict: verdict as i32,
            ..Default::default()
        }))
    }

    #[test]
    fn rows_are_bounded_and_evictions_counted() {
        let mut s = State::new(3, Instant::now());
        for i in 0..5 {
            s.push(row(i, Verdict::Forwarded));
        }
        assert_eq!(s.rows().len(), 3);
        assert_eq!(s.evicted, 2);
        assert_eq!(s.rows()[0].node, "node-2");
        assert_eq!(s.received, 5);
    }

    #[test]
    fn pause_freezes_the_view_and_counts_new_rows() {
        let mut s = State::new(3, Instant::now());
        s.push(row(0, Verdict::Forwarded));
        s.toggle_pause();
        for i in 1..6 {
            s.push(row(i, Verdict::Dropped));
        }
        assert_eq!(s.rows().len(), 1);
        assert_eq!(s.new_while_paused, 5);
        assert_eq!(s.evicted, 2, "held rows are bounded too");
        s.toggle_pause();
        assert_eq!(s.new_while_paused, 0);
        let nodes: Vec<_> = s.rows().iter().map(|r| r.node.as_str()).collect();
        assert_eq!(nodes, ["node-3", "node-4", "node-5"]);
        assert_eq!(s.evicted, 3);
    }

    #[test]
    fn scrolling_and_selection_follow_evictions() {
        let mut s = State::new(3, Instant::now());
        for i in 0..3 {
            s.push(row(i, Verdict::Forwarded));
        }
        assert_eq!(s.selected_row().map(|r| r.node.as_str()), Some("node-2"));
        s.scroll(-1);
        assert_eq!(s.selected, Some(1));
        s.push(row(3, Verdict::Forwarded));
        assert_eq!(s.selected_row().map(|r| r.node.as_str()), Some("node-1"));
        s.scroll(10);
        assert_eq!(s.selected, None);
        s.home();
        assert_eq!(s.selected, Some(0));
        s.scroll(-5);
        assert_eq!(s.selected, Some(0));
    }

    #[test]
    fn rates_roll_over_each_second() {
        let start = Instant::now();
        let mut s = State::new(10, start);
        s.push(row(0, Verdict::Dropped));
        s.push(row(1, Verdict::Forwarded));
        s.tick(start + Duration::from_millis(1500));
        s.push(row(2, Verdict::Forwarded));
        s.tick(start + Duration::from_millis(3100));
        assert_eq!(Vec::from(s.flows_rate.clone()), vec![2, 1, 0]);
        assert_eq!(Vec::from(s.drops_rate.clone()), vec![1, 0, 0]);
    }
}
