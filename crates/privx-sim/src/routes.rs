//! The PrivX routes the simulator serves (README sections 1–4) and the fault layer in front of
//! them. Permission rules are documented in `docs/simulator.md`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};

use super::error::{ApiError, ErrorCodeMark, OAuthError};
use super::fault::Fault;
use super::policy::{translate_policy, validate_policy};
use super::state::{
    Caller, PolicyRecord, SecretKey, SecretRecord, SimState, Store, lock, new_uuid, now_rfc3339,
};
use super::{ListCount, PolicyListShape, SimPolicyGeneration, UnreadableSecret};

/// Largest request body accepted (PrivX's front proxy refuses larger ones).
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;
pub(crate) const TOKEN_ROUTE: &str = "/auth/api/v1/oauth/token";
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 100;

/// Response marks read by the connection layer (request log, dropped connections).
#[derive(Clone, Debug)]
pub(crate) struct RouteMark(pub String);
#[derive(Clone, Debug)]
pub(crate) struct CallerMark(pub String);
#[derive(Clone, Debug)]
pub(crate) struct DropMark;

type Shared = Arc<SimState>;

/// Path characters kept as they are in `Location` and `path`; everything else is
/// percent-encoded (so `/` in a name becomes `%2F`, as PrivX's Go SDK does).
const NAME_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub(crate) fn privx_router(state: Shared) -> Router<Shared> {
    Router::new()
        .route(TOKEN_ROUTE, post(token))
        .route("/auth/api/v1/status", get(status))
        .route("/vault/api/v1/status", get(status))
        .route("/secrets-manager/api/v1/status", get(status))
        .route("/role-store/api/v1/status", get(status))
        .route(
            "/vault/api/v1/secrets",
            get(list_shared).post(create_shared),
        )
        .route(
            "/vault/api/v1/secrets/{name}",
            get(get_shared).put(put_shared).delete(delete_shared),
        )
        .route(
            "/vault/api/v1/metadata/secrets/{name}",
            get(metadata_shared),
        )
        .route("/vault/api/v1/search/secrets", post(search))
        .route(
            "/vault/api/v1/user/{user_id}/secrets",
            get(list_personal).post(create_personal),
        )
        .route(
            "/vault/api/v1/user/{user_id}/secrets/{name}",
            get(get_personal).put(put_personal).delete(delete_personal),
        )
        .route(
            "/vault/api/v1/user/{user_id}/metadata/secrets/{name}",
            get(metadata_personal),
        )
        .route(
            "/secrets-manager/api/v1/password-policies",
            get(list_policies),
        )
        .route(
            "/secrets-manager/api/v1/password-policy",
            post(create_policy),
        )
        .route(
            "/secrets-manager/api/v1/password-policy/{id}",
            get(get_policy).put(put_policy).delete(delete_policy),
        )
        .route("/role-store/api/v1/roles/resolve", post(resolve_roles))
        .route("/role-store/api/v1/roles", get(list_roles))
        .route("/role-store/api/v1/roles/{id}", get(get_role))
        .route_layer(middleware::from_fn_with_state(state, fault_layer))
        .fallback(not_found)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

/// Applies injected faults and marks the response with its route template.
async fn fault_layer(
    State(state): State<Shared>,
    matched: MatchedPath,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_string();
    let template = matched.as_str().to_string();
    let path = request.uri().path().to_string();
    let (latency, fault) = state.pick_fault(&method, &template, &path);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut response = match fault {
        None => next.run(request).await,
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
        (code, _) if template == TOKEN_ROUTE => {
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
// Authentication and status

async fn token(
    State(state): State<Shared>,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody,
) -> Response {
    match grant(&state, &headers, &body) {
        Ok((client_id, response)) => {
            let mut response = response;
            response.extensions_mut().insert(CallerMark(client_id));
            response
        }
        Err(error) => error.into_response(),
    }
}

fn grant(
    state: &SimState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, Response), OAuthError> {
    use base64::Engine;
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .ok()
        })
        .and_then(|v| String::from_utf8(v).ok())
        .ok_or_else(|| {
            OAuthError::new(
                401,
                "invalid_client",
                "client authentication (HTTP Basic) missing",
            )
        })?;
    let (oauth_id, oauth_secret) = basic
        .split_once(':')
        .ok_or_else(|| OAuthError::new(401, "invalid_client", "malformed client credentials"))?;
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !form_type.starts_with("application/x-www-form-urlencoded") {
        return Err(OAuthError::new(
            400,
            "invalid_request",
            "body must be application/x-www-form-urlencoded",
        ));
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let store = lock(&state.store);
    if !store
        .clients
        .iter()
        .any(|c| c.oauth_client_id == oauth_id && c.oauth_client_secret == oauth_secret)
    {
        return Err(OAuthError::new(
            401,
            "invalid_client",
            "client authentication failed",
        ));
    }
    match form.get("grant_type").map(String::as_str) {
        None | Some("") => {
            return Err(OAuthError::new(
                400,
                "invalid_request",
                "grant_type is missing",
            ));
        }
        Some("password") => {}
        Some(_) => {
            return Err(OAuthError::new(
                400,
                "unsupported_grant_type",
                "only the password grant is supported",
            ));
        }
    }
    let (Some(username), Some(password)) = (form.get("username"), form.get("password")) else {
        return Err(OAuthError::new(
            400,
            "invalid_request",
            "username and password are required",
        ));
    };
    let client = store
        .clients
        .iter()
        .find(|c| {
            &c.client_id == username
                && &c.client_secret == password
                && c.oauth_client_id == oauth_id
        })
        .ok_or_else(|| OAuthError::new(400, "invalid_grant", "invalid API client credentials"))?;
    let client_id = client.client_id.clone();
    drop(store);
    let (access_token, lifetime) = state.issue_token(&client_id);
    let body = json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": lifetime.as_secs(),
        "refresh_token": hex_token(),
        "scope": "privx-api",
    });
    Ok((client_id, Json(body).into_response()))
}

fn hex_token() -> String {
    rand::random::<[u8; 24]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn status(State(state): State<Shared>) -> Json<Value> {
    let mut body = json!({"status": "ok", "api_version": "v1"});
    if state.config.report_version {
        body["app_version"] = json!(match state.config.generation {
            SimPolicyGeneration::V34 => "34.2.0",
            SimPolicyGeneration::V35 => "35.1.0",
        });
    }
    Json(body)
}

// ---------------------------------------------------------------------------------------------
// Paging

fn page(query: &HashMap<String, String>) -> Result<(usize, usize), ApiError> {
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

fn paged(state: &SimState, items: Vec<Value>, offset: usize, limit: usize) -> Json<Value> {
    let total = items.len();
    let items: Vec<Value> = items.into_iter().skip(offset).take(limit).collect();
    let count = match state.config.list_count {
        ListCount::Total => total,
        ListCount::PageSize => items.len(),
    };
    Json(json!({"count": count, "items": items}))
}

// ---------------------------------------------------------------------------------------------
// Secrets

fn is_owner(caller: &Caller, secret: &SecretRecord) -> bool {
    secret.owner_id.as_deref() == Some(caller.client_id.as_str())
}

fn can_see(caller: &Caller, secret: &SecretRecord) -> bool {
    is_owner(caller, secret)
        || caller.may("vault-manage")
        || caller.is_admin()
        || caller.holds_any(&secret.read_roles)
        || caller.holds_any(&secret.write_roles)
}

fn can_read(caller: &Caller, secret: &SecretRecord) -> bool {
    is_owner(caller, secret) || caller.holds_any(&secret.read_roles)
}

fn can_write(caller: &Caller, secret: &SecretRecord) -> bool {
    match &secret.owner_id {
        Some(_) => is_owner(caller, secret),
        None => caller.holds_any(&secret.write_roles),
    }
}

fn can_delete(caller: &Caller, secret: &SecretRecord) -> bool {
    match &secret.owner_id {
        Some(_) => is_owner(caller, secret) || caller.may("vault-manage") || caller.is_admin(),
        None => caller.holds_any(&secret.write_roles) || caller.may("vault-manage"),
    }
}

fn secret_path(owner: Option<&str>, name: &str) -> String {
    let name = utf8_percent_encode(name, NAME_KEEP);
    match owner {
        None => format!("/vault/api/v1/secrets/{name}"),
        Some(user) => format!(
            "/vault/api/v1/user/{}/secrets/{name}",
            utf8_percent_encode(user, NAME_KEEP)
        ),
    }
}

fn role_handles(store: &Store, ids: &[String]) -> Value {
    Value::Array(
        ids.iter()
            .map(|id| {
                let name = store
                    .roles
                    .iter()
                    .find(|r| &r.id == id)
                    .map(|r| r.name.clone());
                json!({"id": id, "name": name.clone().unwrap_or_default(), "deleted": name.is_none()})
            })
            .collect(),
    )
}

fn secret_json(store: &Store, secret: &SecretRecord, with_data: bool) -> Value {
    let mut out = json!({
        "name": secret.name,
        "read_roles": role_handles(store, &secret.read_roles),
        "write_roles": role_handles(store, &secret.write_roles),
        "author": secret.author,
        "path": secret_path(secret.owner_id.as_deref(), &secret.name),
        "updated_by": secret.updated_by,
        "created": secret.created,
        "updated": secret.updated,
    });
    if with_data {
        out["data"] = Value::Object(secret.data.clone());
    }
    if let Some(owner) = &secret.owner_id {
        out["owner_id"] = json!(owner);
    }
    out
}

/// The writable fields of a secret body, checked.
struct SecretWrite {
    data: Map<String, Value>,
    read_roles: Vec<String>,
    write_roles: Vec<String>,
}

fn parse_secret_write(store: &Store, body: &Value) -> Result<SecretWrite, ApiError> {
    let Value::Object(object) = body else {
        return Err(ApiError::new(
            400,
            "INVALID_REQUEST_DATA",
            "secret must be a JSON object",
        ));
    };
    let data = match object.get("data") {
        None | Some(Value::Null) => {
            return Err(ApiError::bad_request(
                "REQUIRED_VALUE_MISSING",
                "data",
                "data is required",
            ));
        }
        Some(Value::Object(data)) => data.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "VALUE_INCORRECT_TYPE",
                "data",
                "data must be a JSON object",
            ));
        }
    };
    let roles = |field: &str| -> Result<Vec<String>, ApiError> {
        let handles = match object.get(field) {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(handles)) => handles,
            Some(_) => {
                return Err(ApiError::bad_request(
                    "VALUE_INCORRECT_TYPE",
                    field,
                    format!("{field} must be an array of role handles"),
                ));
            }
        };
        let mut ids = Vec::new();
        for handle in handles {
            let id = handle.get("id").and_then(Value::as_str).ok_or_else(|| {
                ApiError::bad_request(
                    "REQUIRED_VALUE_MISSING",
                    field,
                    format!("every role handle in {field} needs an id"),
                )
            })?;
            if !store.roles.iter().any(|r| r.id == id) {
                return Err(ApiError::bad_request(
                    "INVALID_REQUEST_DATA",
                    field,
                    format!("{field} names unknown role id {id}"),
                ));
            }
            if !ids.iter().any(|known| known == id) {
                ids.push(id.to_string());
            }
        }
        Ok(ids)
    };
    Ok(SecretWrite {
        data,
        read_roles: roles("read_roles")?,
        write_roles: roles("write_roles")?,
    })
}

fn duplicate(state: &SimState, property: &str, message: String) -> ApiError {
    ApiError::new(state.config.duplicate_status, "VALUE_DUPLICATE", message).with_property(property)
}

fn list_secrets(
    state: &SimState,
    caller: &Caller,
    owner: Option<&str>,
    query: &HashMap<String, String>,
) -> Result<Json<Value>, ApiError> {
    let (offset, limit) = page(query)?;
    let store = lock(&state.store);
    if let Some(user) = owner {
        check_user(&store, user)?;
        if user != caller.client_id && !caller.may("vault-manage") && !caller.is_admin() {
            return Err(ApiError::forbidden(
                "listing another user's secrets needs vault-manage",
            ));
        }
    }
    let items = store
        .secrets
        .values()
        .filter(|s| s.owner_id.as_deref() == owner && can_see(caller, s))
        .map(|s| secret_json(&store, s, can_read(caller, s)))
        .collect();
    Ok(paged(state, items, offset, limit))
}

fn check_user(store: &Store, user: &str) -> Result<(), ApiError> {
    if store.user_ids.iter().any(|u| u == user) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("user {user} not found")).with_property("user_id"))
    }
}

fn create_secret(
    state: &SimState,
    caller: &Caller,
    owner: Option<String>,
    body: &Value,
) -> Result<Response, ApiError> {
    let mut store = lock(&state.store);
    if let Some(user) = &owner {
        check_user(&store, user)?;
        if let Some(body_owner) = body.get("owner_id").and_then(Value::as_str)
            && body_owner != user
        {
            return Err(ApiError::bad_request(
                "INVALID_REQUEST_DATA",
                "owner_id",
                "owner_id differs from the user in the path",
            ));
        }
    }
    let is_owner = owner.as_deref() == Some(caller.client_id.as_str());
    if !(is_owner || caller.may("vault-add") || caller.may("vault-manage") || caller.is_admin()) {
        return Err(ApiError::forbidden(
            "creating secrets needs vault-add or vault-manage",
        ));
    }
    let name = match body.get("name") {
        Some(Value::String(name)) if !name.is_empty() => name.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(ApiError::bad_request(
                "REQUIRED_VALUE_MISSING",
                "name",
                "name is required",
            ));
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "VALUE_INCORRECT_TYPE",
                "name",
                "name must be a string",
            ));
        }
    };
    let write = parse_secret_write(&store, body)?;
    let key: SecretKey = (owner.clone(), name.clone());
    if store.secrets.contains_key(&key) {
        return Err(duplicate(
            state,
            "name",
            format!("secret {name} already exists"),
        ));
    }
    let now = now_rfc3339();
    store.secrets.insert(
        key,
        SecretRecord {
            name: name.clone(),
            owner_id: owner.clone(),
            data: write.data,
            read_roles: write.read_roles,
            write_roles: write.write_roles,
            author: caller.client_id.clone(),
            created: now.clone(),
            updated: now,
            updated_by: caller.client_id.clone(),
        },
    );
    let mut response = (StatusCode::CREATED, Json(json!({"name": name}))).into_response();
    if owner.is_some() {
        let location = secret_path(owner.as_deref(), &name);
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
    }
    Ok(response)
}

fn find_secret<'a>(
    store: &'a Store,
    owner: Option<&str>,
    name: &str,
) -> Result<&'a SecretRecord, ApiError> {
    if let Some(user) = owner {
        check_user(store, user)?;
    }
    store
        .secrets
        .get(&(owner.map(str::to_string), name.to_string()))
        .ok_or_else(|| {
            ApiError::not_found(format!("secret {name} not found")).with_property("name")
        })
}

fn get_secret(
    state: &SimState,
    caller: &Caller,
    owner: Option<&str>,
    name: &str,
    metadata_only: bool,
) -> Result<Json<Value>, ApiError> {
    let store = lock(&state.store);
    let secret = find_secret(&store, owner, name)?;
    let readable = can_read(caller, secret);
    if !readable && !can_see(caller, secret) {
        return Err(ApiError::forbidden(format!("no access to secret {name}")));
    }
    if !readable && !metadata_only && state.config.unreadable_secret == UnreadableSecret::Forbidden
    {
        return Err(ApiError::forbidden(format!(
            "no read access to secret {name}"
        )));
    }
    Ok(Json(secret_json(
        &store,
        secret,
        readable && !metadata_only,
    )))
}

fn put_secret(
    state: &SimState,
    caller: &Caller,
    owner: Option<&str>,
    name: &str,
    body: &Value,
) -> Result<Response, ApiError> {
    let mut store = lock(&state.store);
    let secret = find_secret(&store, owner, name)?;
    if !can_write(caller, secret) {
        return Err(ApiError::forbidden(format!(
            "no write access to secret {name}"
        )));
    }
    let write = parse_secret_write(&store, body)?;
    let key = (owner.map(str::to_string), name.to_string());
    if let Some(secret) = store.secrets.get_mut(&key) {
        secret.data = write.data;
        secret.read_roles = write.read_roles;
        secret.write_roles = write.write_roles;
        secret.updated = now_rfc3339();
        secret.updated_by = caller.client_id.clone();
    }
    Ok(StatusCode::OK.into_response())
}

fn delete_secret(
    state: &SimState,
    caller: &Caller,
    owner: Option<&str>,
    name: &str,
) -> Result<Response, ApiError> {
    let mut store = lock(&state.store);
    let secret = find_secret(&store, owner, name)?;
    if !can_delete(caller, secret) {
        return Err(ApiError::forbidden(format!(
            "no right to delete secret {name}"
        )));
    }
    store
        .secrets
        .remove(&(owner.map(str::to_string), name.to_string()));
    Ok(StatusCode::OK.into_response())
}

type QueryMap = Query<HashMap<String, String>>;

async fn list_shared(
    State(s): State<Shared>,
    caller: Caller,
    Query(q): QueryMap,
) -> Result<Json<Value>, ApiError> {
    list_secrets(&s, &caller, None, &q)
}
async fn list_personal(
    State(s): State<Shared>,
    caller: Caller,
    Path(user): Path<String>,
    Query(q): QueryMap,
) -> Result<Json<Value>, ApiError> {
    list_secrets(&s, &caller, Some(&user), &q)
}
async fn create_shared(
    State(s): State<Shared>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    create_secret(&s, &caller, None, &body)
}
async fn create_personal(
    State(s): State<Shared>,
    caller: Caller,
    Path(user): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    create_secret(&s, &caller, Some(user), &body)
}
async fn get_shared(
    State(s): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    get_secret(&s, &caller, None, &name, false)
}
async fn get_personal(
    State(s): State<Shared>,
    caller: Caller,
    Path((user, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    get_secret(&s, &caller, Some(&user), &name, false)
}
async fn metadata_shared(
    State(s): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    get_secret(&s, &caller, None, &name, true)
}
async fn metadata_personal(
    State(s): State<Shared>,
    caller: Caller,
    Path((user, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    get_secret(&s, &caller, Some(&user), &name, true)
}
async fn put_shared(
    State(s): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    put_secret(&s, &caller, None, &name, &body)
}
async fn put_personal(
    State(s): State<Shared>,
    caller: Caller,
    Path((user, name)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    put_secret(&s, &caller, Some(&user), &name, &body)
}
async fn delete_shared(
    State(s): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    delete_secret(&s, &caller, None, &name)
}
async fn delete_personal(
    State(s): State<Shared>,
    caller: Caller,
    Path((user, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    delete_secret(&s, &caller, Some(&user), &name)
}

async fn search(
    State(state): State<Shared>,
    caller: Caller,
    Query(query): QueryMap,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let (offset, limit) = page(&query)?;
    let sort_key = query.get("sortkey").map(String::as_str).unwrap_or("name");
    if !["name", "updated", "created"].contains(&sort_key) {
        return Err(ApiError::bad_request(
            "INVALID_REQUEST_DATA",
            "sortkey",
            "sortkey must be name, updated or created",
        ));
    }
    let descending = match query.get("sortdir").map(|d| d.to_ascii_uppercase()) {
        None => false,
        Some(d) if d == "ASC" => false,
        Some(d) if d == "DESC" => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "INVALID_REQUEST_DATA",
                "sortdir",
                "sortdir must be ASC or DESC",
            ));
        }
    };
    let keywords: Vec<String> = body
        .get("keywords")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .split([' ', ','])
        .filter(|k| !k.is_empty())
        .map(str::to_lowercase)
        .collect();
    let owners: Vec<String> = body
        .get("owner_id")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let filter = body.get("filter").and_then(Value::as_str).unwrap_or("");
    if ![
        "",
        "personal",
        "shared",
        "readable",
        "writable",
        "accessible",
    ]
    .contains(&filter)
    {
        return Err(ApiError::bad_request(
            "INVALID_REQUEST_DATA",
            "filter",
            "filter must be personal, shared, readable, writable or accessible",
        ));
    }
    let store = lock(&state.store);
    let mut found: Vec<&SecretRecord> = store
        .secrets
        .values()
        .filter(|s| can_see(&caller, s))
        .filter(|s| {
            let name = s.name.to_lowercase();
            keywords.iter().all(|k| name.contains(k))
        })
        .filter(|s| owners.is_empty() || s.owner_id.as_ref().is_some_and(|o| owners.contains(o)))
        .filter(|s| match filter {
            "personal" => s.owner_id.is_some(),
            "shared" => s.owner_id.is_none(),
            "readable" => can_read(&caller, s),
            "writable" => can_write(&caller, s),
            "accessible" => can_read(&caller, s) || can_write(&caller, s),
            _ => true,
        })
        .collect();
    found.sort_by(|a, b| match sort_key {
        "updated" => a.updated.cmp(&b.updated),
        "created" => a.created.cmp(&b.created),
        _ => a.name.cmp(&b.name),
    });
    if descending {
        found.reverse();
    }
    let items = found
        .into_iter()
        .map(|s| secret_json(&store, s, false))
        .collect();
    Ok(paged(&state, items, offset, limit))
}

// ---------------------------------------------------------------------------------------------
// Password policies

fn require_admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "password policies need the privx-admin permission",
        ))
    }
}

fn policy_json(id: &str, policy: &PolicyRecord) -> Value {
    let mut out = policy.fields.clone();
    out.insert("id".into(), json!(id));
    out.insert("created".into(), json!(policy.created));
    out.insert("updated".into(), json!(policy.updated));
    out.insert("created_by".into(), json!(policy.created_by));
    out.insert("updated_by".into(), json!(policy.updated_by));
    Value::Object(out)
}

fn policy_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("password policy {id} not found")).with_property("id")
}

/// Validates a policy body and applies the normalising option.
fn checked_policy(state: &SimState, body: &Value) -> Result<Map<String, Value>, ApiError> {
    let fields = validate_policy(body, state.config.generation)?;
    if state.config.policy_normalise_durations {
        translate_policy(&fields, state.config.generation)
            .map_err(|m| ApiError::new(400, "VALUE_INCORRECT_FORMAT", m))
    } else {
        Ok(fields)
    }
}

fn check_policy_name(
    state: &SimState,
    store: &Store,
    fields: &Map<String, Value>,
    except_id: Option<&str>,
) -> Result<(), ApiError> {
    if !state.config.policy_unique_names {
        return Ok(());
    }
    let name = fields.get("name");
    let taken = store
        .policies
        .iter()
        .any(|(id, p)| Some(id.as_str()) != except_id && p.fields.get("name") == name);
    if taken {
        return Err(duplicate(
            state,
            "name",
            "a password policy with this name exists".to_string(),
        ));
    }
    Ok(())
}

async fn list_policies(
    State(state): State<Shared>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    let store = lock(&state.store);
    let mut items: Vec<(&String, &PolicyRecord)> = store.policies.iter().collect();
    let name = |p: &PolicyRecord| {
        p.fields
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    items.sort_by_key(|(_, p)| name(p));
    let items: Vec<Value> = items
        .into_iter()
        .map(|(id, p)| policy_json(id, p))
        .collect();
    let body = json!({"count": items.len(), "items": items});
    Ok(Json(match state.config.policy_list_shape {
        PolicyListShape::Object => body,
        PolicyListShape::WrappedInArray => json!([body]),
    }))
}

async fn create_policy(
    State(state): State<Shared>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let fields = checked_policy(&state, &body)?;
    let mut store = lock(&state.store);
    check_policy_name(&state, &store, &fields, None)?;
    let id = new_uuid();
    let now = now_rfc3339();
    store.policies.insert(
        id.clone(),
        PolicyRecord {
            fields,
            in_use: false,
            created: now.clone(),
            updated: now,
            created_by: caller.client_id.clone(),
            updated_by: caller.client_id.clone(),
        },
    );
    Ok((StatusCode::CREATED, Json(json!({"id": id}))).into_response())
}

async fn get_policy(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&caller)?;
    let store = lock(&state.store);
    let policy = store
        .policies
        .get(&id)
        .ok_or_else(|| policy_not_found(&id))?;
    Ok(Json(policy_json(&id, policy)))
}

async fn put_policy(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let fields = checked_policy(&state, &body)?;
    let mut store = lock(&state.store);
    if !store.policies.contains_key(&id) {
        return Err(policy_not_found(&id));
    }
    check_policy_name(&state, &store, &fields, Some(&id))?;
    let policy = store
        .policies
        .get_mut(&id)
        .ok_or_else(|| policy_not_found(&id))?;
    policy.fields = fields;
    policy.updated = now_rfc3339();
    policy.updated_by = caller.client_id.clone();
    if state.config.policy_put_empty_body {
        Ok(StatusCode::OK.into_response())
    } else {
        Ok(Json(policy_json(&id, policy)).into_response())
    }
}

async fn delete_policy(
    State(state): State<Shared>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let mut store = lock(&state.store);
    let policy = store
        .policies
        .get(&id)
        .ok_or_else(|| policy_not_found(&id))?;
    if policy.in_use {
        return Err(ApiError::bad_request(
            &state.config.policy_in_use_code,
            "id",
            "password policy is in use by hosts or target domains",
        ));
    }
    store.policies.remove(&id);
    Ok(StatusCode::OK.into_response())
}

// ---------------------------------------------------------------------------------------------
// Roles

fn role_json(role: &super::state::RoleRecord) -> Value {
    json!({"id": role.id, "name": role.name, "permissions": role.permissions})
}

async fn resolve_roles(
    State(state): State<Shared>,
    _caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let names: Vec<String> = match &body {
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => {
            return Err(ApiError::new(
                400,
                "INVALID_REQUEST_DATA",
                "body must be a JSON array of role names",
            ));
        }
    };
    let store = lock(&state.store);
    let items: Vec<Value> = store
        .roles
        .iter()
        .filter(|r| names.contains(&r.name))
        .map(role_json)
        .collect();
    Ok(Json(json!({"count": items.len(), "items": items})))
}

async fn list_roles(
    State(state): State<Shared>,
    _caller: Caller,
    Query(query): QueryMap,
) -> Result<Json<Value>, ApiError> {
    let (offset, limit) = page(&query)?;
    let store = lock(&state.store);
    let items = store.roles.iter().map(role_json).collect();
    Ok(paged(&state, items, offset, limit))
}

async fn get_role(
    State(state): State<Shared>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = lock(&state.store);
    store
        .roles
        .iter()
        .find(|r| r.id == id)
        .map(|r| Json(role_json(r)))
        .ok_or_else(|| ApiError::not_found(format!("role {id} not found")).with_property("id"))
}

/// For the connection layer: the error code a response was marked with.
pub(crate) fn error_code_of(response: &Response) -> Option<String> {
    response
        .extensions()
        .get::<ErrorCodeMark>()
        .map(|m| m.0.clone())
}
