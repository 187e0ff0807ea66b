//! The simulator's in-memory state: the store (roles, API clients, users, secrets, policies,
//! tokens), the configuration fixed at start, faults, the request log and counters. Handlers
//! lock the store briefly and never across an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::ApiError;
use super::fault::Fault;
use super::policy::translate_policy;
use super::seed::{Seed, SeedError};
use super::{
    ListCount, PolicyListShape, PolicyUnknownFields, PolicyUnsetFields, SimCredentials, SimOptions,
    SimPolicyGeneration, UnreadableSecret,
};

/// One request as the simulator saw it (also as `GET /_sim/requests` answers it). Never holds
/// bodies or secret data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoggedRequest {
    pub method: String,
    /// `METHOD /route/{template}`; `METHOD *` for paths no route matches.
    pub route: String,
    /// The concrete path as sent (still percent-encoded), without the query.
    pub path: String,
    /// The answered status; 0 when the connection was dropped without an answer.
    pub status: u16,
    pub error_code: Option<String>,
    /// The calling API client's client id, when known.
    pub client_id: Option<String>,
}

impl LoggedRequest {
    /// Whether this request changed PrivX: a `POST`, `PUT` or `DELETE` answered 2xx, other
    /// than the read-only POSTs of [`READ_ONLY_POSTS`](crate::READ_ONLY_POSTS). A refused write
    /// (4xx), a failed one and an unanswered one (status 0) are not writes. A write handled
    /// before an `afterHandling` fault replaced its answer is logged with the fault's status
    /// and so is not counted either.
    pub fn is_write(&self) -> bool {
        let changing_method = matches!(self.method.as_str(), "POST" | "PUT" | "DELETE");
        let read_only_post = self.method == "POST"
            && self
                .route
                .strip_prefix("POST ")
                .is_some_and(|template| crate::READ_ONLY_POSTS.contains(&template));
        changing_method && (200..300).contains(&self.status) && !read_only_post
    }
}

/// How often one route was called, by status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointCounter {
    pub count: u64,
    pub by_status: BTreeMap<u16, u64>,
}

/// The answers chosen at start for behaviour PrivX leaves unknown.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub duplicate_status: u16,
    pub generation: SimPolicyGeneration,
    pub report_version: bool,
    pub unreadable_secret: UnreadableSecret,
    pub list_count: ListCount,
    pub policy_list_shape: PolicyListShape,
    pub policy_put_empty_body: bool,
    pub policy_unique_names: bool,
    pub policy_normalise_durations: bool,
    pub policy_in_use_code: String,
    pub policy_unknown_fields: PolicyUnknownFields,
    pub policy_unset_fields: PolicyUnsetFields,
}

pub(crate) struct RoleRecord {
    pub id: String,
    pub name: String,
    pub permissions: Vec<String>,
}

pub(crate) struct ClientRecord {
    pub name: String,
    pub oauth_client_id: String,
    pub oauth_client_secret: String,
    pub client_id: String,
    pub client_secret: String,
    pub role_ids: Vec<String>,
}

pub(crate) struct UserRecord {
    pub id: String,
    pub username: String,
    pub role_ids: Vec<String>,
}

pub(crate) struct SecretRecord {
    pub name: String,
    pub owner_id: Option<String>,
    pub data: Map<String, Value>,
    pub read_roles: Vec<String>,
    pub write_roles: Vec<String>,
    pub author: String,
    pub created: String,
    pub updated: String,
    pub updated_by: String,
}

pub(crate) struct PolicyRecord {
    pub fields: Map<String, Value>,
    pub in_use: bool,
    pub created: String,
    pub updated: String,
    pub created_by: String,
    pub updated_by: String,
}

pub(crate) struct TokenRecord {
    pub client_id: String,
    pub expires_at: Instant,
}

/// Secrets are keyed by (owner, name): shared secrets have no owner; each user's personal vault
/// is its own namespace.
pub(crate) type SecretKey = (Option<String>, String);

pub(crate) struct Store {
    pub roles: Vec<RoleRecord>,
    pub clients: Vec<ClientRecord>,
    pub user_ids: Vec<String>,
    pub users: Vec<UserRecord>,
    pub issuers: Vec<super::jwt::IssuerRecord>,
    pub secrets: BTreeMap<SecretKey, SecretRecord>,
    pub policies: BTreeMap<String, PolicyRecord>,
    pub tokens: HashMap<String, TokenRecord>,
}

impl Store {
    /// An API client (by client id) or a user (by user id): its name and role ids.
    pub fn principal(&self, id: &str) -> Option<(&str, &[String])> {
        self.clients
            .iter()
            .find(|c| c.client_id == id)
            .map(|c| (c.name.as_str(), c.role_ids.as_slice()))
            .or_else(|| {
                self.users
                    .iter()
                    .find(|u| u.id == id)
                    .map(|u| (u.username.as_str(), u.role_ids.as_slice()))
            })
    }
}

/// The authenticated caller of a PrivX route.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub client_id: String,
    pub role_ids: Vec<String>,
    pub permissions: Vec<String>,
}

impl Caller {
    pub fn may(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission)
    }
    pub fn is_admin(&self) -> bool {
        self.may("privx-admin")
    }
    pub fn holds_any(&self, roles: &[String]) -> bool {
        roles.iter().any(|r| self.role_ids.contains(r))
    }
}

pub(crate) struct SimState {
    pub config: Config,
    pub store: Mutex<Store>,
    pub faults: Mutex<Vec<Fault>>,
    pub log: Mutex<Vec<LoggedRequest>>,
    pub counters: Mutex<BTreeMap<String, EndpointCounter>>,
    pub token_lifetime: Mutex<Duration>,
    pub in_flight: InFlight,
}

/// PrivX requests being handled now, and the most at once since the last reset (for tests
/// and benchmarks of a client's concurrency bound).
#[derive(Default)]
pub(crate) struct InFlight {
    now: std::sync::atomic::AtomicUsize,
    max: std::sync::atomic::AtomicUsize,
}

/// Counts one request as in flight until dropped.
pub(crate) struct InFlightGuard<'a>(&'a InFlight);

impl InFlight {
    pub fn enter(&self) -> InFlightGuard<'_> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.now.fetch_add(1, SeqCst) + 1;
        self.max.fetch_max(now, SeqCst);
        InFlightGuard(self)
    }

    /// (now, most at once since the last reset).
    pub fn get(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::SeqCst;
        (self.now.load(SeqCst), self.max.load(SeqCst))
    }

    /// Starts the high-water mark again from the requests in flight now.
    pub fn reset_max(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.max.store(self.now.load(SeqCst), SeqCst);
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking handler must not take the whole simulator down with a poisoned lock.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

pub(crate) fn new_uuid() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

impl SimState {
    pub fn new(options: &SimOptions) -> anyhow::Result<SimState> {
        for fault in &options.faults {
            // Faults from the CLI were checked when parsed; in-process ones are checked here.
            fault.validate()?;
        }
        let store = build_store(&options.seed, options.policy_generation)?;
        Ok(SimState {
            config: Config {
                duplicate_status: options.duplicate_status,
                generation: options.policy_generation,
                report_version: options.report_version,
                unreadable_secret: options.unreadable_secret,
                list_count: options.list_count,
                policy_list_shape: options.policy_list_shape,
                policy_put_empty_body: options.policy_put_empty_body,
                policy_unique_names: options.policy_unique_names,
                policy_normalise_durations: options.policy_normalise_durations,
                policy_in_use_code: options.policy_in_use_code.clone(),
                policy_unknown_fields: options.policy_unknown_fields,
                policy_unset_fields: options.policy_unset_fields,
            },
            store: Mutex::new(store),
            faults: Mutex::new(options.faults.clone()),
            log: Mutex::new(Vec::new()),
            counters: Mutex::new(BTreeMap::new()),
            token_lifetime: Mutex::new(options.token_lifetime),
            in_flight: InFlight::default(),
        })
    }

    pub fn credentials(&self) -> Vec<(String, SimCredentials)> {
        lock(&self.store)
            .clients
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    SimCredentials {
                        oauth_client_id: c.oauth_client_id.clone(),
                        oauth_client_secret: c.oauth_client_secret.clone(),
                        api_client_id: c.client_id.clone(),
                        api_client_secret: c.client_secret.clone(),
                    },
                )
            })
            .collect()
    }

    /// The caller behind a bearer token: 401 when missing, unknown or expired.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, ApiError> {
        let Some(header) = authorization else {
            return Err(ApiError::unauthorized("authorization missing"));
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::unauthorized("authorization is not a bearer token"))?;
        let store = lock(&self.store);
        let record = store
            .tokens
            .get(token.trim())
            .ok_or_else(|| ApiError::unauthorized("invalid access token"))?;
        if Instant::now() >= record.expires_at {
            return Err(ApiError::unauthorized("access token expired"));
        }
        let role_ids = store
            .principal(&record.client_id)
            .map(|(_, roles)| roles.to_vec())
            .ok_or_else(|| ApiError::unauthorized("invalid access token"))?;
        let permissions = store
            .roles
            .iter()
            .filter(|r| role_ids.contains(&r.id))
            .flat_map(|r| r.permissions.iter().cloned())
            .collect();
        Ok(Caller {
            client_id: record.client_id.clone(),
            role_ids,
            permissions,
        })
    }

    /// The client id behind a bearer token, expired or not (for the request log).
    pub fn client_of_authorization(&self, authorization: Option<&str>) -> Option<String> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        lock(&self.store)
            .tokens
            .get(token)
            .map(|t| t.client_id.clone())
    }

    /// The fault to apply to a request, if any: summed latency of every fault that fires, and
    /// the first firing fault that answers (status or dropped connection).
    pub fn pick_fault(
        &self,
        method: &str,
        template: &str,
        path: &str,
    ) -> (Duration, Option<Fault>) {
        let mut faults = lock(&self.faults);
        let mut latency = Duration::ZERO;
        for fault in faults.iter_mut() {
            if !fault.matches(method, template, path) {
                continue;
            }
            if fault.rate < 1.0 && rand::random::<f64>() >= fault.rate {
                continue;
            }
            if let Some(n) = fault.next.as_mut() {
                *n -= 1;
            }
            latency += Duration::from_millis(fault.latency_ms);
            if fault.status.is_some() || fault.drop_connection {
                return (latency, Some(fault.clone()));
            }
        }
        (latency, None)
    }

    pub fn record(&self, request: LoggedRequest) {
        {
            let mut counters = lock(&self.counters);
            let counter = counters.entry(request.route.clone()).or_default();
            counter.count += 1;
            *counter.by_status.entry(request.status).or_default() += 1;
        }
        lock(&self.log).push(request);
    }

    pub fn issue_token(&self, client_id: &str) -> (String, Duration) {
        let lifetime = *lock(&self.token_lifetime);
        let token = jwt_looking_token(client_id, lifetime);
        lock(&self.store).tokens.insert(
            token.clone(),
            TokenRecord {
                client_id: client_id.to_string(),
                expires_at: Instant::now() + lifetime,
            },
        );
        (token, lifetime)
    }

    pub fn expire_all_tokens(&self) {
        let now = Instant::now();
        for token in lock(&self.store).tokens.values_mut() {
            token.expires_at = now;
        }
    }

    pub fn set_policy_in_use(&self, id: &str, in_use: bool) -> bool {
        match lock(&self.store).policies.get_mut(id) {
            Some(policy) => {
                policy.in_use = in_use;
                true
            }
            None => false,
        }
    }
}

/// An opaque token shaped like a JWT (`header.payload.signature`, base64url) so that clients
/// which peek at `exp` find it; the signature is random and nothing verifies it.
fn jwt_looking_token(client_id: &str, lifetime: Duration) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = jiff::Timestamp::now().as_second();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = serde_json::json!({
        "sub": client_id,
        "iat": now,
        "exp": now + lifetime.as_secs() as i64,
        "jti": new_uuid(),
    });
    let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
    let signature = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    format!("{header}.{payload}.{signature}")
}

fn build_store(seed: &Seed, generation: SimPolicyGeneration) -> Result<Store, SeedError> {
    let mut roles: Vec<RoleRecord> = Vec::new();
    for role in &seed.roles {
        if roles.iter().any(|r| r.id == role.id || r.name == role.name) {
            return Err(SeedError::Duplicate {
                what: format!("role {:?}", role.name),
            });
        }
        roles.push(RoleRecord {
            id: role.id.clone(),
            name: role.name.clone(),
            permissions: role.permissions.clone(),
        });
    }
    let role_ids = |what: &str, names: &[String]| -> Result<Vec<String>, SeedError> {
        names
            .iter()
            .map(|name| {
                roles
                    .iter()
                    .find(|r| &r.name == name)
                    .map(|r| r.id.clone())
                    .ok_or_else(|| SeedError::UnknownRole {
                        what: what.to_string(),
                        role: name.clone(),
                    })
            })
            .collect()
    };
    let mut clients: Vec<ClientRecord> = Vec::new();
    for client in &seed.api_clients {
        if clients
            .iter()
            .any(|c| c.name == client.name || c.client_id == client.client_id)
        {
            return Err(SeedError::Duplicate {
                what: format!("API client {:?}", client.name),
            });
        }
        clients.push(ClientRecord {
            name: client.name.clone(),
            oauth_client_id: client.oauth_client_id.clone(),
            oauth_client_secret: client.oauth_client_secret.clone(),
            client_id: client.client_id.clone(),
            client_secret: client.client_secret.clone(),
            role_ids: role_ids(&format!("API client {:?}", client.name), &client.roles)?,
        });
    }
    let mut user_ids: Vec<String> = Vec::new();
    let mut users: Vec<UserRecord> = Vec::new();
    for user in &seed.users {
        let roles = role_ids(&format!("user {:?}", user.username), &user.roles)?;
        user_ids.push(user.id.clone());
        users.push(UserRecord {
            id: user.id.clone(),
            username: user.username.clone(),
            role_ids: roles,
        });
    }
    let mut issuers = Vec::new();
    for issuer in &seed.trusted_issuers {
        issuers.push(super::jwt::IssuerRecord::from_seed(
            issuer,
            |subject| match (&subject.api_client, &subject.user) {
                (Some(name), None) => clients
                    .iter()
                    .find(|c| &c.name == name)
                    .map(|c| c.client_id.clone())
                    .ok_or_else(|| {
                        format!("subject {:?}: no API client {name:?}", subject.subject)
                    }),
                (None, Some(name)) => users
                    .iter()
                    .find(|u| &u.username == name)
                    .map(|u| u.id.clone())
                    .ok_or_else(|| format!("subject {:?}: no user {name:?}", subject.subject)),
                _ => Err(format!(
                    "subject {:?} needs exactly one of apiClient and user",
                    subject.subject
                )),
            },
        )?);
    }
    user_ids.extend(clients.iter().map(|c| c.client_id.clone()));
    let now = now_rfc3339();
    let seeder = "seed".to_string();
    let mut secrets = BTreeMap::new();
    for secret in &seed.secrets {
        if let Some(owner) = &secret.owner_id
            && !user_ids.contains(owner)
        {
            return Err(SeedError::UnknownOwner {
                secret: secret.name.clone(),
                owner: owner.clone(),
            });
        }
        let what = format!("secret {:?}", secret.name);
        let record = SecretRecord {
            name: secret.name.clone(),
            owner_id: secret.owner_id.clone(),
            data: secret.data.clone(),
            read_roles: role_ids(&what, &secret.read_roles)?,
            write_roles: role_ids(&what, &secret.write_roles)?,
            author: secret.owner_id.clone().unwrap_or_else(|| seeder.clone()),
            created: now.clone(),
            updated: now.clone(),
            updated_by: secret.owner_id.clone().unwrap_or_else(|| seeder.clone()),
        };
        let key = (secret.owner_id.clone(), secret.name.clone());
        if secrets.insert(key, record).is_some() {
            return Err(SeedError::Duplicate { what });
        }
    }
    let mut policies = BTreeMap::new();
    for policy in &seed.policies {
        let name = policy
            .fields
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let fields =
            translate_policy(&policy.fields, generation).map_err(|message| SeedError::Policy {
                policy: name.clone(),
                field: message.split(':').next().unwrap_or_default().to_string(),
                message,
            })?;
        // Seed policies must pass the same validation as API writes.
        super::policy::validate_policy(
            &Value::Object(fields.clone()),
            generation,
            PolicyUnknownFields::Refuse,
        )
        .map_err(|e| SeedError::Policy {
            policy: name.clone(),
            field: e.property.clone().unwrap_or_default(),
            message: e.message.clone(),
        })?;
        let id = policy.id.clone().unwrap_or_else(new_uuid);
        let record = PolicyRecord {
            fields,
            in_use: policy.in_use,
            created: now.clone(),
            updated: now.clone(),
            created_by: seeder.clone(),
            updated_by: seeder.clone(),
        };
        if policies.insert(id, record).is_some() {
            return Err(SeedError::Duplicate {
                what: format!("password policy {name:?}"),
            });
        }
    }
    Ok(Store {
        roles,
        clients,
        user_ids,
        users,
        issuers,
        secrets,
        policies,
        tokens: HashMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::LoggedRequest;

    fn logged(route: &str, status: u16) -> LoggedRequest {
        let method = route.split(' ').next().unwrap_or_default().to_string();
        LoggedRequest {
            method,
            route: route.to_string(),
            path: String::new(),
            status,
            error_code: None,
            client_id: None,
        }
    }

    #[test]
    fn a_write_is_a_successful_state_changing_request() {
        for (route, status) in [
            ("POST /vault/api/v1/secrets", 201),
            ("POST /vault/api/v1/user/{user_id}/secrets", 201),
            ("PUT /vault/api/v1/secrets/{name}", 200),
            ("DELETE /vault/api/v1/user/{user_id}/secrets/{name}", 200),
            ("POST /secrets-manager/api/v1/password-policy", 201),
            ("PUT /secrets-manager/api/v1/password-policy/{id}", 200),
            ("DELETE /secrets-manager/api/v1/password-policy/{id}", 200),
        ] {
            assert!(logged(route, status).is_write(), "{route} {status}");
        }
        for (route, status) in [
            // Reads, also the POSTs that only read.
            ("GET /vault/api/v1/secrets/{name}", 200),
            ("POST /auth/api/v1/oauth/token", 200),
            ("POST /auth/api/v1/token/login", 200),
            ("POST /vault/api/v1/search/secrets", 200),
            ("POST /role-store/api/v1/roles/resolve", 200),
            ("POST /role-store/api/v1/roles/search", 200),
            // Refused, failed or unanswered writes changed nothing.
            ("POST /vault/api/v1/secrets", 400),
            ("POST /vault/api/v1/secrets", 409),
            ("PUT /vault/api/v1/secrets/{name}", 403),
            ("DELETE /secrets-manager/api/v1/password-policy/{id}", 400),
            ("PUT /vault/api/v1/secrets/{name}", 503),
            ("POST /vault/api/v1/secrets", 0),
            ("POST *", 404),
        ] {
            assert!(!logged(route, status).is_write(), "{route} {status}");
        }
    }

    #[test]
    fn the_log_entry_reads_back_from_its_json() {
        let entry = logged("POST /role-store/api/v1/roles/search", 200);
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["route"], "POST /role-store/api/v1/roles/search");
        assert_eq!(
            serde_json::from_value::<LoggedRequest>(json).unwrap(),
            entry
        );
    }
}
