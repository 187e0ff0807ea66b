//! Assembles the watches, stores and both controllers, and runs them until shutdown.
//!
//! One VaultSecret controller and one PasswordPolicy controller, whatever `--namespaces` says:
//! the namespace watches of a kind feed one stream and one store ([`scopes::merge`]). Every
//! trigger comes out of a reflector after its store has the change (a store's own stream, or a
//! subscriber of a shared store), and no reconcile starts before every store has listed
//! ([`SyncGate`]). Only real changes trigger ([`triggers`]): spec, labels,
//! annotations, finalizers, deletion; never the echo of our own status, finalizer or mirror
//! write. Objects are stripped of `managedFields` and `last-applied-configuration` before they
//! enter a store. Watches are narrow or metadata-only: mirrors by the managed-by label, kept
//! as what the plan reads of them (`MirrorStore` of `StoredMirror`: data as digests, no
//! metadata), each event mapped to its VaultSecret owners after the store has it; source Secrets
//! metadata-only and stored nowhere (an index of
//! the names VaultSecrets reference maps their events), Namespaces metadata-only with only the
//! operator's annotations kept. VaultSecrets are stored with spec and status compressed
//! (`StoredVaultSecret`), and objects waiting for their next refresh wait in the runner's
//! compact queue (`controller::vault_secret::store::refreshes`), not in the controller's scheduler. Watches back off
//! on their own (0.5 s → 5 s, jittered) and report their health: readiness is false while any
//! is down.

mod health;
mod outage;
mod password_policies;
mod queue;
mod scopes;
mod triggers;
mod vault_secrets;

use std::sync::Arc;

use futures::channel::mpsc;
use futures::{StreamExt, future::BoxFuture, stream::BoxStream};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::Config as ControllerConfig;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tracing::info;

use self::health::WatchHealth;
use self::queue::Queued;
use self::triggers::Changes;
use crate::controller::core::backoff::WatchBackoff;
use crate::controller::core::recorder::Recorder;
use crate::controller::core::strip::strip;
use crate::controller::core::sync_gate::SyncGate;
use crate::controller::core::{self, ControllerMetrics};
use crate::controller::password_policy;
use crate::controller::vault_secret::store::stored::{StoredVaultSecret, VsRef};
use crate::controller::vault_secret::store::stored_mirror::MirrorStore;
use crate::controller::vault_secret::{self, Settings};
use crate::crd::{PasswordPolicy, VaultSecret};
use crate::runtime::selector::LabelSelector;
use privx_client::PrivxClient;

/// How the controllers run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Namespaces whose VaultSecrets are reconciled; empty for all.
    pub namespaces: Vec<String>,
    /// Reconciles running at once per controller.
    pub concurrency: u16,
    /// Reporting instance for events (the pod name).
    pub instance: Option<String>,
    /// The operator's PrivX identity (the author PrivX records for what it creates).
    pub privx_identity: Option<String>,
    /// Run the VaultSecret controller.
    pub vault_secrets: bool,
    /// Run the PasswordPolicy controller.
    pub password_policies: bool,
    /// Only the VaultSecrets and PasswordPolicies with these labels are reconciled.
    pub selector: Option<LabelSelector>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            namespaces: Vec::new(),
            concurrency: crate::runtime::DEFAULT_CONCURRENCY,
            instance: None,
            privx_identity: None,
            vault_secrets: true,
            password_policies: true,
            selector: None,
        }
    }
}

/// The source-Secret watch leaves out the Secret types that are never a VaultSecret's source
/// and that clusters hold many of (Helm releases, service-account tokens).
pub const SOURCE_FIELDS: &str =
    "type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token";

/// Capacity of a shared store's fan-out channel (events wait for room, none is dropped).
const SHARED_BUFFER: usize = 1024;

type Events<K> = BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>;

/// A watch of `api`: bounded jittered backoff, its health tracked as `what`.
fn watch<K>(api: Api<K>, config: watcher::Config, health: &WatchHealth, what: &str) -> Events<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher(api, config)
        .backoff(WatchBackoff::default())
        .inspect(health.track(what))
        .boxed()
}

/// One `Api` per watched scope (all namespaces when none is listed).
fn scoped_apis<K>(client: &kube::Client, namespaces: &[String]) -> Vec<(Option<String>, Api<K>)>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    if namespaces.is_empty() {
        vec![(None, Api::all(client.clone()))]
    } else {
        namespaces
            .iter()
            .map(|ns| (Some(ns.clone()), Api::namespaced(client.clone(), ns)))
            .collect()
    }
}

/// Runs both controllers until `shutdown` resolves; in-flight reconciles drain first.
/// `on_watches` is called with `true` once every watch has listed its objects, with `false`
/// while any watch is down, and with `true` again when all are back.
pub async fn run(
    client: kube::Client,
    privx: PrivxClient,
    settings: Settings,
    metrics: Arc<dyn ControllerMetrics>,
    options: RunOptions,
    shutdown: tokio_util::sync::CancellationToken,
    on_watches: impl Fn(bool) + Send + Sync + 'static,
) {
    let controller_config = ControllerConfig::default().concurrency(options.concurrency);
    let (open_gate, gate) = SyncGate::closed();
    let health = WatchHealth::new(open_gate, on_watches);

    // Stores. VaultSecrets and mirrors: one store across the watched namespaces.
    let (vs_store, vs_writer) = reflector::store::<StoredVaultSecret>();
    let mirror_store = MirrorStore::default();
    let (namespace_store, namespace_writer) = reflector::store::<PartialObjectMeta<Namespace>>();
    // PasswordPolicies feed both controllers: a shared store with two subscribers.
    let (policy_store, policy_writer) =
        reflector::store_shared::<DeserializeGuard<PasswordPolicy>>(SHARED_BUFFER);
    // Only a controller that runs subscribes: a subscriber nobody reads would fill its buffer
    // and stall the shared reflector.
    let policies_for_policy_controller = options
        .password_policies
        .then(|| policy_writer.subscribe().expect("shared store"));
    let policies_for_vault_secrets = options
        .vault_secrets
        .then(|| policy_writer.subscribe().expect("shared store"));

    let reporter = Reporter {
        controller: "privx-operator".into(),
        instance: options.instance.clone(),
    };
    let core = Arc::new(core::Context {
        synced: gate,
        ..core::Context::new(
            client.clone(),
            privx,
            options.privx_identity.clone(),
            metrics,
            Recorder::new(client.clone(), reporter),
        )
    });
    let ctx = Arc::new(vault_secret::Context::new(
        core.clone(),
        settings,
        vault_secret::Stores {
            vault_secrets: vs_store.clone(),
            policies: policy_store.clone(),
            namespaces: namespace_store.clone(),
            mirrors: mirror_store.clone(),
        },
    ));

    // Triggers that do not come from a watched object of the controller's own streams: a
    // deleted PasswordPolicy, a source Secret event.
    let (extra_tx, extra_rx) = mpsc::unbounded::<VsRef>();
    let (pp_retry_tx, pp_retry_rx) =
        mpsc::unbounded::<ObjectRef<DeserializeGuard<PasswordPolicy>>>();

    // --- PasswordPolicies (cluster-wide, shared) ---
    let policy_changes = Changes::default();
    let policy_generations = Changes::default();
    let vs_queued = Queued::new(vault_secret::CONTROLLER, core.metrics.clone());
    let pp_queued = Queued::new(password_policy::CONTROLLER, core.metrics.clone());
    let policy_reflector = {
        let ctx = ctx.clone();
        let pp_queued = pp_queued.clone();
        let extra_tx = extra_tx.clone();
        let vs_store = vs_store.clone();
        let changes = [policy_changes.clone(), policy_generations.clone()];
        let policy_store = policy_store.clone();
        watch(
            Api::<DeserializeGuard<PasswordPolicy>>::all(client.clone()),
            watcher::Config::default().any_semantic(),
            &health,
            "PasswordPolicies",
        )
        .modify(|p| strip(p.meta_mut()))
        .reflect_shared(policy_writer)
        .for_each(move |event| {
            match &event {
                Ok(watcher::Event::Delete(policy)) => {
                    let name = policy.name_any();
                    changes.iter().for_each(|c| c.forget(&name));
                    password_policy::forget(&ctx, &name);
                    pp_queued.started(&name);
                    for vs in referrers(&vs_store, |vs| vs.policy() == Some(name.as_str())) {
                        let _ = extra_tx.unbounded_send(vs);
                    }
                }
                // A re-list: policies deleted meanwhile sent no delete event.
                Ok(watcher::Event::InitDone) => changes.iter().for_each(|c| {
                    c.retain(|name| policy_store.get(&ObjectRef::new(name)).is_some())
                }),
                _ => {}
            }
            futures::future::ready(())
        })
    };

    let mut tasks: Vec<BoxFuture<'static, ()>> = Vec::new();
    let mut refresher = None;
    if let Some(policies) = policies_for_policy_controller {
        tasks.push(password_policies::controller(
            &core,
            &options,
            policies.boxed(),
            policy_store.clone(),
            policy_changes.clone(),
            controller_config.clone(),
            pp_queued,
            pp_retry_rx,
            shutdown.clone(),
        ));
    }
    if let Some(policies) = policies_for_vault_secrets {
        let (controller, due) = vault_secrets::controller(
            &ctx,
            &options,
            &health,
            vault_secrets::Feeds {
                vs_writer,
                namespace_writer,
                policies: policies.boxed(),
                extra_tx: extra_tx.clone(),
                extra_rx,
                policy_generations,
            },
            controller_config,
            vs_queued,
            shutdown.clone(),
        );
        tasks.push(controller);
        refresher = Some(due);
    }
    let ticker = {
        let health = health.clone();
        async move {
            let quiet =
                crate::controller::core::backoff::WATCH_CAP + std::time::Duration::from_secs(1);
            let mut every = tokio::time::interval(std::time::Duration::from_millis(500));
            loop {
                every.tick().await;
                health.tick(quiet);
            }
        }
    };
    // Aborted when the runner ends, and also when its future is dropped (lease loss drops
    // the runner at once instead of draining it).
    let background = AbortOnDrop(vec![
        tokio::spawn(policy_reflector),
        tokio::spawn(ticker),
        tokio::spawn({
            let gate = ctx.synced.clone();
            async move {
                gate.wait().await;
                info!("all watches synced");
            }
        }),
    ]);
    let _refresher = refresher.map(|r| AbortOnDrop(vec![tokio::spawn(r)]));
    let _recovery = AbortOnDrop(vec![tokio::spawn(outage::retry_when_privx_is_back(
        core.clone(),
        extra_tx.clone(),
        pp_retry_tx,
    ))]);

    // Controllers end on the shutdown signal once in-flight reconciles have drained.
    futures::future::join_all(tasks).await;
    drop(background);
    drop(extra_tx);
    info!("controllers stopped");
}

/// What a kube store holds of one namespace, for [`scopes::merge`].
fn in_namespace<K>(store: reflector::Store<K>) -> impl Fn(&str) -> Vec<K> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    move |namespace| {
        store
            .state()
            .into_iter()
            .filter(|o| o.meta().namespace.as_deref() == Some(namespace))
            .map(|o| o.as_ref().clone())
            .collect()
    }
}

/// Tasks that end with their owner: dropping it aborts them.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

fn scope_suffix(scope: &Option<String>) -> String {
    scope
        .as_deref()
        .map(|ns| format!(" in {ns}"))
        .unwrap_or_default()
}

/// The PasswordPolicy a VaultSecret generates from.
/// The source Secret a VaultSecret pushes from (in its namespace).
fn source_of(vs: &DeserializeGuard<VaultSecret>) -> Option<&str> {
    let vs = vs.0.as_ref().ok()?;
    Some(vs.spec.source.as_ref()?.secret_ref.as_ref()?.name.as_str())
}

/// The VaultSecrets in `store` that `pred` selects, as reconcile requests.
fn referrers(
    store: &reflector::Store<StoredVaultSecret>,
    pred: impl Fn(&StoredVaultSecret) -> bool,
) -> Vec<VsRef> {
    store
        .state()
        .iter()
        .filter(|vs| vs.is_valid() && pred(vs))
        .map(|vs| ObjectRef::from_obj(vs.as_ref()))
        .collect()
}
