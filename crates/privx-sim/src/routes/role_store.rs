//! The role-store service (docs/privx-api.md section 4): roles by name and by ID.

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
