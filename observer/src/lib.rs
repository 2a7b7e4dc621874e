//! Hubble's observer on a node: the flow ring, the ingest path that fills it and the
//! Observer gRPC service that reads it.
//!
//! - [`ring`]: a fixed-size ring with one writer that never waits and readers that
//!   detect being overtaken.
//! - [`compact`]: the compact form flows are stored in, filterable in place.
//! - [`store`]: the flow ring (records + interning tables).
//! - [`event_rings`]: the small rings of agent events and debug events.
//! - [`ingest`]: the bounded, never-blocking queue from the agent to the ring writer.
//! - [`observer`]: a node's observer (rings, counters, configuration).
//! - [`service`]: `observer.Observer` over gRPC, one module per method family.
//! - [`server`]: serving it on the Unix socket and TCP with health and reflection.
//! - [`listener`]: the accept loop and connection limits shared with the relay.
//! - [`replay`]: feeding a captured `hubble observe -o jsonpb` file into the observer.
//! - `sample` and `fuzzing` (feature `test-support`, for tests, benchmarks and the fuzz
//!   targets only): demo-like flows, and the fuzz targets' entry points.

mod arc_cell;
pub mod compact;
pub mod error;
pub mod event_rings;
#[cfg(any(test, feature = "test-support"))]
pub mod fuzzing;
pub mod ingest;
pub mod listener;
pub mod namespaces;
pub mod observer;
pub mod ring;
#[cfg(any(test, feature = "test-support"))]
pub mod sample;
pub mod server;
pub mod service;
pub mod store;

pub use error::ObserverError;
pub use ingest::IngestHandle;
pub use observer::{LocalObserver, ObserverConfig};
pub use service::ObserverService;
pub mod parser;
pub mod replay;
