//! gRPC errors as grpc-go prints them (`rpc error: code = Unavailable desc = ...`).

use tonic::{Code, Status};

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// `rpc error: code = <Code> desc = <message>`.
pub fn rpc_error(status: &Status) -> String {
    format!(
        "rpc error: code = {} desc = {}",
        code_name(status.code()),
        status.message()
    )
}

/// Like [`rpc_error`], but only the message for `Unknown` errors, as `observe` prints
/// errors of its streams.
pub fn rpc_error_for_stream(status: &Status) -> String {
    if status.code() == Code::Unknown {
        status.message().to_string()
    } else {
        rpc_error(status)
    }
}
