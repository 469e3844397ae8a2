//! gRPC statuses in HTTP/JSON, as grpc-gateway answers them: the HTTP status for each gRPC code
//! ([`http_status`]) and the error object (`{"code", "message", "details"}`, [`error_json`]),
//! shared by unary replies (`transcode.rs`) and streamed ones (`json_stream.rs`).

use http::StatusCode;
use serde_json::Value as Json;
use tonic::{Code, Status};

/// The HTTP status grpc-gateway answers for a gRPC code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A gRPC status as grpc-gateway's error object.
pub fn error_json(status: &Status) -> Json {
    serde_json::json!({
        "code": status.code() as i32,
        "message": status.message(),
        "details": [],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_like_grpc_gateway() {
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::Unavailable), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(http_status(Code::Unknown), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(http_status(Code::DeadlineExceeded), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(http_status(Code::AlreadyExists), StatusCode::CONFLICT);
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(http_status(Code::Cancelled).as_u16(), 499);
    }

    #[test]
    fn the_error_object_names_code_and_message() {
        let json = error_json(&Status::not_found("no cart \"c1\""));
        assert_eq!(json, serde_json::json!({"code": 5, "message": "no cart \"c1\"", "details": []}));
    }
}
