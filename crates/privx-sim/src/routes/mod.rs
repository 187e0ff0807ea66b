//! The PrivX routes the simulator serves (docs/privx-api.md sections 1–4), one module per
//! PrivX service: `auth`, `vault`, `secrets_manager`, `role_store`. This module assembles the
//! router and holds what the services share: request extractors, paging, response marks.
//! Fault injection lives in `fault.rs`, the `/_sim/` admin endpoints in `admin.rs`. Permission
//! rules are documented in `docs/simulator.md`.

mod auth;
mod role_store;
mod secrets_manager;
mod vault;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::ListCount;
use super::error::{ApiError, ErrorCodeMark};
use super::fault::fault_layer;
use super::state::{Caller, SimState};

/// Largest request body accepted (PrivX's front proxy refuses larger ones).
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;
pub(crate) const TOKEN_ROUTE: &str = "/auth/api/v1/oauth/token";
pub(crate) const TOKEN_LOGIN_ROUTE: &str = "/auth/api/v1/token/login";
const SECRETS_SEARCH_ROUTE: &str = "/vault/api/v1/search/secrets";
const ROLES_RESOLVE_ROUTE: &str = "/role-store/api/v1/roles/resolve";
const ROLES_SEARCH_ROUTE: &str = "/role-store/api/v1/roles/search";

/// The route templates served to `POST` that change nothing in PrivX: the two token endpoints
/// and the three searches. Every other POST, and every PUT and DELETE, changes PrivX's state
/// when it succeeds ([`crate::LoggedRequest::is_write`]). The router registers these routes
/// through the same constants, so the list names what is served.
pub const READ_ONLY_POSTS: [&str; 5] = [
    TOKEN_ROUTE,
    TOKEN_LOGIN_ROUTE,
    SECRETS_SEARCH_ROUTE,
    ROLES_RESOLVE_ROUTE,
    ROLES_SEARCH_ROUTE,
];
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 100;

/// Response marks read by the connection layer (request log, dropped connections).
#[derive(Clone, Debug)]
pub(crate) struct RouteMark(pub String);
#[derive(Clone, Debug)]
pub(crate) struct CallerMark(pub String);
#[derive(Clone, Debug)]
pub(crate) struct DropMark;

pub(crate) type Shared = Arc<SimState>;
pub(crate) type QueryMap = Query<HashMap<String, String>>;

pub(crate) fn privx_router(state: Shared) -> Router<Shared> {
    Router::new()
        .route(TOKEN_ROUTE, post(auth::token))
        .route(TOKEN_LOGIN_ROUTE, post(auth::token_login))
        .route("/auth/api/v1/status", get(auth::status))
        .route("/vault/api/v1/status", get(auth::status))
        .route("/secrets-manager/api/v1/status", get(auth::status))
        .route("/role-store/api/v1/status", get(auth::status))
        .route(
            "/vault/api/v1/secrets",
            get(vault::list_shared).post(vault::create_shared),
        )
        .route(
            "/vault/api/v1/secrets/{name}",
            get(vault::get_shared)
                .put(vault::put_shared)
                .delete(vault::delete_shared),
        )
        .route(
            "/vault/api/v1/metadata/secrets/{name}",
            get(vault::metadata_shared),
        )
        .route(SECRETS_SEARCH_ROUTE, post(vault::search))
        .route("/vault/api/v1/schemas", get(vault::schemas))
        .route(
            "/vault/api/v1/user/{user_id}/secrets",
            get(vault::list_personal).post(vault::create_personal),
        )
        .route(
            "/vault/api/v1/user/{user_id}/secrets/{name}",
            get(vault::get_personal)
                .put(vault::put_personal)
                .delete(vault::delete_personal),
        )
        .route(
            "/vault/api/v1/user/{user_id}/metadata/secrets/{name}",
            get(vault::metadata_personal),
        )
        .route(
            "/secrets-manager/api/v1/password-policies",
            get(secrets_manager::list_policies),
        )
        .route(
            "/secrets-manager/api/v1/password-policy",
            post(secrets_manager::create_policy),
        )
        .route(
            "/secrets-manager/api/v1/password-policy/{id}",
            get(secrets_manager::get_policy)
                .put(secrets_manager::put_policy)
                .delete(secrets_manager::delete_policy),
        )
        .route(ROLES_RESOLVE_ROUTE, post(role_store::resolve_roles))
        .route(ROLES_SEARCH_ROUTE, post(role_store::search_roles))
        .route("/role-store/api/v1/roles", get(role_store::list_roles))
        .route(
            "/role-store/api/v1/users/current",
            get(role_store::current_user),
        )
        .route("/role-store/api/v1/roles/{id}", get(role_store::get_role))
        .route_layer(middleware::from_fn_with_state(state, fault_layer))
        .fallback(not_found)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

// ---------------------------------------------------------------------------------------------
// Extractors

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let authorization = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        state.authenticate(authorization)
    }
}

/// A request body of at most [`MAX_BODY_BYTES`]; larger ones are refused with 413.
pub(crate) struct LimitedBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for LimitedBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let too_large = || {
            ApiError::new(
                413,
                "BAD_REQUEST",
                format!("request body larger than {MAX_BODY_BYTES} bytes"),
            )
        };
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
            return Err(too_large());
        }
        axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
            .await
            .map(LimitedBody)
            .map_err(|_| too_large())
    }
}

/// A JSON request body (any JSON value), size-limited.
pub(crate) struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let LimitedBody(bytes) = LimitedBody::from_request(request, state).await?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            ApiError::new(
                400,
                "INVALID_REQUEST_DATA",
                format!("request body is not valid JSON: {}", e.classify_name()),
            )
        })
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    // The parser's message can quote the body; name only the kind of problem.
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "wrong type",
            serde_json::error::Category::Eof => "unexpected end",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Paging

pub(crate) fn page(query: &HashMap<String, String>) -> Result<(usize, usize), ApiError> {
    let number = |key: &str, default: usize| -> Result<usize, ApiError> {
        match query.get(key) {
            None => Ok(default),
            Some(text) => text.parse::<usize>().map_err(|_| {
                ApiError::bad_request(
                    "VALUE_INCORRECT_TYPE",
                    key,
                    format!("{key} must be a non-negative integer"),
                )
            }),
        }
    };
    let offset = number("offset", 0)?;
    let limit = number("limit", DEFAULT_LIMIT)?;
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(
            "VALUE_OUT_OF_BOUNDS",
            "limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    Ok((offset, limit))
}

pub(crate) fn paged(
    state: &SimState,
    items: Vec<Value>,
    offset: usize,
    limit: usize,
) -> Json<Value> {
    let total = items.len();
    let items: Vec<Value> = items.into_iter().skip(offset).take(limit).collect();
    let count = match state.config.list_count {
        ListCount::Total => total,
        ListCount::PageSize => items.len(),
    };
    Json(json!({"count": count, "items": items}))
}

/// For the connection layer: the error code a response was marked with.
pub(crate) fn error_code_of(response: &Response) -> Option<String> {
    response
        .extensions()
        .get::<ErrorCodeMark>()
        .map(|m| m.0.clone())
}

/// The `sortdir` query parameter of PrivX's search endpoints: `ASC` (the default) or `DESC`,
/// in any case; anything else is PrivX's 400.
pub(crate) fn sort_descending(query: &HashMap<String, String>) -> Result<bool, ApiError> {
    match query.get("sortdir").map(|d| d.to_ascii_uppercase()) {
        None => Ok(false),
        Some(d) if d == "ASC" => Ok(false),
        Some(d) if d == "DESC" => Ok(true),
        Some(_) => Err(ApiError::bad_request(
            "INVALID_REQUEST_DATA",
            "sortdir",
            "sortdir must be ASC or DESC",
        )),
    }
}
