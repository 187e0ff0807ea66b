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

struct Entry {
    client: PrivxClient,
    self_roles: Vec<String>,
    checked: Instant,
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
    entries: RwLock<HashMap<String, Arc<Entry>>>,
    /// One namespace logs in at a time (keeps a burst of reconciles from minting many tokens).
    gate: tokio::sync::Mutex<()>,
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
            entries: RwLock::new(HashMap::new()),
            gate: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self, namespace: &str) -> Option<Arc<Entry>> {
        self.entries
            .read()
            .expect("identities lock")
            .get(namespace)
            .filter(|e| e.checked.elapsed() < RECHECK)
            .cloned()
    }

    /// The self roles of `namespace`'s identity, once its client was built.
    pub fn cached_self_roles(&self, namespace: &str) -> Option<Vec<String>> {
        self.entries
            .read()
            .expect("identities lock")
            .get(namespace)
            .map(|e| e.self_roles.clone())
    }

    /// The client of `namespace` (cached; its PrivX token is cached with its expiry inside).
    pub async fn client(&self, namespace: &str) -> Result<PrivxClient, IdentityError> {
        if let Some(entry) = self.fresh(namespace) {
            return Ok(entry.client.clone());
        }
        let _gate = self.gate.lock().await;
        if let Some(entry) = self.fresh(namespace) {
            return Ok(entry.client.clone());
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
        let previous = self
            .entries
            .read()
            .expect("identities lock")
            .get(namespace)
            .cloned();
        let (client, self_roles) = match previous {
            // Still there: keep the client (and its cached PrivX token).
            Some(entry) => (entry.client.clone(), entry.self_roles.clone()),
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
                (client, state.names)
            }
        };
        self.entries.write().expect("identities lock").insert(
            namespace.to_string(),
            Arc::new(Entry {
                client: client.clone(),
                self_roles,
                checked: Instant::now(),
            }),
        );
        Ok(client)
    }
}
