//! The fetch step: what Kubernetes (source Secret, template ConfigMaps, the mirror, the other
//! VaultSecrets) and PrivX (role names) hold for this object.

use super::Context;
use super::store::stored_mirror::StoredMirror;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;

use super::plan::source::PolicyLookup;
use super::plan::{self, SourceInput, Target, TargetCheck};
use super::{FORCE_SYNC_ANNOTATION, REGENERATE_ANNOTATION};
use super::{Reconciler, SOURCE_RETRY, object_key, target_of};
use crate::controller::core::{self, Next, Stop};
use crate::controller::core::{Refusal, privx_stop, reason};
use crate::controller::vault_secret::plan::refresh::{self, RefreshDecision, RefreshInput};
use crate::controller::vault_secret::restart;
use crate::crd::VaultSecret;
use crate::crd::vault_secret::RolloutTarget;
use crate::identity::IdentityError;
use crate::template::Template;
use privx_client::{PrivxClient, PrivxError, Secret, SecretLocation};
use std::time::Duration;

/// What the Kubernetes part of the fetch found.
pub(super) struct KubeFetched {
    pub source: SourceInput,
    pub templates: Vec<Template>,
    pub existing_mirror: Option<Arc<StoredMirror>>,
    /// The resourceVersion of the existing Secret when it was read from the API (one this
    /// operator does not manage yet): the precondition of a patch that takes it over.
    pub existing_mirror_version: Option<String>,
    pub inputs_hash: String,
}

/// What the PrivX part of the fetch found (and the claimants from the store).
pub(super) struct PrivxFetched {
    /// The client this namespace writes PrivX with (its own identity, if that mode is on).
    pub privx: PrivxClient,
    /// The PrivX identity that client writes as: the `author` PrivX records on what it creates.
    pub identity: Option<String>,
    pub current: Option<Secret>,
    pub self_roles: Vec<String>,
    pub resolved_roles: BTreeMap<String, Option<String>>,
    pub me: plan::Candidate,
    pub others: Vec<plan::Candidate>,
}

impl Reconciler<'_> {
    /// Source, template ConfigMaps (compiled), the mirror, and the inputs hash.
    pub(super) async fn fetch_kube(&self) -> Result<KubeFetched, Stop> {
        let source = self.fetch_source().await?;
        let mirror_spec = self.vs.spec.mirror.as_ref();
        let texts = self.fetch_templates().await?;
        let templates = match mirror_spec {
            Some(m) => plan::mirror_templates(m, &texts)
                .map_err(|r| (r, Next::After(SOURCE_RETRY.min(self.refresh()))))?,
            None => Vec::new(),
        };
        let vs_name = self.vs.name_any();
        let (existing_mirror, existing_mirror_version) = match mirror_spec {
            Some(m) => self.existing_mirror(plan::mirror_name(m, &vs_name)).await?,
            None => (None, None),
        };
        let inputs_hash = self.inputs_hash(&source, &texts);
        Ok(KubeFetched {
            source,
            templates,
            existing_mirror,
            existing_mirror_version,
            inputs_hash,
        })
    }

    /// What the refresh decision looks at.
    pub(super) fn refresh_input<'k>(
        &'k self,
        target: &Target,
        kube: &'k KubeFetched,
    ) -> RefreshInput<'k> {
        let status = self.vs.status.as_ref();
        let annotation = |name: &str| self.vs.annotations().get(name).map(String::as_str);
        let regenerate = annotation(REGENERATE_ANNOTATION);
        RefreshInput {
            policy: self.vs.spec.refresh_policy(),
            interval: self.refresh(),
            force_sync: annotation(FORCE_SYNC_ANNOTATION),
            last_force_sync: status.and_then(|s| s.last_force_sync.as_deref()),
            synced_before: plan::synced_before(status, target),
            inputs_changed: status.and_then(|s| s.inputs_hash.as_deref())
                != Some(kube.inputs_hash.as_str()),
            mirror_missing: self.vs.spec.mirror.is_some() && kube.existing_mirror.is_none(),
            regenerate_pending: matches!(kube.source, SourceInput::Generate { .. })
                && regenerate.is_some()
                && regenerate != status.and_then(|s| s.regenerate_token.as_deref()),
        }
    }

    /// Roles, the PrivX secret (unless `read_current` is false: taken as absent) and the
    /// claimants. A routine refresh of a read-only shared
    /// mirror reads the shared list pages when a listing is cheaper than one GET per read-only
    /// shared object (see `store::list_pages`); they are read as the operator: never with
    /// per-namespace identity, where each namespace must read as itself.
    pub(super) async fn fetch_privx(
        &self,
        target: &Target,
        source: &SourceInput,
        decision: &RefreshDecision,
        read_current: bool,
    ) -> Result<PrivxFetched, Stop> {
        let ctx = self.ctx;
        let PrivxAs {
            client: privx,
            identity,
        } = privx_for(ctx, &self.namespace()).await?;
        let (self_roles, resolved_roles) = self.resolve_roles(source).await?;
        let from_listing = if decision.routine
            && ctx.settings.namespace_identity.is_none()
            && matches!(source, SourceInput::ReadOnly)
            && target.location == SecretLocation::Shared
        {
            ctx.list_pages
                .get(
                    &ctx.privx,
                    &target.name,
                    refresh::listing_max_age(self.refresh()),
                    ctx.claims.read_only_shared(),
                    |name| ctx.claims.claims_shared(name),
                )
                .await
                .map_err(|e| core::privx_stop(e, "list shared secrets"))?
        } else {
            None
        };
        let current = match from_listing {
            Some(secret) => Some(secret),
            None if !read_current => None,
            None => match privx.get_secret(&target.location, &target.name).await {
                Ok(secret) => Some(secret),
                Err(PrivxError::NotFound { .. }) => None,
                Err(e) => {
                    return Err(core::privx_stop(
                        e,
                        &format!("read secret {}", target.describe()),
                    ));
                }
            },
        };
        let (me, others) = self.claimants(target);
        Ok(PrivxFetched {
            privx,
            identity,
            current,
            self_roles,
            resolved_roles,
            me,
            others,
        })
    }

    /// Every declared restart target (when restarts are on): does it exist, may it be read.
    pub(super) async fn check_restart_targets(&self) -> Vec<(RolloutTarget, TargetCheck)> {
        let targets = self
            .vs
            .spec
            .mirror
            .as_ref()
            .and_then(|m| m.rollout_restart_targets.clone())
            .unwrap_or_default();
        if !self.ctx.settings.rollout_restart {
            return Vec::new();
        }
        let namespace = self.namespace();
        let mut out = Vec::new();
        for t in targets {
            let api = restart::workload_api(self.ctx.client.clone(), &namespace, t.kind);
            let check = match api.get(&t.name).await {
                Ok(_) => TargetCheck::Available,
                Err(e) => {
                    let (code, what) = restart::unavailable_reason(&e);
                    TargetCheck::Unavailable { code, what }
                }
            };
            out.push((t, check));
        }
        out
    }

    /// The keyed hash of what this sync reads besides PrivX (see `status.inputsHash`).
    fn inputs_hash(&self, source: &SourceInput, templates: &[Option<String>]) -> String {
        let source_bytes = match source {
            SourceInput::ReadOnly => Vec::new(),
            SourceInput::Secret(data) => serde_json::to_vec(&data.0).unwrap_or_default(),
            SourceInput::Generate { .. } => {
                let name = self
                    .vs
                    .spec
                    .source
                    .as_ref()
                    .and_then(|s| s.generate.as_ref())
                    .map(|g| g.password_policy_ref.name.clone())
                    .unwrap_or_default();
                self.ctx
                    .policies
                    .state()
                    .iter()
                    .find(|p| p.name_any() == name)
                    .and_then(|p| p.0.as_ref().ok())
                    .map(|p| serde_json::to_vec(&p.spec).unwrap_or_default())
                    .unwrap_or_default()
            }
        };
        let template_bytes = serde_json::to_vec(templates).unwrap_or_default();
        refresh::inputs_hash(
            &self.ctx.settings.hmac_key,
            self.vs.metadata.generation,
            &[("source", &source_bytes), ("templates", &template_bytes)],
        )
    }

    /// The texts of `spec.mirror.templateFrom`, in order (`None`: ConfigMap or key missing).
    async fn fetch_templates(&self) -> Result<Vec<Option<String>>, Stop> {
        let Some(from) = self
            .vs
            .spec
            .mirror
            .as_ref()
            .and_then(|m| m.template_from.as_ref())
        else {
            return Ok(Vec::new());
        };
        let api: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), &self.namespace());
        let mut out = Vec::new();
        for f in from {
            let cm = api
                .get_opt(&f.config_map_ref.name)
                .await
                .map_err(|e| core::kube_stop("read template ConfigMap", e))?;
            out.push(
                cm.and_then(|c| c.data)
                    .and_then(|d| d.get(&f.config_map_ref.key).cloned()),
            );
        }
        Ok(out)
    }

    /// This object and the other live VaultSecrets naming `target`, as the claimant order sees
    /// them (the claim index names them, the store holds them; their target is checked again).
    fn claimants(&self, target: &Target) -> (plan::Candidate, Vec<plan::Candidate>) {
        let candidate = |vs: &VaultSecret| plan::Candidate {
            key: object_key(vs.namespace().as_deref(), &vs.name_any()),
            created: vs.metadata.creation_timestamp.as_ref().map(|t| t.0),
            uid: vs.uid().unwrap_or_default(),
            records_ownership: plan::records_ownership(vs.status.as_ref(), target),
        };
        let names = self.ctx.claims.naming(target);
        let stored: Vec<_> = names
            .iter()
            .filter_map(|key| {
                let (namespace, name) = key.split_once('/')?;
                let at = ObjectRef::new(name).within(namespace);
                self.ctx.vault_secrets.get(&at)
            })
            .collect();
        let decoded: Vec<_> = stored.iter().map(|s| s.decode()).collect();
        let others = decoded
            .iter()
            .filter_map(|g| g.0.as_ref().ok())
            .filter(|other| {
                other.uid() != self.vs.uid() && other.metadata.deletion_timestamp.is_none()
            })
            .filter(|other| &target_of(other, &self.ctx.settings.name_template) == target)
            .map(candidate)
            .collect();
        (candidate(self.vs), others)
    }

    /// The source Secret (read) or the PasswordPolicy (store), turned into the source by the
    /// plan.
    async fn fetch_source(&self) -> Result<SourceInput, Stop> {
        let Some(source) = &self.vs.spec.source else {
            return Ok(SourceInput::ReadOnly);
        };
        if let Some(secret_ref) = &source.secret_ref {
            let secret = self
                .secrets()
                .get_opt(&secret_ref.name)
                .await
                .map_err(|e| core::kube_stop("read source Secret", e))?;
            let data = secret.map(|s| s.data.unwrap_or_default());
            return plan::source::from_secret(
                &self.namespace(),
                secret_ref,
                data.as_ref(),
                SOURCE_RETRY.min(self.refresh()),
            );
        }
        let generate = source
            .generate
            .as_ref()
            .expect("validated: exactly one source");
        let policy_name = &generate.password_policy_ref.name;
        let found = self
            .ctx
            .policies
            .state()
            .into_iter()
            .find(|p| p.name_any() == *policy_name);
        let lookup = match found.as_deref().map(|guard| &guard.0) {
            None => PolicyLookup::Missing,
            Some(Err(invalid)) => PolicyLookup::Invalid(&invalid.error),
            Some(Ok(policy)) => PolicyLookup::Found(&policy.spec),
        };
        plan::source::from_policy(
            policy_name,
            &generate.key,
            lookup,
            self.refresh(),
            crate::password::generate,
        )
    }

    /// The operator's own roles and the IDs of every role name the spec uses (a read-only
    /// object writes no roles and resolves none).
    async fn resolve_roles(
        &self,
        source: &SourceInput,
    ) -> Result<(Vec<String>, BTreeMap<String, Option<String>>), Stop> {
        if matches!(source, SourceInput::ReadOnly) {
            return Ok((Vec::new(), BTreeMap::new()));
        }
        let self_roles = self_roles_for(self.ctx, &self.namespace())
            .map_err(|refusal| (refusal, Next::After(self.refresh())))?;
        let names = plan::roles::names_to_resolve(&self.vs.spec, &self_roles);
        let resolved = if names.is_empty() {
            BTreeMap::new()
        } else {
            self.ctx
                .roles
                .resolve(&self.ctx.privx, &names)
                .await
                .map_err(|e| core::privx_stop(e, "resolve role names"))?
        };
        Ok((self_roles, resolved))
    }

    /// The mirrored Secret as the store holds it; a Secret not in the store (not labelled as
    /// ours, or not seen yet) is read, so that a foreign Secret of that name is refused, never
    /// overwritten.
    /// The mirror as the store holds it, else as the API does (with its resourceVersion).
    async fn existing_mirror(
        &self,
        name: &str,
    ) -> Result<(Option<Arc<StoredMirror>>, Option<String>), Stop> {
        if let Some(mirror) = self.ctx.mirror(&self.namespace(), name) {
            return Ok((Some(mirror), None));
        }
        let read = self
            .secrets()
            .get_opt(name)
            .await
            .map_err(|e| core::kube_stop("read mirrored Secret", e))?;
        let version = read
            .as_ref()
            .and_then(|secret| secret.metadata.resource_version.clone());
        Ok((
            read.map(|secret| Arc::new(StoredMirror::from(secret))),
            version,
        ))
    }
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

/// The PrivX client a namespace's objects are reconciled with, and the identity it writes as.
pub struct PrivxAs {
    pub client: PrivxClient,
    /// The PrivX id PrivX records as the `author` of what `client` creates (`None`: unknown).
    /// "Did we create this?" compares with this identity, never another.
    pub identity: Option<String>,
}

/// The PrivX client that reconciles objects of `namespace`: the operator's own, or, with
/// per-namespace identity on, that namespace's (with the user id it logged in as).
pub async fn privx_for(ctx: &Context, namespace: &str) -> Result<PrivxAs, Stop> {
    match &ctx.settings.namespace_identity {
        None => Ok(PrivxAs {
            client: ctx.privx.clone(),
            identity: ctx.privx_identity.clone(),
        }),
        Some(ids) => {
            let login = ids.login(namespace).await.map_err(identity_stop)?;
            Ok(PrivxAs {
                client: login.client,
                identity: login.user_id,
            })
        }
    }
}

/// The status refusal and the next step of a reconcile that cannot get its identity.
pub fn identity_stop(error: IdentityError) -> Stop {
    match error {
        IdentityError::MissingServiceAccount { .. } => (
            Refusal::new(reason::IDENTITY_NOT_FOUND, error.to_string()),
            Next::After(Duration::from_secs(60)),
        ),
        IdentityError::TokenRequest { .. } => (
            Refusal::new(reason::IDENTITY_NOT_FOUND, error.to_string()),
            Next::After(Duration::from_secs(60)),
        ),
        IdentityError::Privx { namespace, source } => privx_stop(
            source,
            &format!("log in to PrivX as the identity of namespace {namespace}"),
        ),
    }
}
