//! The Observer gRPC service's methods, one module per concern.

pub mod events;
pub mod fieldmask;
pub mod flows;
pub mod start;
pub mod window;
