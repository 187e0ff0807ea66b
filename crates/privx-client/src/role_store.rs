//! The role-store service (docs/privx-api.md section 4): role names to role IDs.

use reqwest::Method;
use serde_json::{Value, json};

use crate::core::Call;
use crate::error::parse_failure;
use crate::{PrivxClient, PrivxError, Result, Role, policy_wire, routes};

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
}
