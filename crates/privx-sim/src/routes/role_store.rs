//! The role-store service (docs/privx-api.md section 4): roles by name and by ID, role search,
//! and the caller's own user object.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde_json::{Value, json};

use super::{JsonBody, QueryMap, Shared, page, paged};
use crate::error::ApiError;
use crate::state::{Caller, lock};

fn role_json(role: &crate::state::RoleRecord) -> Value {
    json!({"id": role.id, "name": role.name, "permissions": role.permissions})
}

pub(super) async fn resolve_roles(
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

pub(super) async fn list_roles(
    State(state): State<Shared>,
    _caller: Caller,
    Query(query): QueryMap,
) -> Result<Json<Value>, ApiError> {
    let (offset, limit) = page(&query)?;
    let store = lock(&state.store);
    let items = store.roles.iter().map(role_json).collect();
    Ok(paged(&state, items, offset, limit))
}

pub(super) async fn get_role(
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

/// `POST /roles/search` (the vendor's Go SDK `SearchRoles`): body `{"name": [...]}` (every
/// other field ignored), paging and `sortkey=name`, `sortdir`.
pub(super) async fn search_roles(
    State(state): State<Shared>,
    _caller: Caller,
    Query(query): QueryMap,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let (offset, limit) = page(&query)?;
    let names: Option<Vec<String>> = match body.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        ),
        Some(_) => {
            return Err(ApiError::bad_request(
                "VALUE_INCORRECT_TYPE",
                "name",
                "name must be an array of role names",
            ));
        }
    };
    if !body.is_object() {
        return Err(ApiError::new(
            400,
            "INVALID_REQUEST_DATA",
            "body must be a JSON object",
        ));
    }
    let descending = super::sort_descending(&query)?;
    let store = lock(&state.store);
    let mut found: Vec<&crate::state::RoleRecord> = store
        .roles
        .iter()
        .filter(|r| names.as_ref().is_none_or(|n| n.contains(&r.name)))
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    if descending {
        found.reverse();
    }
    let items = found.into_iter().map(role_json).collect();
    Ok(paged(&state, items, offset, limit))
}

/// `GET /users/current`: the caller (API client or user) with the roles it holds.
pub(super) async fn current_user(
    State(state): State<Shared>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let store = lock(&state.store);
    let (name, role_ids) = store
        .principal(&caller.client_id)
        .ok_or_else(|| ApiError::not_found("user not found"))?;
    let roles: Vec<Value> = store
        .roles
        .iter()
        .filter(|r| role_ids.contains(&r.id))
        .map(|r| json!({"id": r.id, "name": r.name, "explicit": true}))
        .collect();
    Ok(Json(json!({
        "id": caller.client_id,
        "username": name,
        "roles": roles,
    })))
}
