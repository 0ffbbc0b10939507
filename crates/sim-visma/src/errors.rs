//! The three error body shapes Visma answers with.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use uuid::Uuid;

/// `{"ExceptionType": "IPPException", ...}`: auth, context and licence errors.
pub fn ipp_exception(status: StatusCode, code: &str, message: &str) -> Response {
    let id = Uuid::new_v4();
    (
        status,
        axum::Json(json!({
            "ExceptionType": "IPPException",
            "ExceptionMessage": message,
            "ExceptionFaultCode": code,
            "ExceptionMessageID": format!("{code}_{id}"),
            "ExceptionDetails": "",
        })),
    )
        .into_response()
}

/// `{"message": "VismaId: <uuid>. <text>"}`: business and validation errors.
pub fn message(status: StatusCode, text: &str) -> Response {
    let id = Uuid::new_v4();
    (status, axum::Json(json!({ "message": format!("VismaId: {id}. {text}") }))).into_response()
}

/// `{"message": ...}` without a VismaId: what the API gateway itself says.
pub fn gateway_message(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({ "statusCode": status.as_u16(), "message": text }))).into_response()
}

/// A plain-text body, as gateway-level failures answer.
pub fn plain(status: StatusCode, text: &str) -> Response {
    let mut r = (status, text.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}
