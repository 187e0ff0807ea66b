//! The operator's own PrivX identity at run time: which login the flags choose (password,
//! service-account token from a file or TokenRequest, signed JWT), who PrivX says the operator
//! is (at start and after every token renewal), and the self roles that follow from it.
//!
//! Must not touch the controllers' logic: the runtime fills the controllers' settings from what
//! it returns (the operator's identity, the shared self roles, the per-namespace identities).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use privx_client::{
    AuthMethod, CallObserver, EdAlgName, PrivxClient, PrivxConfig, SignedJwt, SignedJwtClaims,
    TokenExchange, TokenFile, config::CredentialSource,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::flags::{AuthArgs, AuthMode, EdAlgNameArg};
use super::{
    NamespaceIdentities, NamespaceIdentityConfig, SelfRoles, SelfRolesSetting, SelfRolesState,
    TokenRequestSource, choose_self_roles, whoami,
};

/// The login the flags describe. `operator_namespace` is where the operator's own
/// ServiceAccount lives (for TokenRequest).
pub fn auth_method(
    args: &AuthArgs,
    kube: &kube::Client,
    operator_namespace: &str,
) -> anyhow::Result<AuthMethod> {
    let exchange = |source: Arc<dyn privx_client::SubjectTokenSource>| {
        AuthMethod::TokenExchange(TokenExchange {
            source,
            client_id: args.privx_login_client_id.clone(),
            scope: args.privx_login_scope.clone(),
        })
    };
    Ok(match args.privx_auth_mode {
        AuthMode::Password => AuthMethod::Password(
            CredentialSource::from_env()
                .context("PrivX credentials (--privx-auth-mode password)")?,
        ),
        AuthMode::ServiceAccountToken => match &args.privx_token_file {
            Some(path) => exchange(Arc::new(TokenFile::new(path))),
            None => {
                let Some(name) = args.service_account.clone() else {
                    bail!(
                        "--privx-auth-mode service-account-token needs --privx-token-file (a projected token) or --service-account (PRIVX_OPERATOR_SERVICE_ACCOUNT) for a TokenRequest"
                    );
                };
                if args.privx_token_expiration < Duration::from_secs(600) {
                    bail!("--privx-token-expiration must be at least 10m (the Kubernetes minimum)");
                }
                exchange(Arc::new(TokenRequestSource {
                    client: kube.clone(),
                    namespace: operator_namespace.to_string(),
                    name,
                    audience: args.privx_token_audience.clone(),
                    expiration: args.privx_token_expiration,
                }))
            }
        },
        AuthMode::SignedJwt => {
            let missing = |flag: &str| anyhow::anyhow!("--privx-auth-mode signed-jwt needs {flag}");
            let key = args
                .privx_jwt_key_file
                .clone()
                .ok_or_else(|| missing("--privx-jwt-key-file (PRIVX_JWT_KEY_FILE)"))?;
            let claims = SignedJwtClaims {
                issuer: args
                    .privx_jwt_issuer
                    .clone()
                    .ok_or_else(|| missing("--privx-jwt-issuer (PRIVX_JWT_ISSUER)"))?,
                subject: args
                    .privx_jwt_subject
                    .clone()
                    .ok_or_else(|| missing("--privx-jwt-subject (PRIVX_JWT_SUBJECT)"))?,
                audience: args.privx_token_audience.clone(),
                lifetime: args.privx_jwt_lifetime,
            };
            let name = match args.privx_jwt_ed_alg_name {
                EdAlgNameArg::EdDsa => EdAlgName::EdDsa,
                EdAlgNameArg::Ed25519 => EdAlgName::Ed25519,
            };
            exchange(Arc::new(
                SignedJwt::new(key, claims, name).context("--privx-jwt-key-file")?,
            ))
        }
    })
}

/// The per-namespace identities, when the mode is on.
pub fn namespace_identities(
    args: &AuthArgs,
    kube: &kube::Client,
    template: &PrivxConfig,
    self_roles: &SelfRolesSetting,
    observer: Arc<dyn CallObserver>,
) -> anyhow::Result<Option<Arc<NamespaceIdentities>>> {
    if !args.namespace_identity {
        return Ok(None);
    }
    let name = args.namespace_identity_service_account.trim();
    if name.is_empty() || name.contains('/') {
        bail!("--namespace-identity-service-account {name:?} is not a ServiceAccount name");
    }
    Ok(Some(Arc::new(NamespaceIdentities::new(
        kube.clone(),
        template.clone(),
        NamespaceIdentityConfig {
            service_account: name.to_string(),
            audience: args.namespace_identity_audience.clone(),
            expiration: args.privx_token_expiration.max(Duration::from_secs(600)),
            self_roles: self_roles.clone(),
        },
        Some(observer),
    ))))
}

/// What PrivX said about the operator.
pub struct Resolved {
    /// The operator's PrivX user ID, when PrivX says it.
    pub user_id: Option<String>,
    pub self_roles: SelfRolesState,
}

/// Asks PrivX who the operator is, retrying with backoff until it answers or `shutdown`.
/// Where PrivX has no `users/current`, says so once (log and `/readyz`) and falls back to the
/// configured self roles (none under `auto`).
pub async fn resolve_at_start(
    privx: &PrivxClient,
    setting: &SelfRolesSetting,
    note: impl Fn(&str),
    shutdown: &CancellationToken,
) -> Option<Resolved> {
    let mut delay = Duration::from_secs(1);
    loop {
        match whoami(privx).await {
            Ok(held) => {
                let resolved = Resolved {
                    user_id: held.as_ref().map(|h| h.0.clone()),
                    self_roles: choose_self_roles(setting, held.as_ref().map(|h| &h.1)),
                };
                if held.is_none() {
                    let text = match setting {
                        SelfRolesSetting::Auto => {
                            "PrivX has no users/current (older PrivX): self roles cannot be learnt; set --privx-self-roles"
                        }
                        SelfRolesSetting::Named(_) => {
                            "PrivX has no users/current (older PrivX): the configured self roles are used unchecked"
                        }
                    };
                    warn!("{text}");
                    note(text);
                }
                report(&resolved.self_roles, setting);
                return Some(resolved);
            }
            Err(e) => warn!(error = %e, "cannot ask PrivX who the operator is yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return None,
        }
        delay = (delay * 2).min(Duration::from_secs(60));
    }
}

fn report(state: &SelfRolesState, setting: &SelfRolesSetting) {
    for role in &state.not_held {
        warn!(role = %role, "--privx-self-roles names a role PrivX says the operator does not hold");
    }
    match setting {
        SelfRolesSetting::Auto if state.names.is_empty() => warn!(
            "self roles auto: the operator holds no PrivX role with a vault permission; secrets it writes may not be readable back"
        ),
        _ => info!(self_roles = ?state.names, "self roles"),
    }
}

/// After every token renewal, asks PrivX again and updates the shared self roles.
pub fn keep_current(
    privx: PrivxClient,
    setting: SelfRolesSetting,
    self_roles: SelfRoles,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let mut renewals = privx.token_renewals();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = renewals.changed() => if changed.is_err() { return },
                _ = stop.cancelled() => return,
            }
            match whoami(&privx).await {
                // Endpoint gone (it was there at start, or never): keep what there is.
                Ok(None) => {}
                Ok(Some((_, held))) => {
                    let state = choose_self_roles(&setting, Some(&held));
                    if state != self_roles.get() {
                        report(&state, &setting);
                        self_roles.set(state);
                    }
                }
                Err(e) => {
                    warn!(error = %e, "cannot re-read who the operator is in PrivX; keeping the self roles")
                }
            }
        }
    })
}
