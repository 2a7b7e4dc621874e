//! Hubble's observer on a node: the flow ring, the ingest path that fills it and the
//! Observer gRPC service that reads it.
//!
//! - [`ring`]: a fixed-size ring with one writer that never waits and readers that
//!   detect being overtaken.
//! - [`compact`]: the compact form flows are stored in, filterable in place.
//! - [`store`]: the flow ring (records + interning tables).

pub mod compact;
pub mod ring;
pub mod store;
pub mod sample;
