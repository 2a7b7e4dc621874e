//! The kernel datapath of a node: tc programs on each endpoint's host-side
//! veth (`bpf/datapath.c`), their event ABI (`bpf/events.h`, mirrored by
//! [`abi`]), decoding of raw records ([`decode()`]) and, with the `loader`
//! feature, an aya loader that attaches the programs and owns their maps.
//!
//! Without features this crate needs neither clang nor aya nor root: the
//! observer decodes records with it. The `loader` feature compiles
//! `bpf/datapath.c` with `clang-19` (`apt-get install clang-19 libbpf-dev`).
//!
//! # Kernel requirements
//!
//! Linux 5.15 or later with BTF: the BPF ring buffer (5.8),
//! `bpf_ringbuf_query` and bounded loops, clsact attachment through
//! netlink. On 6.6 and later the programs attach through TCX links instead.
//! `run_cnt`/`run_time_ns` statistics need `kernel.bpf_stats_enabled=1` or a
//! held `BPF_ENABLE_STATS` descriptor ([`loader::Datapath::enable_stats`]).

pub mod abi;
pub mod clock;
pub mod constants;
pub mod decode;
pub mod encode;
#[cfg(feature = "loader")]
pub mod loader;

pub use abi::{
    Direction, EndpointEntry, EventHeader, IpcacheEntry, IpcacheKey, PolicyKey, PolicyValue,
    PolicyVerdictInfo,
};
pub use clock::KtimeClock;
pub use decode::{
    decode, DatapathEvent, DecodeError, DropEvent, PolicyVerdictEvent, TraceEvent, TraceSockEvent,
};
