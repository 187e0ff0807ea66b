//! The role-store service (docs/privx-api.md section 4): role names to role IDs, roles with
//! their permissions, and the caller's own user.

use reqwest::Method;
use serde_json::{Value, json};

use crate::core::Call;
use crate::error::parse_failure;
use crate::{CurrentUser, PrivxClient, PrivxError, Result, Role, policy_wire, routes};

impl PrivxClient {
    // ---- roles ----

    /// Resolves role names to roles; names PrivX does not know are absent from the answer.
    pub async fn resolve_roles(&self, names: &[String]) -> Result<Vec<Role>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let call = Call::new(
            Method::POST,
            routes::ROLES_RESOLVE,
            routes::ROLES_RESOLVE_PATH.to_string(),
            "resolve role names".into(),
            format!("roles {names:?}"),
        )
        .json(&json!(names))?;
        let answer: Value = self.execute_json(&call).await?;
        let items = policy_wire::policy_list_items(answer).ok_or_else(|| PrivxError::Other {
            operation: call.ctx.operation.clone(),
            message: "the answer is neither {count, items} nor a list".into(),
        })?;
        items
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(|e| parse_failure(&call.ctx, &e)))
            .collect()
    }

    /// Roles by name, with their permissions (`POST /roles/search`, body `{"name": [...]}` as
    /// the vendor's Go SDK sends it; pages through). Unknown names are absent from the answer.
    pub async fn search_roles(&self, names: &[String]) -> Result<Vec<Role>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = Call::new(
            Method::POST,
            routes::ROLES_SEARCH,
            routes::ROLES_SEARCH_PATH.to_string(),
            "search roles by name".into(),
            format!("roles {names:?}"),
        )
        .json(&json!({ "name": names }))?;
        call.query = vec![("sortkey", "name".into()), ("sortdir", "ASC".into())];
        self.list_paged(call).await
    }

    /// The caller's own user object with the roles it holds; `None` where PrivX is too old to
    /// have the endpoint (it answers 404 or 405).
    pub async fn current_user(&self) -> Result<Option<CurrentUser>> {
        let call = Call::new(
            Method::GET,
            routes::CURRENT_USER,
            routes::CURRENT_USER_PATH.to_string(),
            "read the current user".into(),
            "current user".into(),
        );
        match self.execute_unless(&call, &[404, 405]).await? {
            None => Ok(None),
            Some(answer) => serde_json::from_slice(&answer.body)
                .map(Some)
                .map_err(|e| parse_failure(&call.ctx, &e)),
        }
    }
}
