//! Hubble's v1 API as Rust types, and the API's semantics that every crate shares.
//!
//! - [`flow`], [`observer`], [`peer`], [`relay`]: generated from `api/*.proto`
//!   (prost messages, tonic clients and servers, serde impls with proto field names).
//! - [`filter`]: FlowFilter compilation and evaluation with upstream semantics.
//! - [`json`]: JSON output exactly as upstream `hubble` prints it.
//! - [`fieldmask`]: field masks over flows, compiled once, with upstream semantics.
//! - [`transport`]: dialing a node's Unix socket, and transport errors with causes.
//! - [`names`]: every name table of the API (enum names, observation points, ICMP,
//!   reserved identities), once.
//! - [`accesslog`]: the record an L7 proxy writes per request and response, read by
//!   the observer's L7 parser.

#![allow(deprecated)]

/// Flows, flow filters, lost events, agent and debug events.
pub mod flow {
    #![allow(clippy::all)]
    tonic::include_proto!("flow");
    include!(concat!(env!("OUT_DIR"), "/flow.serde.rs"));
}

/// Node status events used by the relay.
pub mod relay {
    #![allow(clippy::all)]
    tonic::include_proto!("relay");
    include!(concat!(env!("OUT_DIR"), "/relay.serde.rs"));
}

/// The Observer service.
pub mod observer {
    #![allow(clippy::all)]
    tonic::include_proto!("observer");
    include!(concat!(env!("OUT_DIR"), "/observer.serde.rs"));
}

/// The Peer service.
pub mod peer {
    #![allow(clippy::all)]
    tonic::include_proto!("peer");
    include!(concat!(env!("OUT_DIR"), "/peer.serde.rs"));
}

pub mod accesslog;
pub mod fieldmask;
pub mod filter;
pub mod get_flows;
pub mod json;
pub mod names;
#[doc(hidden)]
pub mod number;
pub mod transport;
pub mod wire;

/// Encoded `FileDescriptorSet` of the whole API, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/hubble_descriptor.bin"));
