//! Error answers in PrivX's two shapes: the PrivX shape
//! `{error_code, error_message, property, details}` used by every service, and the OAuth shape
//! `{error, error_description}` of the token endpoint. Messages never carry secret data.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Marks a response with the error code it carries, for the request log.
#[derive(Clone, Debug)]
pub(crate) struct ErrorCodeMark(pub String);

/// An error in PrivX's shape.
#[derive(Clone, Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub property: Option<String>,
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: code.to_string(),
            message: message.into(),
            property: None,
            retry_after: None,
        }
    }

    pub fn with_property(mut self, property: impl Into<String>) -> Self {
        self.property = Some(property.into());
        self
    }

    pub fn bad_request(code: &str, property: &str, message: impl Into<String>) -> Self {
        Self::new(400, code, message).with_property(property)
    }

    pub fn unauthorized(message: &str) -> Self {
        Self::new(401, "GENERAL_ERROR", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "PERMISSION_DENIED", message)
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(404, "OBJECT_NOT_FOUND", what)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "error_code": self.code,
            "error_message": self.message,
            "details": [],
        });
        if let Some(property) = &self.property {
            body["property"] = json!(property);
        }
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(ErrorCodeMark(self.code));
        response
    }
}

/// An error of the token endpoint, in OAuth's shape.
#[derive(Clone, Debug)]
pub(crate) struct OAuthError {
    pub status: StatusCode,
    pub error: String,
    pub description: String,
    pub retry_after: Option<u32>,
}

impl OAuthError {
    pub fn new(status: u16, error: &str, description: impl Into<String>) -> Self {
        OAuthError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            error: error.to_string(),
            description: description.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "error_description": self.description});
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"privx\""),
            );
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response.extensions_mut().insert(ErrorCodeMark(self.error));
        response
    }
}
