//! The auth service (docs/privx-api.md section 1): the password grant, the token exchange
//! (`token/login`, JWTs of the seed's trusted issuers, checked in `jwt.rs`), and the `/status`
//! answer every service shares.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{CallerMark, LimitedBody, Shared};
use crate::SimPolicyGeneration;
use crate::error::OAuthError;
use crate::state::{SimState, lock};

pub(super) async fn token(
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

pub(super) async fn token_login(
    State(state): State<Shared>,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody,
) -> Response {
    match login(&state, &headers, &body) {
        Ok((principal, response)) => {
            let mut response = response;
            response.extensions_mut().insert(CallerMark(principal));
            response
        }
        Err(error) => error.into_response(),
    }
}

fn login(
    state: &SimState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, Response), OAuthError> {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !json_type.starts_with("application/json") {
        return Err(OAuthError::new(
            400,
            "invalid_request",
            "body must be application/json",
        ));
    }
    let request: Value = serde_json::from_slice(body)
        .map_err(|_| OAuthError::new(400, "invalid_request", "body is not a JSON object"))?;
    let Some(token) = request.get("token").and_then(Value::as_str) else {
        return Err(OAuthError::new(400, "invalid_request", "token is required"));
    };
    for field in ["client_id", "scope"] {
        if request.get(field).is_some_and(|v| !v.is_string()) {
            return Err(OAuthError::new(
                400,
                "invalid_request",
                format!("{field} must be a string"),
            ));
        }
    }
    let principal = {
        let store = lock(&state.store);
        crate::jwt::verify(&store.issuers, token, jiff::Timestamp::now().as_second())?
    };
    let (access_token, lifetime) = state.issue_token(&principal);
    let body = json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": lifetime.as_secs(),
        "scope": request.get("scope").and_then(Value::as_str).unwrap_or("privx-api"),
    });
    Ok((principal, Json(body).into_response()))
}

fn hex_token() -> String {
    rand::random::<[u8; 24]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(super) async fn status(State(state): State<Shared>) -> Json<Value> {
    let mut body = json!({"status": "ok", "api_version": "v1"});
    if state.config.report_version {
        let version = match state.config.generation {
            SimPolicyGeneration::V34 => "34.2.0",
            SimPolicyGeneration::V35 => "35.1.0",
        };
        // The vendor's Go SDK reads `version`; older tools read `app_version`: both are sent.
        body["version"] = json!(version);
        body["app_version"] = json!(version);
    }
    Json(body)
}
