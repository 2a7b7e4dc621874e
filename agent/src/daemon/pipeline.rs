//! Datapath records -> flows -> the observer's ring. The reader drains the ring buffer
//! in batches; parsing is synchronous and cheap; the observer's queue never blocks
//! (what it cannot take it counts and reports as lost).

use std::sync::atomic::{AtomicU64, Ordering};

use ebpf_events::loader::EventReader;
use observer::parser::{ParseError, Parser};
use observer::IngestHandle;

use super::hooks::FlowHooks;

/// Records that could not be parsed (truncated or garbage), counted and skipped.
pub static UNPARSABLE_RECORDS: AtomicU64 = AtomicU64::new(0);

/// Reads records until `shutdown` or until the ring buffer fails.
pub async fn run(
    mut reader: EventReader,
    parser: Parser,
    ingest: IngestHandle,
    hooks: FlowHooks,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let batch = reader.read_batch(|record| match parser.parse(record) {
            Ok(flow) => {
                ingest.push_flow(hooks.on_flow(flow));
            }
            // Valid records that make no flow (Hubble skips them too).
            Err(ParseError::Skipped(_)) => {}
            Err(e) => {
                let n = UNPARSABLE_RECORDS.fetch_add(1, Ordering::Relaxed);
                if n < 10 || n.is_power_of_two() {
                    tracing::warn!(total = n + 1, "skipping a datapath record: {e}");
                }
            }
        });
        tokio::select! {
            _ = &mut shutdown => break,
            result = batch => {
                if let Err(e) = result {
                    tracing::error!("reading the datapath ring buffer: {e}");
                    break;
                }
            }
        }
    }
}
