//! Admin endpoints under `/_sim/` (never under a PrivX path): request log, counters, requests
//! in flight, faults,
//! token lifetime and expiry, policies in use. Unauthenticated: the simulator listens on
//! loopback for tests and demos only.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::error::ApiError;
use super::fault::Fault;
use super::state::{SimState, lock};

type Shared = Arc<SimState>;

pub(crate) fn admin_router() -> Router<Shared> {
    Router::new()
        .route("/_sim/requests", get(requests).delete(clear_requests))
        .route("/_sim/counters", get(counters).delete(clear_counters))
        .route("/_sim/in-flight", get(in_flight).delete(reset_in_flight))
        .route(
            "/_sim/faults",
            get(faults)
                .put(replace_faults)
                .post(add_fault)
                .delete(clear_faults),
        )
        .route(
            "/_sim/token-lifetime",
            get(token_lifetime).put(set_token_lifetime),
        )
        .route("/_sim/tokens/expire", post(expire_tokens))
        .route(
            "/_sim/policies/{id}/in-use",
            put(mark_in_use).delete(unmark_in_use),
        )
}

async fn requests(State(state): State<Shared>) -> Json<Value> {
    Json(json!(*lock(&state.log)))
}

async fn clear_requests(State(state): State<Shared>) -> StatusCode {
    lock(&state.log).clear();
    StatusCode::NO_CONTENT
}

async fn counters(State(state): State<Shared>) -> Json<Value> {
    Json(json!(*lock(&state.counters)))
}

async fn clear_counters(State(state): State<Shared>) -> StatusCode {
    lock(&state.counters).clear();
    StatusCode::NO_CONTENT
}

async fn in_flight(State(state): State<Shared>) -> Json<Value> {
    let (now, max) = state.in_flight.get();
    Json(json!({ "now": now, "max": max }))
}

async fn reset_in_flight(State(state): State<Shared>) -> StatusCode {
    state.in_flight.reset_max();
    StatusCode::NO_CONTENT
}

async fn faults(State(state): State<Shared>) -> Json<Value> {
    Json(json!(*lock(&state.faults)))
}

fn parse_faults(body: &[u8]) -> Result<Vec<Fault>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(400, "INVALID_REQUEST_DATA", format!("faults: {e}")))?;
    let list = if value.is_array() {
        value
    } else {
        Value::Array(vec![value])
    };
    let faults: Vec<Fault> = serde_json::from_value(list)
        .map_err(|e| ApiError::new(400, "INVALID_REQUEST_DATA", format!("faults: {e}")))?;
    for fault in &faults {
        fault
            .validate()
            .map_err(|e| ApiError::new(400, "INVALID_REQUEST_DATA", e.to_string()))?;
    }
    Ok(faults)
}

/// Replaces all faults with the body (one fault object or an array).
async fn replace_faults(State(state): State<Shared>, body: axum::body::Bytes) -> Response {
    match parse_faults(&body) {
        Ok(faults) => {
            *lock(&state.faults) = faults;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// Appends the body's fault(s) to the active ones.
async fn add_fault(State(state): State<Shared>, body: axum::body::Bytes) -> Response {
    match parse_faults(&body) {
        Ok(faults) => {
            lock(&state.faults).extend(faults);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn clear_faults(State(state): State<Shared>) -> StatusCode {
    lock(&state.faults).clear();
    StatusCode::NO_CONTENT
}

async fn token_lifetime(State(state): State<Shared>) -> Json<Value> {
    Json(json!({"seconds": lock(&state.token_lifetime).as_secs()}))
}

/// Body `{"seconds": N}`; applies to tokens granted from now on.
async fn set_token_lifetime(State(state): State<Shared>, Json(body): Json<Value>) -> Response {
    match body.get("seconds").and_then(Value::as_u64) {
        Some(seconds) => {
            *lock(&state.token_lifetime) = Duration::from_secs(seconds);
            StatusCode::NO_CONTENT.into_response()
        }
        None => ApiError::bad_request(
            "REQUIRED_VALUE_MISSING",
            "seconds",
            "body must be {\"seconds\": N}",
        )
        .into_response(),
    }
}

async fn expire_tokens(State(state): State<Shared>) -> StatusCode {
    state.expire_all_tokens();
    StatusCode::NO_CONTENT
}

async fn mark_in_use(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    set_in_use(&state, &id, true)
}

async fn unmark_in_use(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    set_in_use(&state, &id, false)
}

fn set_in_use(state: &SimState, id: &str, in_use: bool) -> Response {
    if state.set_policy_in_use(id, in_use) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        ApiError::not_found(format!("password policy {id} not found")).into_response()
    }
}
