//! The vault service (docs/privx-api.md section 2): shared and personal secrets, search.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};

use super::{JsonBody, QueryMap, Shared, page, paged};
use crate::UnreadableSecret;
use crate::error::ApiError;
use crate::state::{Caller, SecretKey, SecretRecord, SimState, Store, lock, now_rfc3339};

/// Path characters kept as they are in `Location` and `path`; everything else is
/// percent-encoded (so `/` in a name becomes `%2F`, as PrivX's Go SDK does).
const NAME_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

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

pub(super) fn duplicate(state: &SimState, property: &str, message: String) -> ApiError {
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

pub(super) async fn list_shared(
    State(s): State<Shared>,
    caller: Caller,
    Query(q): QueryMap,
) -> Result<Json<Value>, ApiError> {
    list_secrets(&s, &caller, None, &q)
}
pub(super) async fn list_personal(
    State(s): State<Shared>,
    caller: Caller,
    Path(user): Path<String>,
    Query(q): QueryMap,
) -> Result<Json<Value>, ApiError> {
    list_secrets(&s, &caller, Some(&user), &q)
}
pub(super) async fn create_shared(
    State(s): State<Shared>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    create_secret(&s, &caller, None, &body)
}
pub(super) async fn create_personal(
    State(s): State<Shared>,
    caller: Caller,
    Path(user): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    create_secret(&s, &caller, Some(user), &body)
}
pub(super) async fn get_shared(
    State(s): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    get_secret(&s, &caller, None, &name, false)
}
pub(super) async fn get_personal(
    State(s): State<Shared>,
    caller: Caller,
    Path((user, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    get_secret(&s, &caller, Some(&user), &name, false)
}
pub(super) async fn metadata_shared(
    State(s): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    get_secret(&s, &caller, None, &name, true)
}
pub(super) async fn metadata_personal(
    State(s): State<Shared>,
    caller: Caller,
    Path((user, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    get_secret(&s, &caller, Some(&user), &name, true)
}
pub(super) async fn put_shared(
    State(s): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    put_secret(&s, &caller, None, &name, &body)
}
pub(super) async fn put_personal(
    State(s): State<Shared>,
    caller: Caller,
    Path((user, name)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    put_secret(&s, &caller, Some(&user), &name, &body)
}
pub(super) async fn delete_shared(
    State(s): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    delete_secret(&s, &caller, None, &name)
}
pub(super) async fn delete_personal(
    State(s): State<Shared>,
    caller: Caller,
    Path((user, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    delete_secret(&s, &caller, Some(&user), &name)
}

pub(super) async fn search(
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
    let descending = super::sort_descending(&query)?;
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

/// `GET /schemas` (the vendor's Go SDK `GetSchemas`): the JSON schemas of PrivX's typed
/// secrets. A small set in PrivX's shape; nothing enforces them on writes.
pub(super) async fn schemas(_caller: Caller) -> Json<Value> {
    let string = || json!({"type": "string"});
    Json(json!([
        {
            "name": "password",
            "title": "Password",
            "schema": {
                "type": "object",
                "properties": {"username": string(), "password": string()},
                "required": ["password"],
            },
        },
        {
            "name": "ssh-key",
            "title": "SSH key pair",
            "schema": {
                "type": "object",
                "properties": {"private_key": string(), "public_key": string(), "passphrase": string()},
                "required": ["private_key"],
            },
        },
        {
            "name": "api-key",
            "title": "API key",
            "schema": {
                "type": "object",
                "properties": {"api_key": string(), "api_secret": string()},
                "required": ["api_key"],
            },
        },
    ]))
}
