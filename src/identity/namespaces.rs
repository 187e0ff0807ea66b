//! The optional per-namespace identity: a VaultSecret in namespace N is reconciled with the
//! PrivX identity of the ServiceAccount named in configuration in N ([`NamespaceIdentities`],
//! one cached PrivX client per namespace), its token asked from the Kubernetes API
//! ([`TokenRequestSource`]: TokenRequest, fixed audience, bounded lifetime).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use privx_client::{
    AuthMethod, CallObserver, PrivxClient, PrivxConfig, PrivxError, SubjectTokenFuture,
    SubjectTokenSource, TokenExchange,
};

use super::self_roles::{SelfRolesSetting, choose_self_roles, whoami};

/// Why a namespace has no PrivX identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "namespace {namespace} has no ServiceAccount {name:?}: with per-namespace PrivX identity on, its VaultSecrets are reconciled as that ServiceAccount; create it and map it to a PrivX user"
    )]
    MissingServiceAccount { namespace: String, name: String },
    #[error("requesting a token for ServiceAccount {namespace}/{name} failed: {message}")]
    TokenRequest {
        namespace: String,
        name: String,
        message: String,
    },
    #[error("the PrivX identity of namespace {namespace}: {source}")]
    Privx {
        namespace: String,
        #[source]
        source: PrivxError,
    },
}

/// A token of one ServiceAccount from the Kubernetes API (TokenRequest), for one audience.
#[derive(Clone)]
pub struct TokenRequestSource {
    pub client: kube::Client,
    pub namespace: String,
    pub name: String,
    pub audience: String,
    pub expiration: Duration,
}

impl TokenRequestSource {
    pub async fn request(&self) -> Result<String, IdentityError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &self.namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec![self.audience.clone()]),
                expiration_seconds: Some(self.expiration.as_secs().max(600) as i64),
                ..Default::default()
            }),
            ..Default::default()
        };
        let answer = api
            .create_token_request(&self.name, &PostParams::default(), &request)
            .await
            .map_err(|e| match &e {
                kube::Error::Api(status) if status.code == 404 => {
                    IdentityError::MissingServiceAccount {
                        namespace: self.namespace.clone(),
                        name: self.name.clone(),
                    }
                }
                other => IdentityError::TokenRequest {
                    namespace: self.namespace.clone(),
                    name: self.name.clone(),
                    message: short_kube_error(other),
                },
            })?;
        answer
            .status
            .and_then(|s| s.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| IdentityError::TokenRequest {
                namespace: self.namespace.clone(),
                name: self.name.clone(),
                message: "the answer carries no token".into(),
            })
    }
}

fn short_kube_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

impl SubjectTokenSource for TokenRequestSource {
    fn token(&self) -> SubjectTokenFuture<'_> {
        Box::pin(async move {
            self.request()
                .await
                .map_err(|e| PrivxError::Config(e.to_string()))
        })
    }

    fn describe(&self) -> String {
        format!(
            "token of ServiceAccount {}/{} (TokenRequest, audience {:?})",
            self.namespace, self.name, self.audience
        )
    }
}

/// How long a namespace's identity is trusted before its ServiceAccount is checked again.
const RECHECK: Duration = Duration::from_secs(300);

/// A namespace idle this long (no reconcile asked for its identity) is forgotten at the next
/// login of any namespace: the map holds only namespaces in use, not every one ever seen.
const FORGET_AFTER: Duration = Duration::from_secs(4 * 300);

struct Entry {
    client: PrivxClient,
    /// The PrivX user id the namespace logs in as (`None`: PrivX did not say): the author PrivX
    /// records on what the namespace writes.
    user_id: Option<String>,
    self_roles: Vec<String>,
    checked: Instant,
}

/// One namespace: its login (one at a time, per namespace) and its cached entry.
struct Slot {
    login: tokio::sync::Mutex<()>,
    entry: RwLock<Option<Arc<Entry>>>,
    used: RwLock<Instant>,
}

impl Slot {
    fn new() -> Self {
        Self {
            login: tokio::sync::Mutex::new(()),
            entry: RwLock::new(None),
            used: RwLock::new(Instant::now()),
        }
    }

    fn fresh(&self) -> Option<Arc<Entry>> {
        let entry = self
            .entry
            .read()
            .expect("identity slot lock")
            .clone()
            .filter(|e| e.checked.elapsed() < RECHECK)?;
        *self.used.write().expect("identity slot lock") = Instant::now();
        Some(entry)
    }

    fn idle_since(&self, now: Instant) -> Duration {
        now.saturating_duration_since(*self.used.read().expect("identity slot lock"))
    }
}

/// A namespace's PrivX client and the user id PrivX knows it by.
#[derive(Clone)]
pub struct NamespaceLogin {
    pub client: PrivxClient,
    /// The namespace's PrivX user id (`None`: PrivX did not say), compared with `author`.
    pub user_id: Option<String>,
}

/// The per-namespace identities: configuration and one cached client per namespace.
pub struct NamespaceIdentities {
    kube: kube::Client,
    /// URL, CA, timeouts, generation; the login is replaced per namespace.
    template: PrivxConfig,
    service_account: String,
    audience: String,
    expiration: Duration,
    self_roles: SelfRolesSetting,
    observer: Option<Arc<dyn CallObserver>>,
    /// One slot per namespace in use. Each namespace logs in once at a time (a burst of its
    /// reconciles mints one token), namespaces in parallel (a cold start is not serial).
    slots: RwLock<HashMap<String, Arc<Slot>>>,
}

impl std::fmt::Debug for NamespaceIdentities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespaceIdentities")
            .field("service_account", &self.service_account)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// Settings of the per-namespace mode.
#[derive(Clone, Debug)]
pub struct NamespaceIdentityConfig {
    /// The one ServiceAccount name used in every namespace (never taken from a VaultSecret).
    pub service_account: String,
    pub audience: String,
    pub expiration: Duration,
    pub self_roles: SelfRolesSetting,
}

impl NamespaceIdentities {
    pub fn new(
        kube: kube::Client,
        template: PrivxConfig,
        config: NamespaceIdentityConfig,
        observer: Option<Arc<dyn CallObserver>>,
    ) -> Self {
        Self {
            kube,
            template,
            service_account: config.service_account,
            audience: config.audience,
            expiration: config.expiration,
            self_roles: config.self_roles,
            observer,
            slots: RwLock::new(HashMap::new()),
        }
    }

    fn slot(&self, namespace: &str) -> Option<Arc<Slot>> {
        self.slots
            .read()
            .expect("identities lock")
            .get(namespace)
            .cloned()
    }

    /// The slot of `namespace`, made if missing; namespaces idle for [`FORGET_AFTER`] are
    /// swept out when a slot is made.
    fn slot_or_new(&self, namespace: &str) -> Arc<Slot> {
        if let Some(slot) = self.slot(namespace) {
            return slot;
        }
        let mut slots = self.slots.write().expect("identities lock");
        if !slots.contains_key(namespace) {
            sweep(&mut slots, Instant::now());
        }
        slots
            .entry(namespace.to_string())
            .or_insert_with(|| Arc::new(Slot::new()))
            .clone()
    }

    /// Forgets `namespace` (it was deleted): its client and self roles go.
    pub fn forget(&self, namespace: &str) {
        self.slots
            .write()
            .expect("identities lock")
            .remove(namespace);
    }

    /// Forgets every namespace idle for [`FORGET_AFTER`] at `now` (done on its own whenever a
    /// new namespace logs in); how many namespaces remain.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut slots = self.slots.write().expect("identities lock");
        sweep(&mut slots, now);
        slots.len()
    }

    /// How many namespaces are held.
    pub fn len(&self) -> usize {
        self.slots.read().expect("identities lock").len()
    }

    /// Whether no namespace is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn entry(&self, namespace: &str) -> Option<Arc<Entry>> {
        self.slot(namespace)?
            .entry
            .read()
            .expect("identity slot lock")
            .clone()
    }

    /// The self roles of `namespace`'s identity, once its client was built.
    pub fn cached_self_roles(&self, namespace: &str) -> Option<Vec<String>> {
        self.entry(namespace).map(|e| e.self_roles.clone())
    }

    /// The client of `namespace` (cached; its PrivX token is cached with its expiry inside).
    pub async fn client(&self, namespace: &str) -> Result<PrivxClient, IdentityError> {
        self.login(namespace).await.map(|l| l.client)
    }

    /// The client of `namespace` and the PrivX user id it writes as (cached).
    pub async fn login(&self, namespace: &str) -> Result<NamespaceLogin, IdentityError> {
        let slot = self.slot_or_new(namespace);
        if let Some(entry) = slot.fresh() {
            return Ok(entry.login());
        }
        let _login = slot.login.lock().await;
        if let Some(entry) = slot.fresh() {
            return Ok(entry.login());
        }
        let source = TokenRequestSource {
            client: self.kube.clone(),
            namespace: namespace.to_string(),
            name: self.service_account.clone(),
            audience: self.audience.clone(),
            expiration: self.expiration,
        };
        // The ServiceAccount must exist (and be ours to use): ask once before anything else.
        source.request().await?;
        let previous = slot.entry.read().expect("identity slot lock").clone();
        let (client, user_id, self_roles) = match previous {
            // Still there: keep the client (and its cached PrivX token).
            Some(entry) => (
                entry.client.clone(),
                entry.user_id.clone(),
                entry.self_roles.clone(),
            ),
            None => {
                let mut config = self.template.clone();
                config.auth = AuthMethod::TokenExchange(TokenExchange::new(Arc::new(source)));
                let privx_error = |source| IdentityError::Privx {
                    namespace: namespace.to_string(),
                    source,
                };
                let mut client = PrivxClient::new(config).map_err(privx_error)?;
                if let Some(observer) = &self.observer {
                    client = client.with_observer(observer.clone());
                }
                let held = whoami(&client).await.map_err(privx_error)?;
                let state = choose_self_roles(&self.self_roles, held.as_ref().map(|h| &h.1));
                (client, held.map(|h| h.0), state.names)
            }
        };
        let entry = Arc::new(Entry {
            client,
            user_id,
            self_roles,
            checked: Instant::now(),
        });
        *slot.entry.write().expect("identity slot lock") = Some(entry.clone());
        *slot.used.write().expect("identity slot lock") = Instant::now();
        Ok(entry.login())
    }
}

impl Entry {
    fn login(&self) -> NamespaceLogin {
        NamespaceLogin {
            client: self.client.clone(),
            user_id: self.user_id.clone(),
        }
    }
}

/// Drops the slots idle for [`FORGET_AFTER`] at `now` whose login is not under way.
fn sweep(slots: &mut HashMap<String, Arc<Slot>>, now: Instant) {
    slots.retain(|_, slot| slot.idle_since(now) < FORGET_AFTER || slot.login.try_lock().is_err());
}
