//! Shared harness of the reconcile tests: the real PrivX simulator on 127.0.0.1, a fake
//! Kubernetes API (see `fake_kube`), and a controller `Context` wired to both.

#![allow(dead_code)]

pub mod examples;
pub mod fake_kube;
pub mod running;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use privx_client::config::{CredentialSource, PolicyGenerationSetting};
use privx_client::{Credentials, PrivxClient, PrivxConfig};
use privx_operator::controller::core::recorder::Recorder;
use privx_operator::controller::core::{self, ControllerMetrics, Error, NoMetrics};
use privx_operator::controller::vault_secret::hashing::HmacKey;
use privx_operator::controller::vault_secret::store::stored::StoredVaultSecret;
use privx_operator::controller::vault_secret::{Context, Settings, Stores};
use privx_operator::controller::{password_policy, vault_secret};
use privx_operator::crd::{PasswordPolicy, VaultSecret};
use privx_sim::{SimCredentials, SimOptions, Simulator};
use serde_json::{Value, json};

pub use fake_kube::FakeKube;

pub const NS: &str = "demo";

pub fn vs_path(ns: &str, name: &str) -> String {
    format!("/apis/privx-operator.dev/v1alpha1/namespaces/{ns}/vaultsecrets/{name}")
}

pub fn policy_path(name: &str) -> String {
    format!("/apis/privx-operator.dev/v1alpha1/passwordpolicies/{name}")
}

pub fn secret_path(ns: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{ns}/secrets/{name}")
}

pub fn privx_client_for(sim: &Simulator, creds: SimCredentials) -> PrivxClient {
    privx_client_with(sim, creds, PolicyGenerationSetting::Auto)
}

/// A PrivX client of the simulator with the given password-policy generation setting.
pub fn privx_client_with(
    sim: &Simulator,
    creds: SimCredentials,
    policy_generation: PolicyGenerationSetting,
) -> PrivxClient {
    privx_client_tuned(sim, creds, policy_generation, |_| {})
}

/// A PrivX client of the simulator, its configuration changed by `tune` last.
pub fn privx_client_tuned(
    sim: &Simulator,
    creds: SimCredentials,
    policy_generation: PolicyGenerationSetting,
    tune: impl FnOnce(&mut PrivxConfig),
) -> PrivxClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = PrivxConfig::new(
        sim.base_url(),
        CredentialSource::Static(Credentials {
            oauth_client_id: creds.oauth_client_id.clone(),
            oauth_client_secret: creds.oauth_client_secret.clone(),
            api_client_id: creds.api_client_id.clone(),
            api_client_secret: creds.api_client_secret.clone(),
        }),
    );
    config.policy_generation = policy_generation;
    config.max_retries = 1;
    config.retry_base_delay = Duration::from_millis(5);
    tune(&mut config);
    PrivxClient::new(config).expect("client config")
}

pub struct Harness {
    pub kube: FakeKube,
    pub sim: Simulator,
    pub ctx: Arc<Context>,
    /// A PrivX client of another API client ("someone-else"), to change PrivX behind our back.
    pub someone_else: PrivxClient,
    vs_writer: Writer<StoredVaultSecret>,
    policy_writer: Writer<DeserializeGuard<PasswordPolicy>>,
    ns_writer: Writer<PartialObjectMeta<Namespace>>,
}

impl Harness {
    pub async fn new() -> Self {
        Self::with_options(SimOptions::default()).await
    }

    pub async fn with_options(options: SimOptions) -> Self {
        Self::build(PolicyGenerationSetting::Auto, options, Arc::new(NoMetrics)).await
    }

    /// The operator's client uses `generation` (auto, v34, v35); the simulator runs `options`.
    pub async fn with_generation(generation: PolicyGenerationSetting, options: SimOptions) -> Self {
        Self::build(generation, options, Arc::new(NoMetrics)).await
    }

    /// Everything configurable: the operator's generation setting, the simulator and the
    /// metrics the controllers report into.
    pub async fn build(
        generation: PolicyGenerationSetting,
        options: SimOptions,
        metrics: Arc<dyn ControllerMetrics>,
    ) -> Self {
        Self::build_tuned(generation, options, metrics, |_| {}).await
    }

    /// [`Harness::build`], with the operator's PrivX client configuration changed by `tune`.
    pub async fn build_tuned(
        generation: PolicyGenerationSetting,
        options: SimOptions,
        metrics: Arc<dyn ControllerMetrics>,
        tune: impl FnOnce(&mut PrivxConfig),
    ) -> Self {
        let sim = Simulator::start(options).await.expect("simulator starts");
        let privx = privx_client_tuned(&sim, sim.credentials(), generation, tune);
        let someone_else =
            privx_client_for(&sim, sim.credentials_of("someone-else").expect("demo seed"));
        let kube = FakeKube::default();
        let client = kube.client();
        let (vs_store, vs_writer) = reflector::store();
        let (policy_store, policy_writer) = reflector::store();
        let (ns_store, ns_writer) = reflector::store();
        let core = Arc::new(core::Context::new(
            client.clone(),
            privx,
            Some(sim.credentials().api_client_id.clone()),
            metrics,
            Recorder::new(
                client,
                Reporter {
                    controller: "privx-operator-test".into(),
                    instance: None,
                },
            ),
        ));
        let ctx = Arc::new(Context::new(
            core,
            Settings {
                self_roles: vec!["privx-operator".to_string()].into(),
                hmac_key: HmacKey::new(vec![42; 32]),
                restart_debounce: std::time::Duration::ZERO,
                ..Settings::default()
            },
            Stores {
                vault_secrets: vs_store,
                policies: policy_store,
                namespaces: ns_store,
                mirrors: Default::default(),
            },
        ));
        let mut h = Self {
            kube,
            sim,
            ctx,
            someone_else,
            vs_writer,
            policy_writer,
            ns_writer,
        };
        h.namespace(NS, json!({}));
        h
    }

    /// Puts a Namespace (metadata only) with these annotations into the store.
    pub fn namespace(&mut self, name: &str, annotations: Value) {
        let ns: PartialObjectMeta<Namespace> = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "annotations": annotations},
        }))
        .unwrap();
        self.ns_writer
            .apply_watcher_event(&watcher::Event::Apply(ns));
    }

    /// Creates a Secret in the fake API.
    pub fn secret(&self, ns: &str, name: &str, data: &[(&str, &str)]) {
        use base64::Engine;
        let data: serde_json::Map<String, Value> = data
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    json!(base64::engine::general_purpose::STANDARD.encode(v)),
                )
            })
            .collect();
        self.kube.put(
            &secret_path(ns, name),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "type": "Opaque", "data": data}),
        );
    }

    /// The data of a Secret in the fake API, decoded.
    pub fn secret_data(
        &self,
        ns: &str,
        name: &str,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        use base64::Engine;
        let s = self.kube.get(&secret_path(ns, name))?;
        Some(
            s["data"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            let bytes = base64::engine::general_purpose::STANDARD
                                .decode(v.as_str().unwrap())
                                .unwrap();
                            (k.clone(), String::from_utf8(bytes).unwrap())
                        })
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    /// Creates or replaces a VaultSecret (spec given as JSON) in the fake API.
    pub fn vault_secret(&self, name: &str, spec: Value) {
        self.vault_secret_with(name, spec, json!({}));
    }

    pub fn vault_secret_with(&self, name: &str, spec: Value, metadata_extra: Value) {
        let path = vs_path(NS, name);
        let mut object = json!({
            "apiVersion": "privx-operator.dev/v1alpha1", "kind": "VaultSecret",
            "metadata": {"name": name, "namespace": NS},
            "spec": spec,
        });
        if let Some(existing) = self.kube.get(&path) {
            object["metadata"] = existing["metadata"].clone();
            object["status"] = existing["status"].clone();
            let g = existing["metadata"]["generation"].as_i64().unwrap_or(1);
            if existing["spec"] != object["spec"] {
                object["metadata"]["generation"] = json!(g + 1);
            }
        }
        if let (Some(m), Some(extra)) = (
            object["metadata"].as_object_mut(),
            metadata_extra.as_object(),
        ) {
            for (k, v) in extra {
                m.insert(k.clone(), v.clone());
            }
        }
        self.kube.put(&path, object);
    }

    /// The VaultSecret as the fake API holds it now.
    pub fn get_vs(&self, name: &str) -> VaultSecret {
        serde_json::from_value(
            self.kube
                .get(&vs_path(NS, name))
                .expect("VaultSecret exists"),
        )
        .unwrap()
    }

    /// Reconciles the VaultSecret once, as the controller would after a watch event.
    pub async fn reconcile(&mut self, name: &str) -> Result<Action, Error> {
        let vs = self.get_vs(name);
        let guard = DeserializeGuard(Ok(vs));
        self.ctx
            .claims
            .set(&guard, &self.ctx.settings.name_template);
        let stored = StoredVaultSecret::from(guard);
        self.vs_writer
            .apply_watcher_event(&watcher::Event::Apply(stored.clone()));
        vault_secret::reconcile(Arc::new(stored), self.ctx.clone()).await
    }

    /// A PasswordPolicy in the fake API and in the store.
    pub fn policy(&mut self, name: &str, spec: Value) {
        let path = policy_path(name);
        let mut object = json!({
            "apiVersion": "privx-operator.dev/v1alpha1", "kind": "PasswordPolicy",
            "metadata": {"name": name}, "spec": spec,
        });
        if let Some(existing) = self.kube.get(&path) {
            object["metadata"] = existing["metadata"].clone();
            object["status"] = existing["status"].clone();
            if existing["spec"] != object["spec"] {
                let g = existing["metadata"]["generation"].as_i64().unwrap_or(1);
                object["metadata"]["generation"] = json!(g + 1);
            }
        }
        self.kube.put(&path, object);
        self.sync_policy_store(name);
    }

    /// Puts a PasswordPolicy given as a whole JSON object (valid or not) into the fake API and
    /// the store, as the watch would deliver it.
    pub fn policy_object(&mut self, object: Value) {
        let name = object["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_string();
        self.kube.put(&policy_path(&name), object);
        self.sync_policy_store(&name);
    }

    fn sync_policy_store(&mut self, name: &str) {
        if let Some(v) = self.kube.get(&policy_path(name)) {
            let guard: DeserializeGuard<PasswordPolicy> = guard_of(v);
            self.policy_writer
                .apply_watcher_event(&watcher::Event::Apply(guard));
        }
    }

    pub fn get_policy(&self, name: &str) -> PasswordPolicy {
        serde_json::from_value(
            self.kube
                .get(&policy_path(name))
                .expect("PasswordPolicy exists"),
        )
        .unwrap()
    }

    pub async fn reconcile_policy(&mut self, name: &str) -> Result<Action, Error> {
        let p = self.get_policy(name);
        self.sync_policy_store(name);
        password_policy::reconcile(Arc::new(DeserializeGuard(Ok(p))), self.ctx.core.clone()).await
    }

    /// Marks an object deleted the way the API server does when it has finalizers.
    pub fn delete(&self, path: &str) {
        let mut o = self.kube.get(path).expect("object exists");
        if o["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
        {
            o["metadata"]["deletionTimestamp"] = json!("2026-11-23T03:00:00Z");
            self.kube.put(path, o);
        } else {
            self.kube.remove(path);
        }
    }

    /// Someone else replaces a shared PrivX secret's data with one field, keeping its roles.
    pub async fn change_in_privx(&self, name: &str, field: &str, value: &str) {
        use privx_client::{SecretData, SecretLocation, SecretWrite};
        let current = self
            .someone_else
            .get_secret(&SecretLocation::Shared, name)
            .await
            .expect("the secret exists");
        self.someone_else
            .update_secret(
                &SecretLocation::Shared,
                name,
                &SecretWrite {
                    data: SecretData([(field.to_string(), json!(value))].into()),
                    read_roles: current.read_roles,
                    write_roles: current.write_roles,
                },
            )
            .await
            .expect("someone else may write it");
    }

    /// PrivX writes (non-GET API calls, token grants excluded) the simulator saw.
    pub fn privx_writes(&self) -> Vec<String> {
        self.sim
            .requests()
            .into_iter()
            .filter(|r| {
                r.method != "GET"
                    && !r.route.contains("/oauth/token")
                    && !r.route.contains("/roles/resolve")
            })
            .map(|r| r.route)
            .collect()
    }

    /// PrivX reads of secrets and policies.
    pub fn privx_reads(&self) -> Vec<String> {
        self.sim
            .requests()
            .into_iter()
            .filter(|r| r.method == "GET")
            .map(|r| r.route)
            .collect()
    }

    pub fn ready_reason(&self, name: &str) -> (String, String, String) {
        let vs = self.get_vs(name);
        let c = vs
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready").cloned())
            .expect("Ready condition");
        (c.status, c.reason, c.message)
    }

    /// The `type_` condition of a PasswordPolicy: (status, reason, message).
    pub fn policy_condition(&self, name: &str, type_: &str) -> (String, String, String) {
        let p = self.get_policy(name);
        let c = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_).cloned())
            .unwrap_or_else(|| panic!("PasswordPolicy {name} has a {type_} condition"));
        (c.status, c.reason, c.message)
    }

    /// The Ready condition of a PasswordPolicy: (status, reason, message).
    pub fn policy_ready(&self, name: &str) -> (String, String, String) {
        self.policy_condition(name, "Ready")
    }

    /// Kubernetes writes (events excluded) as `METHOD path`.
    pub fn kube_writes(&self) -> Vec<String> {
        self.kube
            .writes()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }
}

/// An object as a watch delivers it: deserialised through `DeserializeGuard`, so an object
/// that does not match the Rust type arrives as `Err(InvalidObject)` carrying its metadata.
pub fn guard_of<K: serde::de::DeserializeOwned>(object: Value) -> K {
    serde_json::from_value(object).expect("the metadata of any object deserialises")
}
