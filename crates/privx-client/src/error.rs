//! Typed PrivX errors. The HTTP status decides the variant; PrivX's error body only explains.
//! No variant ever carries secret data: messages come from PrivX's error bodies (which echo
//! field names, not values) and are truncated.
//!
//! Outages (and unexpected answers) are described by fixed text only — `HTTP 503 from vault`,
//! `HTTP 503 from vault (MAX_LOAD)`, `timeout talking to vault`, `connection refused by PrivX` —
//! never by a response body (a proxy's HTML page, a request id, PrivX's own wording): these
//! messages end up in object status, and identical failures must give identical text so that
//! a status write does not change anything and the per-object backoff holds. The body, redacted,
//! goes to a debug log line instead. Refusals the user has to act on (400, 403) keep PrivX's
//! code and message from its JSON error body, never a non-JSON body.

use std::time::Duration;

use crate::breaker::Service;

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
    /// timeouts and connection failures: retry later. Also a call refused unsent because the
    /// service's circuit breaker is open (`refused`; [`crate::breaker`]): its message is the
    /// one of the outage that opened the breaker, so the two read alike.
    #[error("PrivX unavailable during {operation}: {message}")]
    Unavailable {
        operation: String,
        message: String,
        retry_after: Option<Duration>,
        /// The PrivX service that failed or refused (`None` for a path outside the four).
        service: Option<Service>,
        /// No request was sent: the service's circuit breaker is open.
        refused: bool,
    },

    /// A write the caller's write gate refused (`PrivxClient::with_write_gate`): not sent.
    #[error(
        "{operation} not sent to PrivX: writes are stopped (this replica no longer holds a valid leader lease)"
    )]
    WriteRefused { operation: String },

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

    /// The service whose open circuit breaker refused this call (no request was sent), if
    /// that is what happened. Such a call is best retried when the breaker closes
    /// ([`crate::Breakers::subscribe`]), not on a per-object backoff.
    pub fn breaker_refusal(&self) -> Option<Service> {
        match self {
            Self::Unavailable {
                service,
                refused: true,
                ..
            } => *service,
            _ => None,
        }
    }

    /// The service a PrivX outage was seen on (a failure or a refusal), if this is one.
    pub fn unavailable_service(&self) -> Option<Service> {
        match self {
            Self::Unavailable { service, .. } => *service,
            _ => None,
        }
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

/// What an error answer is about, for messages: the operation (`create shared secret "x"`),
/// the object (`shared secret "x"`) and the PrivX service the request went to (`vault`).
#[derive(Clone, Debug)]
pub(crate) struct CallContext {
    pub operation: String,
    pub what: String,
    /// The first segment of the request path: `auth`, `vault`, `secrets-manager`, `role-store`.
    pub service: &'static str,
    /// Strings that must never appear in an error (the values of the secret being written,
    /// credentials). A call with any never has its answer body logged.
    pub redact: Vec<String>,
}

/// The PrivX service of a route template (`POST /vault/api/v1/secrets` → `vault`) or a path.
pub(crate) fn service_of(route: &'static str) -> &'static str {
    let path = route.split_once(' ').map_or(route, |(_, path)| path);
    match path.trim_start_matches('/').split('/').next() {
        Some(service) if !service.is_empty() => service,
        _ => "PrivX",
    }
}

/// Turns an unsuccessful HTTP answer into a typed error. The status decides; the body explains
/// (only for refusals the user acts on, and only PrivX's JSON error body).
pub(crate) fn error_from_answer(
    ctx: &CallContext,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> PrivxError {
    let parsed: Option<PrivxErrorBody> = serde_json::from_slice(body).ok();
    let code = error_code(parsed.as_ref());
    let property = parsed.as_ref().and_then(|b| {
        b.property
            .clone()
            .filter(|p| !p.is_empty())
            .or_else(|| b.details.iter().find_map(|d| d.property.clone()))
    });
    if ctx.redact.is_empty() {
        tracing::debug!(
            operation = %ctx.operation,
            status,
            body = %sanitize(&one_line(body), &ctx.redact),
            "PrivX error answer"
        );
    } else {
        // The call carries values (a write of secret data, a login): PrivX may echo them in a
        // form substring redaction misses (escaped, split, very short), so no body at all.
        tracing::debug!(
            operation = %ctx.operation,
            status,
            code = %code,
            property = property.as_deref().unwrap_or_default(),
            body_bytes = body.len(),
            "PrivX error answer (body not logged: the call carries secret values)"
        );
    }
    let fixed = fixed_message(status, &code, ctx.service);
    match status {
        _ if is_outage(status, &code) => PrivxError::Unavailable {
            operation: ctx.operation.clone(),
            message: fixed,
            retry_after,
            service: Service::from_name(ctx.service),
            refused: false,
        },
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
            message: describe(status, parsed.as_ref(), ctx),
        },
        401 => PrivxError::Unauthenticated {
            message: format!(
                "PrivX refused the access token during {}: {fixed}",
                ctx.operation
            ),
        },
        403 => PrivxError::PermissionDenied {
            operation: ctx.operation.clone(),
            message: describe(status, parsed.as_ref(), ctx),
        },
        300..=399 => PrivxError::Other {
            operation: ctx.operation.clone(),
            message: format!(
                "HTTP {status}: PrivX answered with a redirect, which is not followed; check the base URL"
            ),
        },
        _ => PrivxError::Other {
            operation: ctx.operation.clone(),
            message: fixed,
        },
    }
}

/// PrivX's error code in an error body (or its first detail), if it looks like one.
fn error_code(parsed: Option<&PrivxErrorBody>) -> String {
    parsed
        .and_then(|b| b.error_code.clone())
        .or_else(|| parsed.and_then(|b| b.details.iter().find_map(|d| d.error_code.clone())))
        .filter(|c| is_error_code(c))
        .unwrap_or_default()
}

/// Whether an answer says "PrivX is not serving" rather than something about one request.
fn is_outage(status: u16, code: &str) -> bool {
    OVERLOAD_CODES.contains(&code) || status >= 500 || status == 408 || status == 429
}

/// The fixed text of an answer that says "PrivX is not serving" (what the circuit breaker
/// counts), `None` for any other answer. The same text [`error_from_answer`] gives.
pub(crate) fn outage_message(status: u16, body: &[u8], service: &str) -> Option<String> {
    if (200..300).contains(&status) {
        return None;
    }
    let parsed: Option<PrivxErrorBody> = serde_json::from_slice(body).ok();
    let code = error_code(parsed.as_ref());
    is_outage(status, &code).then(|| fixed_message(status, &code, service))
}

/// `HTTP 503 from vault`, with PrivX's error code when its JSON body named one:
/// `HTTP 503 from vault (MAX_LOAD)`. Nothing else of the answer.
pub(crate) fn fixed_message(status: u16, code: &str, service: &str) -> String {
    if code.is_empty() {
        format!("HTTP {status} from {service}")
    } else {
        format!("HTTP {status} from {service} ({code})")
    }
}

/// Whether `code` looks like one of PrivX's error codes (`MAX_LOAD`, `VALUE_DUPLICATE`), not
/// free text someone put in a JSON `error_code`.
fn is_error_code(code: &str) -> bool {
    (2..=64).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// The message of a refusal the user acts on: PrivX's code and message from its JSON error
/// body, redacted and truncated; `HTTP 403 from vault` when the body is not PrivX's.
fn describe(status: u16, parsed: Option<&PrivxErrorBody>, ctx: &CallContext) -> String {
    let mut text = format!("HTTP {status}");
    match parsed {
        Some(b) if b.error_code.is_some() || b.error_message.is_some() => {
            if let Some(code) = b.error_code.as_deref().filter(|c| is_error_code(c)) {
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
        _ => text.push_str(&format!(" from {}", ctx.service)),
    }
    sanitize(&text, &ctx.redact)
}

/// A body on one line, for the debug log.
fn one_line(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// What kind of transport failure happened, in the fixed words of a status message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TransportFailure {
    Timeout,
    Refused,
    CertificateExpired,
    CertificateWrongName,
    CertificateUntrusted,
    Tls,
    NoSuchHost,
    Connect,
    /// The request may have been sent; the answer never came whole.
    Lost,
}

impl TransportFailure {
    /// Classifies a failure from what reqwest says of it and its error chain.
    pub(crate) fn classify(
        timeout: bool,
        connect: bool,
        io_kind: Option<std::io::ErrorKind>,
        chain: &str,
    ) -> Self {
        let chain = chain.to_ascii_lowercase();
        if timeout || io_kind == Some(std::io::ErrorKind::TimedOut) {
            Self::Timeout
        } else if io_kind == Some(std::io::ErrorKind::ConnectionRefused) {
            Self::Refused
        } else if chain.contains("certificate") {
            if chain.contains("expired") {
                Self::CertificateExpired
            } else if chain.contains("notvalidforname") || chain.contains("not valid for") {
                Self::CertificateWrongName
            } else {
                Self::CertificateUntrusted
            }
        } else if ["tls", "handshake"].iter().any(|w| chain.contains(w)) {
            Self::Tls
        } else if connect
            && ["dns", "resolve", "lookup"]
                .iter()
                .any(|w| chain.contains(w))
        {
            Self::NoSuchHost
        } else if connect {
            Self::Connect
        } else {
            Self::Lost
        }
    }

    pub(crate) fn message(self, service: &str) -> String {
        match self {
            Self::Timeout => format!("timeout talking to {service}"),
            Self::Refused => "connection refused by PrivX".to_string(),
            Self::CertificateExpired => "PrivX's TLS certificate has expired".to_string(),
            Self::CertificateWrongName => {
                "PrivX's TLS certificate is not valid for its host name".to_string()
            }
            Self::CertificateUntrusted => {
                "PrivX's TLS certificate is not trusted (check the CA bundle)".to_string()
            }
            Self::Tls => "TLS handshake with PrivX failed".to_string(),
            Self::NoSuchHost => "PrivX host name not found".to_string(),
            Self::Connect => "cannot connect to PrivX".to_string(),
            Self::Lost => format!("connection lost talking to {service}"),
        }
    }
}

/// A request that got no answer, as a retryable error with a fixed message; the error chain
/// (redacted) goes to a debug log line.
pub(crate) fn transport_error(ctx: &CallContext, err: &reqwest::Error) -> PrivxError {
    let chain = crate::transport::error_chain(err);
    tracing::debug!(
        operation = %ctx.operation,
        error = %sanitize(&chain, &ctx.redact),
        "PrivX request got no answer"
    );
    PrivxError::Unavailable {
        operation: ctx.operation.clone(),
        message: transport_failure_message(err, ctx.service),
        retry_after: None,
        service: Service::from_name(ctx.service),
        refused: false,
    }
}

/// The fixed text of a request that got no answer (`timeout talking to vault`).
pub(crate) fn transport_failure_message(err: &reqwest::Error, service: &str) -> String {
    let chain = crate::transport::error_chain(err);
    let mut io_kind = None;
    let mut source: Option<&dyn std::error::Error> = Some(err);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
            break;
        }
        source = s.source();
    }
    TransportFailure::classify(err.is_timeout(), err.is_connect(), io_kind, &chain).message(service)
}

/// A call the open circuit breaker of its service refused: the outage's text, no request.
pub(crate) fn refusal_error(ctx: &CallContext, refusal: &crate::breaker::Refusal) -> PrivxError {
    PrivxError::Unavailable {
        operation: ctx.operation.clone(),
        message: refusal.message.clone(),
        retry_after: None,
        service: Some(refusal.service),
        refused: true,
    }
}

/// Removes every `redact` value of 3 characters or more from `text` and truncates it (shorter
/// ones would take ordinary words apart; no body of a call carrying values is logged at all).
pub(crate) fn sanitize(text: &str, redact: &[String]) -> String {
    let mut out = text.to_string();
    for value in redact.iter().filter(|v| v.chars().count() >= 3) {
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
mod tests;
