//! Fault injection: which requests fail, how, and how often. A [`Fault`] matches a route (the
//! route template such as `/vault/api/v1/secrets/{name}`, a concrete path, a prefix ending in
//! `*`, or `*` for every PrivX route) and optionally a method; when it fires it adds latency
//! and then answers an error status, drops the connection, or lets the request through. With
//! `after_handling` the request is handled first (a create takes effect) and its answer is then
//! replaced by the error or the dropped connection: a write whose outcome the client cannot know.
//! Admin routes (`/_sim/...`) are never faulted.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, OAuthError};
use crate::routes::{DropMark, RouteMark, TOKEN_LOGIN_ROUTE, TOKEN_ROUTE};
use crate::state::SimState;

/// One injected fault. Build with the constructors, or parse the CLI syntax with
/// [`parse_fault`]; the admin endpoint `/_sim/faults` speaks the same fields in JSON (camelCase).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    /// `GET`, `POST`...; `None` matches every method.
    #[serde(default)]
    pub method: Option<String>,
    /// Route template, concrete path, prefix ending in `*`, or `*`.
    pub route: String,
    /// The status to answer; `None` with `drop_connection: false` only adds latency.
    #[serde(default)]
    pub status: Option<u16>,
    /// The error code in the body (PrivX shape, or OAuth `error` on the token endpoint). Without
    /// one, 502/503/504 answer a proxy-style plain-text body and other statuses a default code.
    #[serde(default)]
    pub error_code: Option<String>,
    /// Probability (0..=1) that a matching request is hit.
    #[serde(default = "one")]
    pub rate: f64,
    /// Hit only the next N matching requests (counted among the hits), then disarm.
    #[serde(default)]
    pub next: Option<u32>,
    /// Adds `Retry-After: <seconds>` to the error answer.
    #[serde(default)]
    pub retry_after_seconds: Option<u32>,
    /// Delay before answering (or before handling, when the fault only adds latency).
    #[serde(default)]
    pub latency_ms: u64,
    /// Close the connection without any answer.
    #[serde(default)]
    pub drop_connection: bool,
    /// Handle the request first (it takes effect), then answer the error or drop the
    /// connection instead of the real answer.
    #[serde(default)]
    pub after_handling: bool,
}

fn one() -> f64 {
    1.0
}

impl Fault {
    fn base(route: &str) -> Fault {
        let (method, route) = split_method(route);
        Fault {
            method,
            route,
            status: None,
            error_code: None,
            rate: 1.0,
            next: None,
            retry_after_seconds: None,
            latency_ms: 0,
            drop_connection: false,
            after_handling: false,
        }
    }

    /// Answer `status` on `route` (which may start with a method: `"POST /auth/api/v1/oauth/token"`).
    pub fn status(route: &str, status: u16) -> Fault {
        Fault {
            status: Some(status),
            ..Fault::base(route)
        }
    }

    /// Close the connection without an answer.
    pub fn drop_connection(route: &str) -> Fault {
        Fault {
            drop_connection: true,
            ..Fault::base(route)
        }
    }

    /// Only delay requests.
    pub fn latency(route: &str, latency: Duration) -> Fault {
        Fault {
            latency_ms: latency.as_millis() as u64,
            ..Fault::base(route)
        }
    }

    /// The token endpoint answers 503 (as a proxy in front of a down auth service does).
    pub fn token_endpoint_down() -> Fault {
        Fault::status("POST /auth/api/v1/oauth/token", 503)
    }

    pub fn with_code(mut self, code: &str) -> Fault {
        self.error_code = Some(code.to_string());
        self
    }

    pub fn with_rate(mut self, rate: f64) -> Fault {
        self.rate = rate;
        self
    }

    pub fn for_next(mut self, n: u32) -> Fault {
        self.next = Some(n);
        self
    }

    pub fn with_retry_after(mut self, seconds: u32) -> Fault {
        self.retry_after_seconds = Some(seconds);
        self
    }

    /// The request is handled (a write takes effect) before the fault answers instead.
    pub fn after_handling(mut self) -> Fault {
        self.after_handling = true;
        self
    }

    pub fn with_latency(mut self, latency: Duration) -> Fault {
        self.latency_ms = latency.as_millis() as u64;
        self
    }

    /// Whether this fault applies to a request (rate and `next` not considered).
    pub(crate) fn matches(&self, method: &str, template: &str, path: &str) -> bool {
        if let Some(m) = &self.method
            && !m.eq_ignore_ascii_case(method)
        {
            return false;
        }
        if self.next == Some(0) {
            return false;
        }
        match self.route.strip_suffix('*') {
            Some(prefix) => template.starts_with(prefix) || path.starts_with(prefix),
            None => self.route == template || self.route == path,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), FaultParseError> {
        if !(0.0..=1.0).contains(&self.rate) {
            return Err(FaultParseError::Rate(self.rate.to_string()));
        }
        if let Some(status) = self.status
            && !(100..=599).contains(&status)
        {
            return Err(FaultParseError::Status(status.to_string()));
        }
        if !(self.route == "*" || self.route.starts_with('/')) {
            return Err(FaultParseError::Route(self.route.clone()));
        }
        if self.after_handling && self.status.is_none() && !self.drop_connection {
            return Err(FaultParseError::Option("after".into()));
        }
        Ok(())
    }
}

fn split_method(route: &str) -> (Option<String>, String) {
    let route = route.trim();
    match route.split_once(' ') {
        Some((method, rest)) if !method.starts_with('/') && method != "*" => {
            (Some(method.to_ascii_uppercase()), rest.trim().to_string())
        }
        _ => (None, route.to_string()),
    }
}

/// A `--fault` argument or admin fault that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FaultParseError {
    #[error(
        "fault {0:?}: expected [METHOD ]ROUTE=OUTCOME[:CODE][@RATE][,next=N][,latency=MS][,retry-after=S][,after]"
    )]
    Syntax(String),
    #[error("fault status {0:?}: expected 100..=599, `drop` or `ok`")]
    Status(String),
    #[error("fault rate {0:?}: expected a number from 0 to 1")]
    Rate(String),
    #[error("fault route {0:?}: expected a path starting with `/`, a prefix ending in `*`, or `*`")]
    Route(String),
    #[error(
        "fault option {0:?}: expected next=N, latency=MS (or 200ms, 2s), retry-after=SECONDS or after (with a status or drop)"
    )]
    Option(String),
}

/// Parses the CLI fault syntax:
/// `[METHOD ]ROUTE=OUTCOME[:CODE][@RATE][,next=N][,latency=MS][,retry-after=SECONDS][,after]`
/// where OUTCOME is an HTTP status, `drop` (close the connection) or `ok` (latency only), and
/// `after` handles the request before answering the fault (the write happens, its answer is lost).
/// Examples: `POST /auth/api/v1/oauth/token=503`, `/vault/*=500:MAX_LOAD@0.2`,
/// `PUT /vault/api/v1/secrets/{name}=drop,next=1`, `*=ok,latency=200`,
/// `POST /vault/api/v1/secrets=drop,next=1,after`.
pub fn parse_fault(text: &str) -> Result<Fault, FaultParseError> {
    let syntax = || FaultParseError::Syntax(text.to_string());
    let (route, rest) = text.split_once('=').ok_or_else(syntax)?;
    let mut parts = rest.split(',');
    let head = parts.next().ok_or_else(syntax)?.trim();
    let mut fault = Fault::base(route);
    let (head, rate) = match head.split_once('@') {
        Some((head, rate)) => (
            head,
            Some(
                rate.trim()
                    .parse::<f64>()
                    .map_err(|_| FaultParseError::Rate(rate.to_string()))?,
            ),
        ),
        None => (head, None),
    };
    let (outcome, code) = match head.split_once(':') {
        Some((outcome, code)) if !code.is_empty() => (outcome, Some(code.to_string())),
        Some(_) => return Err(syntax()),
        None => (head, None),
    };
    match outcome {
        "drop" => fault.drop_connection = true,
        "ok" => {}
        status => {
            fault.status = Some(
                status
                    .parse()
                    .map_err(|_| FaultParseError::Status(status.to_string()))?,
            )
        }
    }
    fault.error_code = code;
    if let Some(rate) = rate {
        fault.rate = rate;
    }
    for option in parts {
        let bad = || FaultParseError::Option(option.to_string());
        if option.trim() == "after" {
            fault.after_handling = true;
            continue;
        }
        let (key, value) = option.trim().split_once('=').ok_or_else(bad)?;
        match key {
            "next" => fault.next = Some(value.parse().map_err(|_| bad())?),
            "retry-after" => fault.retry_after_seconds = Some(value.parse().map_err(|_| bad())?),
            "latency" => fault.latency_ms = parse_millis(value).ok_or_else(bad)?,
            _ => return Err(bad()),
        }
    }
    fault.validate()?;
    Ok(fault)
}

fn parse_millis(value: &str) -> Option<u64> {
    if let Some(ms) = value.strip_suffix("ms") {
        ms.parse().ok()
    } else if let Some(s) = value.strip_suffix('s') {
        s.parse::<u64>().ok().map(|s| s * 1000)
    } else {
        value.parse().ok()
    }
}

/// Applies injected faults, counts the request in flight, and marks the response with its
/// route template.
pub(crate) async fn fault_layer(
    State(state): State<Arc<SimState>>,
    matched: MatchedPath,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_string();
    let template = matched.as_str().to_string();
    let path = request.uri().path().to_string();
    let _in_flight = state.in_flight.enter();
    let (latency, fault) = state.pick_fault(&method, &template, &path);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut response = match fault {
        None => next.run(request).await,
        Some(fault) if fault.after_handling => {
            let handled = next.run(request).await;
            tracing::debug!(
                status = handled.status().as_u16(),
                "handled; answering the fault instead"
            );
            fault_response(&fault, &template)
        }
        Some(fault) => fault_response(&fault, &template),
    };
    response
        .extensions_mut()
        .insert(RouteMark(format!("{method} {template}")));
    response
}

fn fault_response(fault: &Fault, template: &str) -> Response {
    if fault.drop_connection {
        let mut response = StatusCode::INTERNAL_SERVER_ERROR.into_response();
        response.extensions_mut().insert(DropMark);
        return response;
    }
    let status = fault.status.unwrap_or(500);
    let mut response = match (&fault.error_code, status) {
        (None, 502..=504) => {
            // What a reverse proxy in front of a down service answers: HTML, no PrivX body.
            let reason = StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Error");
            let body = format!(
                "<html><head><title>{status} {reason}</title></head><body><center><h1>{status} {reason}</h1></center></body></html>\n"
            );
            let mut response = (
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                body,
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            response
        }
        (code, _) if template == TOKEN_ROUTE || template == TOKEN_LOGIN_ROUTE => {
            let default = if status >= 500 {
                "server_error"
            } else {
                "invalid_request"
            };
            OAuthError::new(status, code.as_deref().unwrap_or(default), "injected fault")
                .into_response()
        }
        (code, _) => {
            let default = match status {
                400 => "BAD_REQUEST",
                403 => "PERMISSION_DENIED",
                404 => "OBJECT_NOT_FOUND",
                409 => "VALUE_DUPLICATE",
                _ => "GENERAL_ERROR",
            };
            ApiError::new(status, code.as_deref().unwrap_or(default), "injected fault")
                .into_response()
        }
    };
    if let Some(seconds) = fault.retry_after_seconds {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_code_rate_and_options() {
        let fault =
            parse_fault("/vault/*=500:MAX_LOAD@0.25,next=3,latency=2s,retry-after=7").unwrap();
        assert_eq!(fault.method, None);
        assert_eq!(fault.route, "/vault/*");
        assert_eq!(fault.status, Some(500));
        assert_eq!(fault.error_code.as_deref(), Some("MAX_LOAD"));
        assert_eq!(fault.rate, 0.25);
        assert_eq!(fault.next, Some(3));
        assert_eq!(fault.latency_ms, 2000);
        assert_eq!(fault.retry_after_seconds, Some(7));
    }

    #[test]
    fn parses_method_drop_and_ok() {
        let fault = parse_fault("put /vault/api/v1/secrets/{name}=drop").unwrap();
        assert_eq!(fault.method.as_deref(), Some("PUT"));
        assert!(fault.drop_connection);
        assert_eq!(fault.status, None);
        let fault = parse_fault("*=ok,latency=150").unwrap();
        assert_eq!((fault.route.as_str(), fault.latency_ms), ("*", 150));
        assert_eq!(
            parse_fault("POST /auth/api/v1/oauth/token=503").unwrap(),
            Fault::token_endpoint_down()
        );
    }

    #[test]
    fn parses_after_handling() {
        let fault = parse_fault("POST /vault/api/v1/secrets=drop,next=1,after").unwrap();
        assert!(fault.after_handling && fault.drop_connection);
        assert_eq!(fault.next, Some(1));
        assert_eq!(
            Fault::status("POST /vault/api/v1/secrets", 503).after_handling(),
            parse_fault("POST /vault/api/v1/secrets=503,after").unwrap()
        );
        assert!(matches!(
            parse_fault("/x=ok,after"),
            Err(FaultParseError::Option(_))
        ));
    }

    #[test]
    fn refuses_bad_faults() {
        assert!(matches!(parse_fault("/x"), Err(FaultParseError::Syntax(_))));
        assert!(matches!(
            parse_fault("/x=abc"),
            Err(FaultParseError::Status(_))
        ));
        assert!(matches!(
            parse_fault("/x=700"),
            Err(FaultParseError::Status(_))
        ));
        assert!(matches!(
            parse_fault("/x=500@2"),
            Err(FaultParseError::Rate(_))
        ));
        assert!(matches!(
            parse_fault("/x=500,foo=1"),
            Err(FaultParseError::Option(_))
        ));
        assert!(matches!(
            parse_fault("vault=500"),
            Err(FaultParseError::Route(_))
        ));
    }

    #[test]
    fn matching_by_template_path_prefix_and_method() {
        let template = "/vault/api/v1/secrets/{name}";
        let path = "/vault/api/v1/secrets/a%2Fb";
        assert!(Fault::status(template, 500).matches("GET", template, path));
        assert!(Fault::status(path, 500).matches("GET", template, path));
        assert!(Fault::status("/vault/*", 500).matches("GET", template, path));
        assert!(Fault::status("*", 500).matches("GET", template, path));
        assert!(!Fault::status("PUT /vault/*", 500).matches("GET", template, path));
        assert!(!Fault::status("/auth/*", 500).matches("GET", template, path));
        assert!(
            !Fault::status(template, 500)
                .for_next(0)
                .matches("GET", template, path)
        );
    }
}
