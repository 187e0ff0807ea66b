//! Typed PrivX errors. The HTTP status decides the variant; PrivX's error body only explains.
//! No variant ever carries secret data: messages come from PrivX's error bodies (which echo
//! field names, not values) and are truncated.

use std::time::Duration;

/// What went wrong talking to PrivX.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PrivxError {
    /// 404 (or PrivX's OBJECT_NOT_FOUND).
    #[error("{what} not found in PrivX")]
    NotFound { what: String },

    /// 409, or 400 with VALUE_DUPLICATE.
    #[error("{what} already exists in PrivX")]
    AlreadyExists { what: String },

    /// 403: the token is fine but the API client's roles do not allow this.
    #[error("permission denied by PrivX for {operation}: {message}")]
    PermissionDenied { operation: String, message: String },

    /// 400 (other than duplicates) and 413: PrivX refused the request's content.
    #[error("PrivX refused {operation}: {code}{}: {message}", property.as_deref().map(|p| format!(" (field {p})")).unwrap_or_default())]
    InvalidRequest {
        operation: String,
        code: String,
        property: Option<String>,
        message: String,
    },

    /// 401 after one refresh and retry, or the token endpoint refused the credentials
    /// (`invalid_client`, `invalid_grant`, ...): a configuration problem.
    #[error("PrivX authentication failed: {message}")]
    Unauthenticated { message: String },

    /// 5xx, 502/503/504 from proxies, MAX_LOAD / TOO_MANY_CONNECTIONS / OUT_OF_RESOURCES,
    /// timeouts and connection failures: retry later.
    #[error("PrivX unavailable during {operation}: {message}")]
    Unavailable {
        operation: String,
        message: String,
        retry_after: Option<Duration>,
    },

    /// The server's password-policy generation has no such field.
    #[error("PrivX {generation} has no password-policy field {field}")]
    Unsupported { generation: String, field: String },

    /// The client is misconfigured (URL, CA bundle, credentials missing).
    #[error("PrivX client configuration: {0}")]
    Config(String),

    /// Anything else (unexpected status or unparseable answer).
    #[error("unexpected PrivX answer to {operation}: {message}")]
    Other { operation: String, message: String },
}

impl PrivxError {
    /// Whether retrying later may succeed without any change.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Longest PrivX-provided text kept in an error message.
const MAX_MESSAGE_CHARS: usize = 300;

/// PrivX's error body (docs/privx-api.md section 5). Every field is optional: proxies answer with HTML.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct PrivxErrorBody {
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default)]
    pub property: Option<String>,
    #[serde(default)]
    pub details: Vec<PrivxErrorBody>,
}

/// Error codes that mean "PrivX is overloaded, try later" whatever the status.
const OVERLOAD_CODES: [&str; 3] = ["MAX_LOAD", "TOO_MANY_CONNECTIONS", "OUT_OF_RESOURCES"];

/// What an error answer is about, for messages: the operation (`create shared secret "x"`)
/// and the object (`shared secret "x"`).
#[derive(Clone, Debug)]
pub(crate) struct CallContext {
    pub operation: String,
    pub what: String,
    /// Strings that must never appear in an error (the values of the secret being written).
    pub redact: Vec<String>,
}

/// Turns an unsuccessful HTTP answer into a typed error. The status decides; the body explains.
pub(crate) fn error_from_answer(
    ctx: &CallContext,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> PrivxError {
    let parsed: Option<PrivxErrorBody> = serde_json::from_slice(body).ok();
    let code = parsed
        .as_ref()
        .and_then(|b| b.error_code.clone())
        .or_else(|| {
            parsed
                .as_ref()
                .and_then(|b| b.details.iter().find_map(|d| d.error_code.clone()))
        })
        .unwrap_or_default();
    let property = parsed.as_ref().and_then(|b| {
        b.property
            .clone()
            .filter(|p| !p.is_empty())
            .or_else(|| b.details.iter().find_map(|d| d.property.clone()))
    });
    let message = describe(status, parsed.as_ref(), body, &ctx.redact);
    let overloaded = OVERLOAD_CODES.contains(&code.as_str());
    match status {
        _ if overloaded || status >= 500 || status == 408 || status == 429 => {
            PrivxError::Unavailable {
                operation: ctx.operation.clone(),
                message,
                retry_after,
            }
        }
        404 => PrivxError::NotFound {
            what: ctx.what.clone(),
        },
        409 => PrivxError::AlreadyExists {
            what: ctx.what.clone(),
        },
        400 if code == "VALUE_DUPLICATE" => PrivxError::AlreadyExists {
            what: ctx.what.clone(),
        },
        400 if code == "OBJECT_NOT_FOUND" => PrivxError::NotFound {
            what: ctx.what.clone(),
        },
        400 | 413 | 422 => PrivxError::InvalidRequest {
            operation: ctx.operation.clone(),
            code: if code.is_empty() {
                format!("HTTP {status}")
            } else {
                code
            },
            property,
            message,
        },
        401 => PrivxError::Unauthenticated {
            message: format!(
                "PrivX refused the access token during {}: {message}",
                ctx.operation
            ),
        },
        403 => PrivxError::PermissionDenied {
            operation: ctx.operation.clone(),
            message,
        },
        300..=399 => PrivxError::Other {
            operation: ctx.operation.clone(),
            message: format!(
                "HTTP {status}: PrivX answered with a redirect, which is not followed; check the base URL"
            ),
        },
        _ => PrivxError::Other {
            operation: ctx.operation.clone(),
            message,
        },
    }
}

/// The human part of an error answer: PrivX's code and message, or a short excerpt of a
/// non-PrivX body, with any value in `redact` removed, truncated.
fn describe(
    status: u16,
    parsed: Option<&PrivxErrorBody>,
    body: &[u8],
    redact: &[String],
) -> String {
    let mut text = format!("HTTP {status}");
    match parsed {
        Some(b) if b.error_code.is_some() || b.error_message.is_some() => {
            if let Some(code) = &b.error_code {
                text.push_str(&format!(" {code}"));
            }
            if let Some(message) = b.error_message.as_deref().filter(|m| !m.is_empty()) {
                text.push_str(&format!(": {message}"));
            }
            for detail in &b.details {
                if let Some(message) = &detail.error_message {
                    text.push_str(&format!("; {message}"));
                }
                if let Some(property) = &detail.property {
                    text.push_str(&format!(" (field {property})"));
                }
            }
        }
        _ => {
            let excerpt: String = String::from_utf8_lossy(body)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            if !excerpt.is_empty() {
                text.push_str(": ");
                text.push_str(&excerpt);
            }
        }
    }
    sanitize(&text, redact)
}

/// Removes every `redact` value from `text` and truncates it.
pub(crate) fn sanitize(text: &str, redact: &[String]) -> String {
    let mut out = text.to_string();
    for value in redact.iter().filter(|v| !v.is_empty()) {
        out = out.replace(value.as_str(), "<redacted>");
    }
    truncate(&out, MAX_MESSAGE_CHARS)
}

pub(crate) fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(max_chars).collect();
        cut.push('…');
        cut
    }
}

/// A JSON parse failure described without quoting the input (serde_json quotes values).
pub(crate) fn parse_failure(ctx: &CallContext, err: &serde_json::Error) -> PrivxError {
    PrivxError::Other {
        operation: ctx.operation.clone(),
        message: format!(
            "the answer is not the expected JSON ({:?} error at line {}, column {})",
            err.classify(),
            err.line(),
            err.column()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> CallContext {
        CallContext {
            operation: "create shared secret \"db\"".into(),
            what: "shared secret \"db\"".into(),
            redact: vec!["hunter2".into()],
        }
    }

    fn answer(status: u16, body: &str) -> PrivxError {
        error_from_answer(&ctx(), status, None, body.as_bytes())
    }

    #[test]
    fn status_decides_the_variant() {
        assert!(matches!(answer(404, "{}"), PrivxError::NotFound { .. }));
        assert!(matches!(answer(409, ""), PrivxError::AlreadyExists { .. }));
        assert!(matches!(
            answer(403, r#"{"error_code":"PERMISSION_DENIED"}"#),
            PrivxError::PermissionDenied { .. }
        ));
        assert!(matches!(
            answer(401, ""),
            PrivxError::Unauthenticated { .. }
        ));
        assert!(matches!(answer(500, ""), PrivxError::Unavailable { .. }));
        assert!(matches!(
            answer(502, "<html>bad gateway</html>"),
            PrivxError::Unavailable { .. }
        ));
        assert!(matches!(answer(418, ""), PrivxError::Other { .. }));
        assert!(matches!(answer(302, ""), PrivxError::Other { .. }));
    }

    #[test]
    fn both_duplicate_answers_are_already_exists() {
        assert!(matches!(
            answer(400, r#"{"error_code":"VALUE_DUPLICATE","property":"name"}"#),
            PrivxError::AlreadyExists { .. }
        ));
        assert!(matches!(
            answer(409, r#"{"error_code":"VALUE_DUPLICATE"}"#),
            PrivxError::AlreadyExists { .. }
        ));
    }

    #[test]
    fn overload_codes_are_retryable_whatever_the_status() {
        for code in OVERLOAD_CODES {
            let err = answer(400, &format!(r#"{{"error_code":"{code}"}}"#));
            assert!(err.is_retryable(), "{code}: {err}");
        }
    }

    #[test]
    fn invalid_request_keeps_property_and_message() {
        let err = answer(
            400,
            r#"{"error_code":"VALUE_OUT_OF_BOUNDS","error_message":"too long","property":"password_max_length"}"#,
        );
        match &err {
            PrivxError::InvalidRequest {
                code,
                property,
                message,
                ..
            } => {
                assert_eq!(code, "VALUE_OUT_OF_BOUNDS");
                assert_eq!(property.as_deref(), Some("password_max_length"));
                assert!(message.contains("too long"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("field password_max_length"));
    }

    #[test]
    fn property_falls_back_to_details() {
        let err = answer(
            400,
            r#"{"error_code":"INVALID_REQUEST_DATA","details":[{"error_code":"VALUE_INCORRECT_FORMAT","property":"rotation_interval"}]}"#,
        );
        assert!(
            matches!(err, PrivxError::InvalidRequest { property: Some(ref p), .. } if p == "rotation_interval")
        );
    }

    #[test]
    fn echoed_secret_values_are_redacted_and_messages_truncated() {
        let err = answer(
            400,
            r#"{"error_code":"BAD_REQUEST","error_message":"value hunter2 is bad"}"#,
        );
        assert!(!err.to_string().contains("hunter2"));
        assert!(!format!("{err:?}").contains("hunter2"));
        let long = "x".repeat(5000);
        let err = answer(500, &long);
        assert!(err.to_string().chars().count() < 400);
    }

    #[test]
    fn parse_failures_do_not_quote_the_input() {
        let e = serde_json::from_str::<Vec<u32>>(r#"["hunter2"]"#).unwrap_err();
        assert!(
            e.to_string().contains("hunter2"),
            "premise: serde_json quotes values"
        );
        let err = parse_failure(&ctx(), &e);
        assert!(!err.to_string().contains("hunter2"));
    }
}
