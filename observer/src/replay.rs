//! Replaying a capture: a file of JSON lines as `hubble observe -o jsonpb` prints them
//! (one `GetFlowsResponse` per line) or as `-o json` prints them (one bare `Flow` per
//! line) is fed into the observer, optionally re-timestamped, paced and looped.
//!
//! A line that is not a flow is reported with its number and reason, counted and
//! skipped. Lines that are valid responses without a flow (lost events, node status)
//! are skipped silently.

use std::path::{Path, PathBuf};
use std::time::Duration;

use proto::flow::Flow;
use proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::ingest::{now_timestamp, IngestHandle};

/// Bad lines reported in full; beyond this only their count grows.
pub const MAX_REPORTED_ERRORS: usize = 20;

/// How to replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Set each flow's time to the moment it is replayed.
    pub retimestamp: bool,
    /// Flows per second (`None` or 0: as fast as the ring takes them).
    pub rate: Option<f64>,
    /// Start over at the end of the file, until the future is dropped.
    pub repeat: bool,
}

/// One line that could not be replayed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct LineError {
    /// 1-based line number.
    pub line: u64,
    /// What was wrong.
    pub reason: String,
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read replay file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("replay file {path} holds no flow")]
    NoFlows { path: PathBuf },
    #[error("the observer stopped accepting flows")]
    Closed,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplayStats {
    /// Flows pushed into the observer.
    pub flows: u64,
    /// Lines skipped because they were not valid JSON of a response or flow.
    pub bad_lines: u64,
    /// The first bad lines, with reasons.
    pub errors: Vec<LineError>,
    /// Times the file was read through.
    pub passes: u64,
}

/// Flows a replay hands to the writer at once (when not paced): one queue slot and
/// one wake-up of the writer each.
const REPLAY_BATCH: usize = 256;

/// A paced replay hands over the flows due within this much of now together, then
/// sleeps: a flow goes out at most this early, and at 1,000 flows/s the thread wakes
/// every few milliseconds instead of once per flow (each wake-up, and the writer's
/// with it, cost more CPU than the flow itself: 93 us of agent CPU per flow at 1,000
/// flows/s when it slept before each flow).
pub const REPLAY_PACING_SLACK: Duration = Duration::from_millis(5);

/// Parses one line into a flow. `Ok(None)` for a valid response without a flow.
///
/// A line is read once, straight into a `GetFlowsResponse` (what `hubble observe -o
/// jsonpb` writes); only a line that is not one (a bare `Flow`, or an error) is read
/// again, as a `Flow`.
pub fn parse_line(line: &str) -> Result<Option<Flow>, String> {
    parse_line_in(line, &mut proto::json::ReadScratch::default())
}

/// [`parse_line`], with `scratch` for the parser's copy of the line.
pub fn parse_line_in(
    line: &str,
    scratch: &mut proto::json::ReadScratch,
) -> Result<Option<Flow>, String> {
    let response = proto::json::from_slice::<GetFlowsResponse>(line.as_bytes(), scratch);
    flow_of(response, line.as_bytes())
}

/// [`parse_line`] for a line the parser may work in (left as it was).
fn parse_line_bytes(
    line: &mut [u8],
    scratch: &mut proto::json::ReadScratch,
) -> Result<Option<Flow>, String> {
    let response = proto::json::from_mut_slice::<GetFlowsResponse>(line, scratch);
    flow_of(response, line)
}

/// The flow of a line read as a response; a line that is not one is read again as
/// JSON, to tell a bare `Flow` from an error.
fn flow_of(
    response: serde_json::Result<GetFlowsResponse>,
    line: &[u8],
) -> Result<Option<Flow>, String> {
    if let Ok(GetFlowsResponse {
        response_types: Some(types),
        ..
    }) = response
    {
        return Ok(match types {
            ResponseTypes::Flow(flow) => Some(flow),
            _ => None,
        });
    }
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
    let Some(object) = value.as_object() else {
        return Err("expected a JSON object".to_string());
    };
    // A bare Flow never has these keys; a GetFlowsResponse has one of them.
    let is_response = ["flow", "lost_events", "node_status"]
        .iter()
        .any(|k| object.contains_key(*k));
    if is_response {
        return match response {
            Err(e) => Err(format!("not a GetFlowsResponse: {e}")),
            Ok(_) => Ok(None),
        };
    }
    serde_json::from_value::<Flow>(value)
        .map(Some)
        .map_err(|e| format!("not a Flow: {e}"))
}

/// Replays `path` into the observer behind `ingest`. Runs until the file is done (or
/// forever with `repeat`: drop the future to stop it).
pub async fn replay(
    path: &Path,
    options: &ReplayOptions,
    ingest: &IngestHandle,
) -> Result<ReplayStats, ReplayError> {
    replay_with(path, options, ingest, |flow| flow).await
}

/// [`replay`], handing each flow to `on_flow` (paced and re-timestamped, as the ring
/// will store it) before it is queued: the agent runs its metrics and export hooks
/// there, as it does for datapath flows.
///
/// The file is read on a thread of the blocking pool and parsed there and on one more
/// thread (`proto::json::lines`, plain reads of 512 KiB): the runtime's file reads
/// would each be a hop to that pool and back, and the parsing would hold a runtime
/// worker.
pub async fn replay_with(
    path: &Path,
    options: &ReplayOptions,
    ingest: &IngestHandle,
    on_flow: impl FnMut(Flow) -> Flow + Send + 'static,
) -> Result<ReplayStats, ReplayError> {
    let (path, options, ingest) = (path.to_path_buf(), options.clone(), ingest.clone());
    let path_for_error = path.clone();
    // A dropped replay (the agent shutting down) stops the thread at the next line.
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let stopped = Arc::clone(&stop.0);
    tokio::task::spawn_blocking(move || {
        replay_blocking(&path, &options, &ingest, &stopped, on_flow)
    })
    .await
    .unwrap_or_else(|e| {
        Err(ReplayError::Io {
            path: path_for_error,
            source: std::io::Error::other(format!("the replay thread failed: {e}")),
        })
    })
}

/// Stored batches the writer hands back to the replay thread to be freed there.
pub const SPENT_BATCHES: usize = 4;

/// Sets its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn replay_blocking(
    path: &Path,
    options: &ReplayOptions,
    ingest: &IngestHandle,
    stop: &AtomicBool,
    mut on_flow: impl FnMut(Flow) -> Flow,
) -> Result<ReplayStats, ReplayError> {
    let io_err = |source| ReplayError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut stats = ReplayStats::default();
    let rate = options.rate.filter(|r| *r > 0.0 && r.is_finite());
    let started = Instant::now();
    // Batches the writer stored, handed back to be freed on this thread.
    let (spent_tx, spent) = std::sync::mpsc::sync_channel::<Vec<Flow>>(SPENT_BATCHES);
    let push = |batch: Vec<Flow>| {
        while let Ok(stored) = spent.try_recv() {
            drop(stored);
        }
        ingest.push_flows_returning(batch, &spent_tx)
    };
    // Each line: `None` when blank, else what it holds.
    let parse = |line: &mut [u8], scratch: &mut proto::json::ReadScratch| {
        (!line.iter().all(u8::is_ascii_whitespace)).then(|| parse_line_bytes(line, scratch))
    };
    loop {
        let file = std::fs::File::open(path).map_err(io_err)?;
        let mut batch = Vec::with_capacity(REPLAY_BATCH);
        let mut number = 0u64;
        let flows_before = stats.flows;
        let mut each = |lines: &mut Vec<Option<Result<Option<Flow>, String>>>| {
            for line in lines.iter_mut() {
                if stop.load(Ordering::Relaxed) {
                    return Err(Stop::Replay(ReplayError::Closed));
                }
                number += 1;
                let mut flow = match line.take() {
                    None | Some(Ok(None)) => continue,
                    Some(Ok(Some(flow))) => flow,
                    Some(Err(reason)) => {
                        stats.bad_lines += 1;
                        let error = LineError {
                            line: number,
                            reason,
                        };
                        tracing::warn!(file = %path.display(), "skipping replay {error}");
                        if stats.errors.len() < MAX_REPORTED_ERRORS {
                            stats.errors.push(error);
                        }
                        continue;
                    }
                };
                if let Some(rate) = rate {
                    let due = started + Duration::from_secs_f64(stats.flows as f64 / rate);
                    let now = Instant::now();
                    if due > now + REPLAY_PACING_SLACK {
                        if !push(std::mem::take(&mut batch)) {
                            return Err(Stop::Replay(ReplayError::Closed));
                        }
                        std::thread::sleep(due - now);
                    }
                }
                if options.retimestamp {
                    flow.time = Some(now_timestamp());
                }
                batch.push(on_flow(flow));
                stats.flows += 1;
                if batch.len() >= REPLAY_BATCH
                    && !push(std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(REPLAY_BATCH),
                    ))
                {
                    return Err(Stop::Replay(ReplayError::Closed));
                }
            }
            Ok(true)
        };
        match proto::json::lines::parse_in_order(file, parse, &mut each) {
            Ok(()) => {}
            Err(Stop::Io(e)) => return Err(io_err(e)),
            Err(Stop::Replay(e)) => return Err(e),
        }
        if !push(std::mem::take(&mut batch)) {
            return Err(ReplayError::Closed);
        }
        stats.passes += 1;
        if stats.flows == flows_before {
            if stats.flows == 0 {
                return Err(ReplayError::NoFlows {
                    path: path.to_path_buf(),
                });
            }
            return Ok(stats);
        }
        if !options.repeat {
            return Ok(stats);
        }
    }
}

/// Why reading the lines stopped early.
enum Stop {
    Io(std::io::Error),
    Replay(ReplayError),
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        Stop::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;

    #[test]
    fn parses_jsonpb_and_bare_flow_lines() {
        let flow = sample::flow(5);
        let resp = GetFlowsResponse {
            time: flow.time,
            node_name: flow.node_name.clone(),
            response_types: Some(ResponseTypes::Flow(flow.clone())),
        };
        let jsonpb = proto::json::to_string(&resp);
        assert_eq!(parse_line(&jsonpb), Ok(Some(flow.clone())));
        let bare = proto::json::to_string(&flow);
        assert_eq!(parse_line(&bare), Ok(Some(flow)));
        let lost = r#"{"lost_events":{"source":"HUBBLE_RING_BUFFER","num_events_lost":"3"},"node_name":"n"}"#;
        assert_eq!(parse_line(lost), Ok(None));
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let err = parse_line("{not json").expect_err("garbage");
        assert!(err.contains("not JSON"), "{err}");
        let err = parse_line("[1,2]").expect_err("array");
        assert!(err.contains("object"), "{err}");
        let err = parse_line(r#"{"flow":{"verdict":["DROPPED"]}}"#).expect_err("bad type");
        assert!(err.contains("GetFlowsResponse"), "{err}");
        // Unknown fields and enum names (a newer Hubble's) are skipped, as upstream does.
        let newer = parse_line(r#"{"flow":{"verdict":"MAYBE","node_name":"n1","zone":1}}"#);
        assert_eq!(
            newer.map(|f| f.map(|f| f.node_name)),
            Ok(Some("n1".to_string()))
        );
    }

    #[test]
    fn corpus_lines_are_read_once_as_responses() {
        for n in 0..2000u64 {
            let flow = crate::sample::corpus_flow(n);
            let resp = GetFlowsResponse {
                time: flow.time,
                node_name: flow.node_name.clone(),
                response_types: Some(ResponseTypes::Flow(flow)),
            };
            let line = proto::json::to_string(&resp);
            // The one-pass path (no JSON value in between) takes every corpus line.
            if let Err(e) = serde_json::from_str::<GetFlowsResponse>(&line) {
                panic!("{n}: {e}: {line}");
            }
            let Some(ResponseTypes::Flow(flow)) = resp.response_types else {
                unreachable!("built as a flow");
            };
            assert_eq!(parse_line(&line), Ok(Some(flow)), "{n}");
        }
    }
}
