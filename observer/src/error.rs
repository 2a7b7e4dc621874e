//! The observer's errors, and their mapping to gRPC statuses (the only place where
//! that mapping happens).

use proto::fieldmask::FieldMaskError;
use proto::filter::FilterError;
use tonic::Status;

use crate::ring::CapacityError;

/// An error of the observer or of a request to it.
#[derive(Debug, thiserror::Error)]
pub enum ObserverError {
    /// A request asked for `first` and `follow` together.
    #[error("first cannot be specified with follow")]
    FirstWithFollow,
    /// A filter value of a request is invalid.
    #[error("{0}")]
    InvalidFilter(#[from] FilterError),
    /// A field mask path does not name a field of `flow.Flow`, or a flow could not be
    /// masked.
    #[error(transparent)]
    FieldMask(#[from] FieldMaskError),
    /// A `since` or `until` timestamp is out of range.
    #[error("invalid {field} timestamp (seconds {seconds}, nanos {nanos}): {reason}")]
    InvalidTimestamp {
        field: &'static str,
        seconds: i64,
        nanos: i32,
        reason: &'static str,
    },
    /// The ring capacity is not `2^n - 1`.
    #[error(transparent)]
    Capacity(#[from] CapacityError),
    /// A method this server does not implement.
    #[error("{0} not implemented")]
    Unimplemented(&'static str),
    /// The observer is shutting down.
    #[error("the observer is shutting down")]
    ShuttingDown,
    /// The task compiling a request's filters did not finish (it panicked or the
    /// runtime is shutting down).
    #[error("compiling the request's filters failed: {0}")]
    CompileTask(String),
    /// A scan job did not finish (it panicked or the runtime is shutting down).
    #[error("reading the flow ring failed: {0}")]
    ScanTask(String),
    /// A response the scan encoded did not decode again (only on the trait's own
    /// decoding path; the server writes the encoded bytes).
    #[error("decoding an encoded response failed: {0}")]
    DecodeResponse(String),
}

impl From<ObserverError> for Status {
    fn from(err: ObserverError) -> Status {
        let message = err.to_string();
        match err {
            ObserverError::FirstWithFollow
            | ObserverError::InvalidFilter(_)
            | ObserverError::FieldMask(FieldMaskError::InvalidPath { .. })
            | ObserverError::InvalidTimestamp { .. }
            | ObserverError::Capacity(_) => Status::invalid_argument(message),
            ObserverError::Unimplemented(_) => Status::unimplemented(message),
            ObserverError::ShuttingDown => Status::unavailable(message),
            ObserverError::CompileTask(_)
            | ObserverError::ScanTask(_)
            | ObserverError::DecodeResponse(_)
            | ObserverError::FieldMask(FieldMaskError::Apply(_)) => Status::internal(message),
        }
    }
}
