//! Who the operator is in PrivX, and with which identity each namespace is reconciled.
//!
//! - [`SelfRoles`]: the roles added to every secret the operator writes so that it can read back
//!   what it wrote. A shared value: the runtime resolves it at start and again after every
//!   token renewal ([`choose_self_roles`] is the rule, documented in docs/security.md).
//! - [`TokenRequestSource`]: a PrivX subject-token source that asks the Kubernetes API for a
//!   token of one fixed ServiceAccount (TokenRequest, fixed audience, bounded lifetime).
//! - [`NamespaceIdentities`]: the optional per-namespace mode — a VaultSecret in namespace N is
//!   reconciled with the PrivX identity of the ServiceAccount named in configuration in N,
//!   one cached PrivX client per namespace. [`privx_for`] is the accessor the controllers call.
//!
//! Must not decide anything about VaultSecrets themselves: it only picks the client and the
//! self roles, and says why when it cannot.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use privx_client::{
    AuthMethod, CallObserver, PrivxClient, PrivxConfig, PrivxError, Role, SubjectTokenFuture,
    SubjectTokenSource, TokenExchange,
};

use super::Context;
use super::common::{Next, Stop, privx_stop};
use super::outcome::{Refusal, reason};

/// PrivX permissions that make a held role a self role under `auto`.
pub const VAULT_PERMISSIONS: [&str; 2] = ["vault-add", "vault-manage"];

/// The operator's self roles: what is used now, and the configured ones PrivX says the
/// operator does not hold. Cheap to clone; clones share one value.
#[derive(Clone, Default)]
pub struct SelfRoles(Arc<RwLock<SelfRolesState>>);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SelfRolesState {
    pub names: Vec<String>,
    /// Configured roles that PrivX says the operator does not hold (empty when unknown).
    pub not_held: Vec<String>,
}

impl std::fmt::Debug for SelfRoles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

impl From<Vec<String>> for SelfRoles {
    fn from(names: Vec<String>) -> Self {
        let roles = Self::default();
        roles.set(SelfRolesState {
            names,
            not_held: Vec::new(),
        });
        roles
    }
}

impl SelfRoles {
    pub fn get(&self) -> SelfRolesState {
        self.0.read().expect("self roles lock").clone()
    }

    pub fn names(&self) -> Vec<String> {
        self.get().names
    }

    pub fn set(&self, state: SelfRolesState) {
        *self.0.write().expect("self roles lock") = state;
    }
}

/// `--privx-self-roles`: `auto`, or an explicit list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelfRolesSetting {
    Auto,
    Named(Vec<String>),
}

impl SelfRolesSetting {
    /// `[]` and `["auto"]` mean auto; anything else is the list.
    pub fn from_args(values: &[String]) -> Self {
        let values: Vec<String> = values
            .iter()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        match values.as_slice() {
            [] => Self::Auto,
            [one] if one.eq_ignore_ascii_case("auto") => Self::Auto,
            _ => Self::Named(values),
        }
    }
}

/// The roles a PrivX identity holds, and whether PrivX told their permissions (`roles/search`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeldRoles {
    pub roles: Vec<Role>,
    pub permissions_known: bool,
}

/// The rule (pure): an explicit list wins, and its names PrivX says the operator does not hold
/// are reported; `auto` takes the held roles that carry a vault permission (`vault-add`,
/// `vault-manage`), or every held role when PrivX tells no permissions (older PrivX without
/// `roles/search`). `held` is `None` where PrivX cannot say who the operator is.
pub fn choose_self_roles(setting: &SelfRolesSetting, held: Option<&HeldRoles>) -> SelfRolesState {
    match (setting, held) {
        (SelfRolesSetting::Named(names), None) => SelfRolesState {
            names: names.clone(),
            not_held: Vec::new(),
        },
        (SelfRolesSetting::Named(names), Some(held)) => SelfRolesState {
            names: names.clone(),
            not_held: names
                .iter()
                .filter(|n| !held.roles.iter().any(|r| &r.name == *n))
                .cloned()
                .collect(),
        },
        (SelfRolesSetting::Auto, None) => SelfRolesState::default(),
        (SelfRolesSetting::Auto, Some(held)) => {
            let mut names: Vec<String> = held
                .roles
                .iter()
                .filter(|r| {
                    !held.permissions_known
                        || r.permissions
                            .iter()
                            .any(|p| VAULT_PERMISSIONS.contains(&p.as_str()))
                })
                .map(|r| r.name.clone())
                .collect();
            names.sort();
            names.dedup();
            SelfRolesState {
                names,
                not_held: Vec::new(),
            }
        }
    }
}

/// Who a PrivX client is: its user ID and the roles it holds with their permissions. `None`
/// where PrivX has no `users/current` (404/405).
pub async fn whoami(privx: &PrivxClient) -> Result<Option<(String, HeldRoles)>, PrivxError> {
    let Some(user) = privx.current_user().await? else {
        return Ok(None);
    };
    let names: Vec<String> = user.roles.iter().map(|r| r.name.clone()).collect();
    let held = match privx.search_roles(&names).await {
        Ok(found) => HeldRoles {
            roles: user
                .roles
                .iter()
                .map(|held| {
                    found
                        .iter()
                        .find(|f| f.id == held.id || f.name == held.name)
                        .cloned()
                        .unwrap_or_else(|| held.clone())
                })
                .collect(),
            permissions_known: true,
        },
        Err(e) if e.is_retryable() => return Err(e),
        // No roles/search (older PrivX): the roles without their permissions.
        Err(e) => {
            tracing::debug!(error = %e, "PrivX role search failed; self roles from names only");
            HeldRoles {
                roles: user.roles,
                permissions_known: false,
            }
        }
    };
    Ok(Some((user.id, held)))
}

/// The self roles a VaultSecret in `namespace` adds to what it writes, or why it cannot write
/// safely: every configured self role is one PrivX says the operator does not hold.
pub fn self_roles_for(ctx: &Context, namespace: &str) -> Result<Vec<String>, Refusal> {
    if let Some(ids) = &ctx.settings.namespace_identity
        && let Some(roles) = ids.cached_self_roles(namespace)
    {
        return Ok(roles);
    }
    let state = ctx.settings.self_roles.get();
    if !state.names.is_empty() && state.not_held.len() == state.names.len() {
        return Err(Refusal::new(
            reason::NOT_READABLE,
            format!(
                "PrivX says the operator holds none of its self roles {:?} (--privx-self-roles): it could not read back what it writes; grant one of them to the operator's PrivX identity, or use auto",
                state.not_held
            ),
        ));
    }
    Ok(state.names)
}

/// The PrivX client that reconciles objects of `namespace`: the operator's own, or, with
/// per-namespace identity on, that namespace's.
pub async fn privx_for(ctx: &Context, namespace: &str) -> Result<PrivxClient, Stop> {
    match &ctx.settings.namespace_identity {
        None => Ok(ctx.privx.clone()),
        Some(ids) => ids.client(namespace).await.map_err(IdentityError::stop),
    }
}

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

impl IdentityError {
    /// The status refusal and the next step of a reconcile that cannot get its identity.
    pub fn stop(self) -> Stop {
        match self {
            Self::MissingServiceAccount { .. } => (
                Refusal::new(reason::IDENTITY_NOT_FOUND, self.to_string()),
                Next::After(Duration::from_secs(60)),
            ),
            Self::TokenRequest { .. } => (
                Refusal::new(reason::IDENTITY_NOT_FOUND, self.to_string()),
                Next::After(Duration::from_secs(60)),
            ),
            Self::Privx { namespace, source } => privx_stop(
                source,
                &format!("log in to PrivX as the identity of namespace {namespace}"),
            ),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str, permissions: &[&str]) -> Role {
        Role {
            id: format!("id-{name}"),
            name: name.into(),
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn held(roles: Vec<Role>, permissions_known: bool) -> HeldRoles {
        HeldRoles {
            roles,
            permissions_known,
        }
    }

    #[test]
    fn auto_takes_the_held_roles_with_vault_permissions() {
        let held = held(
            vec![
                role("privx-operator", &["vault-add", "vault-manage"]),
                role("auditors", &["audit-view"]),
                role("readers", &[]),
                role("vault-writers", &["vault-add"]),
            ],
            true,
        );
        let state = choose_self_roles(&SelfRolesSetting::Auto, Some(&held));
        assert_eq!(state.names, ["privx-operator", "vault-writers"]);
        assert!(state.not_held.is_empty());
    }

    #[test]
    fn auto_without_permissions_takes_every_held_role_and_without_privx_none() {
        let unknown = held(vec![role("b", &[]), role("a", &[])], false);
        let state = choose_self_roles(&SelfRolesSetting::Auto, Some(&unknown));
        assert_eq!(state.names, ["a", "b"]);
        assert_eq!(
            choose_self_roles(&SelfRolesSetting::Auto, None),
            SelfRolesState::default()
        );
        assert!(
            choose_self_roles(
                &SelfRolesSetting::Auto,
                Some(&held(vec![role("x", &["audit"]), role("y", &[])], true))
            )
            .names
            .is_empty()
        );
    }

    #[test]
    fn an_explicit_list_wins_and_names_what_is_not_held() {
        let named = SelfRolesSetting::Named(vec!["ops".into(), "privx-operator".into()]);
        let held = held(vec![role("privx-operator", &["vault-add"])], true);
        let state = choose_self_roles(&named, Some(&held));
        assert_eq!(state.names, ["ops", "privx-operator"]);
        assert_eq!(state.not_held, ["ops"]);
        let unknown = choose_self_roles(&named, None);
        assert!(unknown.not_held.is_empty());
    }

    #[test]
    fn the_setting_reads_auto_and_lists() {
        assert_eq!(SelfRolesSetting::from_args(&[]), SelfRolesSetting::Auto);
        assert_eq!(
            SelfRolesSetting::from_args(&["AUTO".into()]),
            SelfRolesSetting::Auto
        );
        assert_eq!(
            SelfRolesSetting::from_args(&["a".into(), " ".into(), "b".into()]),
            SelfRolesSetting::Named(vec!["a".into(), "b".into()])
        );
    }
}
