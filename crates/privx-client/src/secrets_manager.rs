//! The secrets-manager service (docs/privx-api.md section 3): password policies in both
//! generations, and detecting which generation the server speaks.

use reqwest::Method;
use serde_json::Value;

use crate::core::Call;
use crate::transport::Answer;
use crate::{
    GenerationState, PasswordPolicy, PolicyGeneration, PrivxClient, PrivxError, Result,
    policy_wire, routes,
};

impl PrivxClient {
    // ---- password policies ----

    /// The generation the server speaks (configured, or detected once and remembered).
    pub async fn policy_generation(&self) -> Result<PolicyGeneration> {
        if let Some(g) = self.known_or_guessed() {
            return Ok(g);
        }
        let _gate = self.inner.detect_gate.lock().await;
        if let Some(g) = self.known_or_guessed() {
            return Ok(g);
        }
        let detected = self.detect_generation().await?;
        *self.inner.generation.lock().expect("generation lock") = detected;
        match detected {
            GenerationState::Known(g) => {
                tracing::info!(
                    generation = policy_wire::generation_name(g),
                    "PrivX password-policy generation detected"
                );
                Ok(g)
            }
            GenerationState::Guessed(g) => {
                tracing::info!(
                    generation = policy_wire::generation_name(g),
                    "PrivX password-policy generation unknown; guessing"
                );
                Ok(g)
            }
            GenerationState::Unknown => unreachable!("detection always decides"),
        }
    }

    fn known_or_guessed(&self) -> Option<PolicyGeneration> {
        match *self.inner.generation.lock().expect("generation lock") {
            GenerationState::Known(g) | GenerationState::Guessed(g) => Some(g),
            GenerationState::Unknown => None,
        }
    }

    /// The secrets-manager's version if its status names one, else the shape of the listed
    /// policies, else a guess (the newer generation).
    async fn detect_generation(&self) -> Result<GenerationState> {
        let status = Call::new(
            Method::GET,
            routes::SECRETS_MANAGER_STATUS,
            routes::SECRETS_MANAGER_STATUS_PATH.to_string(),
            "read the secrets-manager status".into(),
            "secrets-manager status".into(),
        );
        match self.execute_json::<Value>(&status).await {
            Ok(body) => {
                if let Some(g) = policy_wire::generation_from_status(&body) {
                    return Ok(GenerationState::Known(g));
                }
            }
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) => tracing::debug!(error = %e, "no version from the secrets-manager status"),
        }
        for policy in self.list_policies_raw().await? {
            if let Some(g) = policy_wire::generation_from_policy(&policy) {
                return Ok(GenerationState::Known(g));
            }
        }
        Ok(GenerationState::Guessed(PolicyGeneration::V35))
    }

    async fn list_policies_raw(&self) -> Result<Vec<Value>> {
        let call = Call::new(
            Method::GET,
            routes::POLICIES_LIST,
            routes::POLICIES_PATH.to_string(),
            "list password policies".into(),
            "password policies".into(),
        );
        let body: Value = self.execute_json(&call).await?;
        let items = policy_wire::policy_list_items(body).ok_or_else(|| PrivxError::Other {
            operation: call.ctx.operation.clone(),
            message: "the answer is neither {count, items} nor a list".into(),
        })?;
        items.iter().for_each(|p| self.learn_generation_from(p));
        Ok(items)
    }

    /// While the generation is only guessed, a policy whose shape shows one decides it.
    fn learn_generation_from(&self, policy: &Value) {
        let mut state = self.inner.generation.lock().expect("generation lock");
        let GenerationState::Guessed(guess) = *state else {
            return;
        };
        if let Some(shown) = policy_wire::generation_from_policy(policy) {
            if shown != guess {
                tracing::info!(
                    generation = policy_wire::generation_name(shown),
                    "a PrivX password policy shows the other generation; switching"
                );
            }
            *state = GenerationState::Known(shown);
        }
    }

    fn policy_from_value(operation: &str, value: Value) -> Result<PasswordPolicy> {
        policy_wire::from_wire(value).map_err(|message| PrivxError::Other {
            operation: operation.to_string(),
            message,
        })
    }

    pub async fn list_policies(&self) -> Result<Vec<PasswordPolicy>> {
        self.list_policies_raw()
            .await?
            .into_iter()
            .map(|v| Self::policy_from_value("list password policies", v))
            .collect()
    }

    pub async fn get_policy(&self, id: &str) -> Result<PasswordPolicy> {
        let call = Call::new(
            Method::GET,
            routes::POLICY_GET,
            format!(
                "{}/{}",
                routes::POLICY_PATH,
                routes::segment("policy id", id)?
            ),
            format!("get password policy {id:?}"),
            format!("password policy {id:?}"),
        );
        let body: Value = self.execute_json(&call).await?;
        self.learn_generation_from(&body);
        Self::policy_from_value(&call.ctx.operation, body)
    }

    /// Creates a policy and returns its ID.
    pub async fn create_policy(&self, policy: &PasswordPolicy) -> Result<String> {
        let mut policy = policy.clone();
        policy.id = None;
        let answer = self
            .write_policy(&policy, |body| {
                Call::new(
                    Method::POST,
                    routes::POLICY_CREATE,
                    routes::POLICY_PATH.to_string(),
                    format!("create password policy {:?}", policy.name),
                    format!("password policy {:?}", policy.name),
                )
                .at_most_once()
                .json(body)
            })
            .await?;
        #[derive(serde::Deserialize)]
        struct Created {
            id: String,
        }
        serde_json::from_slice::<Created>(&answer.body)
            .map(|c| c.id)
            .map_err(|_| PrivxError::Other {
                operation: format!("create password policy {:?}", policy.name),
                message: "the answer carries no policy id".into(),
            })
    }

    pub async fn update_policy(&self, id: &str, policy: &PasswordPolicy) -> Result<()> {
        let path = format!(
            "{}/{}",
            routes::POLICY_PATH,
            routes::segment("policy id", id)?
        );
        let mut policy = policy.clone();
        policy.id = Some(id.to_string());
        self.write_policy(&policy, |body| {
            Call::new(
                Method::PUT,
                routes::POLICY_UPDATE,
                path.clone(),
                format!("update password policy {id:?}"),
                format!("password policy {id:?}"),
            )
            .json(body)
        })
        .await
        .map(drop)
    }

    pub async fn delete_policy(&self, id: &str) -> Result<()> {
        let call = Call::new(
            Method::DELETE,
            routes::POLICY_DELETE,
            format!(
                "{}/{}",
                routes::POLICY_PATH,
                routes::segment("policy id", id)?
            ),
            format!("delete password policy {id:?}"),
            format!("password policy {id:?}"),
        );
        self.execute(&call).await.map(drop)
    }

    /// Sends a policy in the server's generation. While the generation is only guessed, a
    /// refusal naming a duration or generation-specific field switches to the other
    /// generation once (remembered) and sends again; an accepted body with a duration
    /// confirms the guess.
    async fn write_policy(
        &self,
        policy: &PasswordPolicy,
        make_call: impl Fn(&Value) -> Result<Call>,
    ) -> Result<Answer> {
        let generation = self.policy_generation().await?;
        let body = policy_wire::to_wire(policy, generation)?;
        let call = make_call(&body)?;
        let result = self.execute(&call).await;
        let guessed = matches!(
            *self.inner.generation.lock().expect("generation lock"),
            GenerationState::Guessed(_)
        );
        if !guessed {
            return result;
        }
        match result {
            Err(PrivxError::InvalidRequest {
                property: Some(ref property),
                ..
            }) if policy_wire::property_suggests_other_generation(property) => {
                let other = policy_wire::other(generation);
                tracing::info!(
                    field = %property,
                    generation = policy_wire::generation_name(other),
                    "PrivX refused a password-policy field; switching generation"
                );
                *self.inner.generation.lock().expect("generation lock") =
                    GenerationState::Known(other);
                let call = make_call(&policy_wire::to_wire(policy, other)?)?;
                self.execute(&call).await
            }
            Ok(answer) => {
                // Only a duration's spelling is checked by every server; generation-only
                // fields prove nothing to one that ignores unknown fields. Without a duration
                // the guess stands until a policy read shows the generation.
                if policy_wire::has_duration(&body) {
                    *self.inner.generation.lock().expect("generation lock") =
                        GenerationState::Known(generation);
                }
                Ok(answer)
            }
            other => other,
        }
    }
}
