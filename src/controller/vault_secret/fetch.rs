//! The fetch step: what Kubernetes (source Secret, template ConfigMaps, the mirror, the other
//! VaultSecrets) and PrivX (role names) hold for this object.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret as KubeSecret};
use kube::ResourceExt;
use kube::api::Api;

use super::plan::{self, Refusal, SourceInput, Target, reason};
use super::{Reconciler, SOURCE_RETRY, object_key, target_of};
use crate::controller::common::{self, Next, Stop};
use crate::controller::refresh;
use crate::crd::VaultSecret;
use privx_client::SecretData;

impl Reconciler<'_> {
    /// The keyed hash of what this sync reads besides PrivX (see `status.inputsHash`).
    pub(super) fn inputs_hash(&self, source: &SourceInput, templates: &[Option<String>]) -> String {
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
    pub(super) async fn fetch_templates(&self) -> Result<Vec<Option<String>>, Stop> {
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
                .map_err(|e| common::kube_stop("read template ConfigMap", e))?;
            out.push(
                cm.and_then(|c| c.data)
                    .and_then(|d| d.get(&f.config_map_ref.key).cloned()),
            );
        }
        Ok(out)
    }

    /// Another VaultSecret that has the claim on the same PrivX secret (see
    /// [`plan::claimant`]): its key, or `None` when this object is the claimant.
    pub(super) fn other_claimant(
        &self,
        target: &Target,
        current: Option<&privx_client::Secret>,
    ) -> Option<String> {
        let candidate = |vs: &VaultSecret| plan::Candidate {
            key: object_key(vs.namespace().as_deref(), &vs.name_any()),
            created: vs.metadata.creation_timestamp.as_ref().map(|t| t.0),
            uid: vs.uid().unwrap_or_default(),
            records_ownership: plan::records_ownership(vs.status.as_ref(), target),
        };
        let me = candidate(self.vs);
        let others: Vec<plan::Candidate> = self
            .ctx
            .every_vault_secret()
            .iter()
            .filter_map(|g| g.0.as_ref().ok())
            .filter(|other| {
                other.uid() != self.vs.uid() && other.metadata.deletion_timestamp.is_none()
            })
            .filter(|other| &target_of(other, &self.ctx.settings.name_template) == target)
            .map(candidate)
            .collect();
        let author_is_operator = current.is_some_and(|c| {
            crate::controller::may_be_ours(
                c.author.as_deref(),
                self.ctx.settings.privx_identity.as_deref(),
            )
        });
        plan::claimant(&me, &others, author_is_operator)
    }

    pub(super) async fn fetch_source(&self) -> Result<SourceInput, Stop> {
        let Some(source) = &self.vs.spec.source else {
            return Ok(SourceInput::ReadOnly);
        };
        if let Some(secret_ref) = &source.secret_ref {
            let secret = self
                .secrets()
                .get_opt(&secret_ref.name)
                .await
                .map_err(|e| common::kube_stop("read source Secret", e))?
                .ok_or_else(|| {
                    (
                        Refusal::new(
                            reason::SOURCE_NOT_FOUND,
                            format!(
                                "source Secret {}/{} not found",
                                self.namespace(),
                                secret_ref.name
                            ),
                        ),
                        Next::After(SOURCE_RETRY.min(self.refresh())),
                    )
                })?;
            let all = secret.data.unwrap_or_default();
            let wanted: Vec<String> = match &secret_ref.keys {
                Some(keys) => keys.clone(),
                None => all.keys().cloned().collect(),
            };
            let missing: Vec<&str> = wanted
                .iter()
                .filter(|k| !all.contains_key(*k))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Err((
                    Refusal::new(
                        reason::SOURCE_NOT_FOUND,
                        format!(
                            "source Secret {}/{} has no key(s) {}",
                            self.namespace(),
                            secret_ref.name,
                            missing.join(", ")
                        ),
                    ),
                    Next::After(SOURCE_RETRY.min(self.refresh())),
                ));
            }
            let mut data = BTreeMap::new();
            for key in wanted {
                let bytes = &all[&key].0;
                let text = String::from_utf8(bytes.clone()).map_err(|_| {
                    (
                        Refusal::new(
                            reason::INVALID_SPEC,
                            format!(
                                "source Secret {}/{} key {key:?} is not UTF-8 text; PrivX stores text",
                                self.namespace(),
                                secret_ref.name
                            ),
                        ),
                        Next::AwaitChange,
                    )
                })?;
                data.insert(key, serde_json::Value::String(text));
            }
            return Ok(SourceInput::Secret(SecretData(data)));
        }
        let generate = source
            .generate
            .as_ref()
            .expect("validated: exactly one source");
        let policy_name = &generate.password_policy_ref.name;
        let policy = self
            .ctx
            .policies
            .state()
            .into_iter()
            .find(|p| p.name_any() == *policy_name);
        let not_found = || {
            (
                Refusal::new(
                    reason::POLICY_NOT_FOUND,
                    format!("PasswordPolicy {policy_name} not found"),
                ),
                Next::After(self.refresh()),
            )
        };
        let policy = policy.ok_or_else(not_found)?;
        let policy = policy.0.as_ref().map_err(|e| {
            (
                Refusal::new(
                    reason::POLICY_NOT_FOUND,
                    format!("PasswordPolicy {policy_name} is invalid: {}", e.error),
                ),
                Next::AwaitChange,
            )
        })?;
        let rules = crate::password::PasswordRules::from(&policy.spec);
        let candidate = crate::password::generate(&rules).map_err(|e| {
            (
                Refusal::new(
                    reason::INVALID_SPEC,
                    format!("PasswordPolicy {policy_name} cannot generate a password: {e}"),
                ),
                Next::AwaitChange,
            )
        })?;
        Ok(SourceInput::Generate {
            key: generate.key.clone(),
            candidate,
        })
    }

    pub(super) async fn resolve_roles(
        &self,
        source: &SourceInput,
    ) -> Result<(Vec<String>, Vec<String>), Stop> {
        let spec = &self.vs.spec;
        if matches!(source, SourceInput::ReadOnly) {
            if spec.read_roles.as_ref().is_some_and(|r| !r.is_empty())
                || spec.write_roles.as_ref().is_some_and(|r| !r.is_empty())
            {
                return Err((
                    Refusal::new(
                        reason::INVALID_SPEC,
                        "spec.readRoles and spec.writeRoles need spec.source: without a source the operator only reads the secret",
                    ),
                    Next::AwaitChange,
                ));
            }
            return Ok((Vec::new(), Vec::new()));
        }
        let self_roles = crate::controller::identity::self_roles_for(self.ctx, &self.namespace())
            .map_err(|refusal| (refusal, Next::After(self.refresh())))?;
        let mut names: Vec<String> = self_roles.clone();
        for list in [&spec.read_roles, &spec.write_roles].into_iter().flatten() {
            names.extend(list.iter().filter_map(|r| r.name.clone()));
        }
        let resolved = if names.is_empty() {
            BTreeMap::new()
        } else {
            self.ctx
                .roles
                .resolve(&self.ctx.privx, &names)
                .await
                .map_err(|e| common::privx_stop(e, "resolve role names"))?
        };
        let lookup = |field: &str,
                      i: usize,
                      r: &crate::crd::vault_secret::RoleRef|
         -> Result<String, Stop> {
            if let Some(id) = &r.id {
                return Ok(id.clone());
            }
            let name = r.name.clone().unwrap_or_default();
            resolved.get(&name).cloned().flatten().ok_or_else(|| {
                (
                    Refusal::new(
                        reason::INVALID_SPEC,
                        format!("{field}[{i}]: role {name:?} does not exist in PrivX"),
                    ),
                    Next::After(self.refresh().min(Duration::from_secs(300))),
                )
            })
        };
        let mut out = Vec::new();
        for (field, list) in [
            ("spec.readRoles", &spec.read_roles),
            ("spec.writeRoles", &spec.write_roles),
        ] {
            let mut ids = Vec::new();
            for (i, r) in list.iter().flatten().enumerate() {
                ids.push(lookup(field, i, r)?);
            }
            for name in &self_roles {
                let id = resolved.get(name).cloned().flatten().ok_or_else(|| {
                    (
                        Refusal::new(
                            reason::INVALID_SPEC,
                            format!("the operator's own role {name:?} (--privx-self-roles) does not exist in PrivX"),
                        ),
                        Next::After(self.refresh().min(Duration::from_secs(300))),
                    )
                })?;
                ids.push(id);
            }
            ids.sort();
            ids.dedup();
            out.push(ids);
        }
        let write = out.pop().unwrap_or_default();
        let read = out.pop().unwrap_or_default();
        Ok((read, write))
    }

    /// The mirrored Secret as the store holds it; a Secret not in the store (not labelled as
    /// ours, or not seen yet) is read, so that a foreign Secret of that name is refused, never
    /// overwritten.
    pub(super) async fn existing_mirror(
        &self,
        name: &str,
    ) -> Result<Option<Arc<KubeSecret>>, Stop> {
        if let Some(mirror) = self.ctx.mirror(&self.namespace(), name) {
            return Ok(Some(mirror));
        }
        let read = self
            .secrets()
            .get_opt(name)
            .await
            .map_err(|e| common::kube_stop("read mirrored Secret", e))?;
        Ok(read.map(Arc::new))
    }
}
