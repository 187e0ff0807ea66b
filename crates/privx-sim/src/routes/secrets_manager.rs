//! The secrets-manager service (docs/privx-api.md section 3): password policies of the
//! generation the simulator serves.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::vault::duplicate;
use super::{JsonBody, Shared};
use crate::PolicyListShape;
use crate::error::ApiError;
use crate::policy::{answer_fields, translate_policy, validate_policy};
use crate::state::{Caller, PolicyRecord, SimState, Store, lock, new_uuid, now_rfc3339};

fn require_admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "password policies need the privx-admin permission",
        ))
    }
}

fn policy_json(state: &SimState, id: &str, policy: &PolicyRecord) -> Value {
    let mut out = answer_fields(
        &policy.fields,
        state.config.generation,
        state.config.policy_unset_fields,
    );
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
    let fields = validate_policy(
        body,
        state.config.generation,
        state.config.policy_unknown_fields,
    )?;
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

pub(super) async fn list_policies(
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
        .map(|(id, p)| policy_json(&state, id, p))
        .collect();
    let body = json!({"count": items.len(), "items": items});
    Ok(Json(match state.config.policy_list_shape {
        PolicyListShape::Object => body,
        PolicyListShape::WrappedInArray => json!([body]),
    }))
}

pub(super) async fn create_policy(
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

pub(super) async fn get_policy(
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
    Ok(Json(policy_json(&state, &id, policy)))
}

pub(super) async fn put_policy(
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
        Ok(Json(policy_json(&state, &id, policy)).into_response())
    }
}

pub(super) async fn delete_policy(
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
