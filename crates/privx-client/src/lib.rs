//! The PrivX REST client (../shared/privx-api/README.md sections 1–6).
//!
//! Owns authentication (one cached token, refreshed before expiry, single-flight), every
//! endpoint the operator uses, retries of retryable failures, typed errors and call metrics.
//! Must not know about Kubernetes.

mod auth;
pub mod config;
pub mod duration;
pub mod error;
pub mod model;
mod paging;
mod policy_wire;
mod retry;
mod routes;
mod transport;

use std::sync::{Arc, Mutex};

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use error::{CallContext, error_from_answer, parse_failure, sanitize};
use transport::{Answer, Transport, error_chain};

pub use config::{
    CredentialSource, CredentialValue, Credentials, PolicyGenerationSetting, PrivxConfig,
};
pub use error::PrivxError;
pub use model::{
    PasswordPolicy, PolicyGeneration, Role, RoleHandle, Secret, SecretData, SecretLocation,
    SecretWrite,
};

/// Result of a PrivX call.
pub type Result<T, E = PrivxError> = std::result::Result<T, E>;

/// One PrivX call as observed, for metrics (`endpoint` is a route template such as
/// `GET /vault/api/v1/secrets/{name}`, never a concrete name).
#[derive(Clone, Debug)]
pub struct CallRecord {
    pub endpoint: &'static str,
    /// HTTP status, or 0 when no answer came (connection failure, timeout).
    pub status: u16,
    pub duration: std::time::Duration,
}

/// Receives one record per HTTP request made to PrivX, and one per token refresh.
pub trait CallObserver: Send + Sync + 'static {
    fn on_call(&self, record: &CallRecord);
    fn on_token_refresh(&self, ok: bool);
}

/// The largest request body PrivX's front proxy accepts in its standard deployment.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The PrivX client. Cheap to clone; all clones share one token cache and one HTTP pool.
#[derive(Clone)]
pub struct PrivxClient {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    auth: auth::Auth,
    max_retries: u32,
    retry_base_delay: std::time::Duration,
    generation_setting: PolicyGenerationSetting,
    generation: Mutex<GenerationState>,
    detect_gate: tokio::sync::Mutex<()>,
    base_url: String,
}

/// What the client knows of the server's password-policy generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GenerationState {
    Unknown,
    /// Nothing told; the guess is corrected once by a refusal that names a
    /// generation-specific field.
    Guessed(PolicyGeneration),
    Known(PolicyGeneration),
}

impl std::fmt::Debug for PrivxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivxClient")
            .field("base_url", &self.inner.base_url)
            .finish_non_exhaustive()
    }
}

/// One request as the retry loop repeats it.
struct Call {
    method: Method,
    endpoint: &'static str,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    ctx: CallContext,
    /// Sent at most once: a create whose outcome is unknown (timeout, lost connection, 5xx)
    /// may have reached PrivX, and repeating it could create a second object. The caller
    /// re-reads and decides.
    at_most_once: bool,
}

impl Call {
    fn new(
        method: Method,
        endpoint: &'static str,
        path: String,
        operation: String,
        what: String,
    ) -> Self {
        Self {
            method,
            endpoint,
            path,
            query: Vec::new(),
            body: None,
            at_most_once: false,
            ctx: CallContext {
                operation,
                what,
                redact: Vec::new(),
            },
        }
    }

    fn json(mut self, body: &Value) -> Result<Self> {
        let bytes = serde_json::to_vec(body).expect("JSON values always serialize");
        if bytes.len() > MAX_BODY_BYTES {
            return Err(PrivxError::InvalidRequest {
                operation: self.ctx.operation.clone(),
                code: "REQUEST_TOO_LARGE".into(),
                property: None,
                message: format!(
                    "the request body is {} bytes; PrivX accepts at most {MAX_BODY_BYTES}",
                    bytes.len()
                ),
            });
        }
        self.body = Some(bytes);
        Ok(self)
    }

    /// Marks the call as sent at most once (creates).
    fn at_most_once(mut self) -> Self {
        self.at_most_once = true;
        self
    }

    /// Keeps the strings of `data` out of any error message about this call.
    fn redacting(mut self, data: &SecretData) -> Self {
        fn collect(value: &Value, out: &mut Vec<String>) {
            match value {
                Value::String(s) if s.chars().count() >= 3 => out.push(s.clone()),
                Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
                Value::Object(map) => map.values().for_each(|v| collect(v, out)),
                _ => {}
            }
        }
        data.0
            .values()
            .for_each(|v| collect(v, &mut self.ctx.redact));
        // Longest first, so that a value containing another is removed whole.
        self.ctx.redact.sort_by_key(|s| std::cmp::Reverse(s.len()));
        self
    }
}

impl PrivxClient {
    /// Builds a client. Fails on a bad URL (non-https to a non-loopback host), an unreadable
    /// CA bundle or missing credentials. Makes no network call.
    pub fn new(config: PrivxConfig) -> Result<Self> {
        let transport = Transport::new(&config)?;
        let auth = auth::Auth::new(&config.credentials)?;
        let generation = match config.policy_generation {
            PolicyGenerationSetting::Auto => GenerationState::Unknown,
            PolicyGenerationSetting::V34 => GenerationState::Known(PolicyGeneration::V34),
            PolicyGenerationSetting::V35 => GenerationState::Known(PolicyGeneration::V35),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                transport,
                auth,
                max_retries: config.max_retries,
                retry_base_delay: config.retry_base_delay,
                generation_setting: config.policy_generation,
                generation: Mutex::new(generation),
                detect_gate: tokio::sync::Mutex::new(()),
                base_url: config.checked_base_url()?.to_string(),
            }),
        })
    }

    /// Sets the observer that receives call records (for the operator's metrics). Applies to
    /// every clone.
    pub fn with_observer(self, observer: std::sync::Arc<dyn CallObserver>) -> Self {
        self.inner.transport.set_observer(observer);
        self
    }

    /// Checks that PrivX answers and the credentials work (a token grant, if none is cached).
    pub async fn ping(&self) -> Result<()> {
        self.with_retries(|| async { self.inner.auth.token(&self.inner.transport).await.map(drop) })
            .await
    }

    // ---- the request machinery ----

    /// Runs `attempt` until it succeeds, fails for good, or `max_retries` retries of
    /// retryable failures are spent.
    async fn with_retries<T, F, Fut>(&self, attempt: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut retries = 0;
        loop {
            match attempt().await {
                Err(PrivxError::Unavailable { retry_after, .. })
                    if retries < self.inner.max_retries =>
                {
                    let wait = retry::backoff(self.inner.retry_base_delay, retries, retry_after);
                    retries += 1;
                    tracing::debug!(
                        retry = retries,
                        wait_ms = wait.as_millis() as u64,
                        "PrivX unavailable; retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    /// Sends `call` (with retries, and one token refresh on a 401) and returns its successful
    /// answer, or the typed error of the last failure.
    async fn execute(&self, call: &Call) -> Result<Answer> {
        if call.at_most_once {
            // The token grant may be retried (nothing is created by it); the call is not.
            let token = self
                .with_retries(|| async { self.inner.auth.token(&self.inner.transport).await })
                .await?;
            return self.attempt(call, token).await;
        }
        self.with_retries(|| async {
            let token = self.inner.auth.token(&self.inner.transport).await?;
            self.attempt(call, token).await
        })
        .await
    }

    /// One send of `call` (with one token refresh on a 401), as a typed result.
    async fn attempt(&self, call: &Call, token: auth::Token) -> Result<Answer> {
        {
            let mut answer = self.send_once(call, &token).await?;
            if answer.status == 401 {
                // Refresh once (only if no one else has already) and retry once.
                self.inner.auth.invalidate(&token);
                let token = self.inner.auth.token(&self.inner.transport).await?;
                answer = self.send_once(call, &token).await?;
            }
            if (200..300).contains(&answer.status) {
                Ok(answer)
            } else {
                Err(error_from_answer(
                    &call.ctx,
                    answer.status,
                    answer.retry_after,
                    &answer.body,
                ))
            }
        }
    }

    async fn send_once(&self, call: &Call, token: &auth::Token) -> Result<Answer> {
        let transport = &self.inner.transport;
        let mut url = transport.url(&call.path)?;
        if !call.query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(call.query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut request = transport
            .client()
            .request(call.method.clone(), url)
            .bearer_auth(&*token.access)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = &call.body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        transport.send(call.endpoint, request).await.map_err(|e| {
            let message = if e.is_timeout() {
                "no answer within the timeout".to_string()
            } else {
                error_chain(&e)
            };
            PrivxError::Unavailable {
                operation: call.ctx.operation.clone(),
                message: sanitize(&message, &call.ctx.redact),
                retry_after: None,
            }
        })
    }

    async fn execute_json<T: DeserializeOwned>(&self, call: &Call) -> Result<T> {
        let answer = self.execute(call).await?;
        serde_json::from_slice(&answer.body).map_err(|e| parse_failure(&call.ctx, &e))
    }

    /// Reads every page of a `{count, items}` list.
    async fn list_paged<T: DeserializeOwned>(&self, mut call: Call) -> Result<Vec<T>> {
        let base_query = std::mem::take(&mut call.query);
        let mut all = Vec::new();
        let mut offset = 0;
        let mut previous_first: Option<Value> = None;
        for _ in 0..paging::MAX_PAGES {
            call.query = base_query.clone();
            call.query.push(("offset", offset.to_string()));
            call.query.push(("limit", paging::PAGE_LIMIT.to_string()));
            let page: paging::Page<Value> = self.execute_json(&call).await?;
            let len = page.items.len();
            if let Some(first) = page.items.first() {
                if offset > 0 && previous_first.as_ref() == Some(first) {
                    return Err(PrivxError::Other {
                        operation: call.ctx.operation.clone(),
                        message: format!(
                            "PrivX answered offset {offset} with the previous page again; it seems to ignore paging"
                        ),
                    });
                }
                previous_first = Some(first.clone());
            }
            for item in page.items {
                all.push(serde_json::from_value(item).map_err(|e| parse_failure(&call.ctx, &e))?);
            }
            match paging::next_offset(offset, paging::PAGE_LIMIT, page.count, len) {
                Some(next) => offset = next,
                None => return Ok(all),
            }
        }
        Err(PrivxError::Other {
            operation: call.ctx.operation,
            message: format!("the list did not end within {} pages", paging::MAX_PAGES),
        })
    }

    // ---- vault secrets (shared and personal) ----

    /// All secrets at a location (pages through).
    pub async fn list_secrets(&self, at: &SecretLocation) -> Result<Vec<Secret>> {
        let what = match at {
            SecretLocation::Shared => "shared secrets".to_string(),
            SecretLocation::Personal { user_id } => format!("personal secrets of user {user_id:?}"),
        };
        let call = Call::new(
            Method::GET,
            routes::secret_routes(at).list,
            routes::secrets_path(at)?,
            format!("list {what}"),
            what,
        );
        self.list_paged(call).await
    }

    /// One secret with its data (`data` is `None` if PrivX withholds it).
    pub async fn get_secret(&self, at: &SecretLocation, name: &str) -> Result<Secret> {
        let what = routes::describe_secret(at, name);
        let call = Call::new(
            Method::GET,
            routes::secret_routes(at).get,
            routes::secret_path(at, name)?,
            format!("get {what}"),
            what,
        );
        self.execute_json(&call).await
    }

    /// One secret's metadata (no data).
    pub async fn get_secret_metadata(&self, at: &SecretLocation, name: &str) -> Result<Secret> {
        let what = routes::describe_secret(at, name);
        let call = Call::new(
            Method::GET,
            routes::secret_routes(at).metadata,
            routes::secret_metadata_path(at, name)?,
            format!("get metadata of {what}"),
            what,
        );
        let mut secret: Secret = self.execute_json(&call).await?;
        secret.data = None;
        Ok(secret)
    }

    /// Creates a secret; `AlreadyExists` if the name is taken.
    pub async fn create_secret(
        &self,
        at: &SecretLocation,
        name: &str,
        body: &SecretWrite,
    ) -> Result<()> {
        routes::segment("secret name", name)?;
        let what = routes::describe_secret(at, name);
        let mut json = json!({
            "name": name,
            "data": body.data,
            "read_roles": body.read_roles,
            "write_roles": body.write_roles,
        });
        if let SecretLocation::Personal { user_id } = at {
            json["owner_id"] = json!(user_id);
        }
        let call = Call::new(
            Method::POST,
            routes::secret_routes(at).create,
            routes::secrets_path(at)?,
            format!("create {what}"),
            what,
        )
        .at_most_once()
        .redacting(&body.data)
        .json(&json)?;
        self.execute(&call).await.map(drop)
    }

    /// Replaces a secret's data and roles.
    pub async fn update_secret(
        &self,
        at: &SecretLocation,
        name: &str,
        body: &SecretWrite,
    ) -> Result<()> {
        let what = routes::describe_secret(at, name);
        let json = json!({
            "data": body.data,
            "read_roles": body.read_roles,
            "write_roles": body.write_roles,
        });
        let call = Call::new(
            Method::PUT,
            routes::secret_routes(at).update,
            routes::secret_path(at, name)?,
            format!("update {what}"),
            what,
        )
        .redacting(&body.data)
        .json(&json)?;
        self.execute(&call).await.map(drop)
    }

    /// Deletes a secret; `NotFound` if it is not there.
    pub async fn delete_secret(&self, at: &SecretLocation, name: &str) -> Result<()> {
        let what = routes::describe_secret(at, name);
        let call = Call::new(
            Method::DELETE,
            routes::secret_routes(at).delete,
            routes::secret_path(at, name)?,
            format!("delete {what}"),
            what,
        );
        self.execute(&call).await.map(drop)
    }

    /// Searches secrets (no data in the answers); pages through.
    pub async fn search_secrets(
        &self,
        keywords: &str,
        filter: Option<&str>,
    ) -> Result<Vec<Secret>> {
        let mut body = json!({ "keywords": keywords });
        if let Some(filter) = filter {
            body["filter"] = json!(filter);
        }
        let mut call = Call::new(
            Method::POST,
            routes::SEARCH,
            routes::SEARCH_PATH.to_string(),
            format!("search secrets for {keywords:?}"),
            "secret search".into(),
        )
        .json(&body)?;
        call.query = vec![("sortkey", "name".into()), ("sortdir", "ASC".into())];
        let mut found: Vec<Secret> = self.list_paged(call).await?;
        for secret in &mut found {
            secret.data = None;
        }
        Ok(found)
    }

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

    /// All roles (pages through).
    pub async fn list_roles(&self) -> Result<Vec<Role>> {
        let call = Call::new(
            Method::GET,
            routes::ROLES_LIST,
            routes::ROLES_PATH.to_string(),
            "list roles".into(),
            "roles".into(),
        );
        self.list_paged(call).await
    }

    /// One role by ID.
    pub async fn get_role(&self, id: &str) -> Result<Role> {
        let call = Call::new(
            Method::GET,
            routes::ROLE_GET,
            format!("{}/{}", routes::ROLES_PATH, routes::segment("role id", id)?),
            format!("get role {id:?}"),
            format!("role {id:?}"),
        );
        self.execute_json(&call).await
    }

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
        policy_wire::policy_list_items(body).ok_or_else(|| PrivxError::Other {
            operation: call.ctx.operation.clone(),
            message: "the answer is neither {count, items} nor a list".into(),
        })
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
    /// generation once (remembered) and sends again.
    async fn write_policy(
        &self,
        policy: &PasswordPolicy,
        make_call: impl Fn(&Value) -> Result<Call>,
    ) -> Result<Answer> {
        let generation = self.policy_generation().await?;
        let call = make_call(&policy_wire::to_wire(policy, generation)?)?;
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
                *self.inner.generation.lock().expect("generation lock") =
                    GenerationState::Known(generation);
                Ok(answer)
            }
            other => other,
        }
    }

    /// The configured generation setting (for status reporting).
    pub fn policy_generation_setting(&self) -> PolicyGenerationSetting {
        self.inner.generation_setting
    }
}
