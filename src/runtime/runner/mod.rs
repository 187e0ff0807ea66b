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
mod scopes;
mod triggers;

use std::sync::Arc;

use futures::channel::mpsc;
use futures::{StreamExt, future::BoxFuture, stream::BoxStream};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::Api;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tracing::info;

use self::health::WatchHealth;
use self::triggers::{Changes, SourceIndex, strip_namespace};
use crate::controller::core::backoff::WatchBackoff;
use crate::controller::core::recorder::Recorder;
use crate::controller::core::strip::strip;
use crate::controller::core::sync_gate::SyncGate;
use crate::controller::core::{self, ControllerMetrics};
use crate::controller::password_policy;
use crate::controller::vault_secret::store::stored::{StoredVaultSecret, VsRef};
use crate::controller::vault_secret::store::stored_mirror::{MirrorStore, WatchedMirror};
use crate::controller::vault_secret::{self, MANAGED_BY_LABEL, MANAGED_BY_VALUE, Settings};
use crate::crd::{PasswordPolicy, VaultSecret};
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
    let policies_for_policy_controller = policy_writer.subscribe().expect("shared store");
    let policies_for_vault_secrets = policy_writer.subscribe().expect("shared store");

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

    // --- PasswordPolicies (cluster-wide, shared) ---
    let policy_changes = Changes::default();
    let policy_generations = Changes::default();
    let policy_reflector = {
        let ctx = ctx.clone();
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

    // --- Namespaces (metadata only, only our annotations kept) ---
    let namespace_changes = Changes::default();
    let namespace_triggers = reflector::reflector(
        namespace_writer,
        watch(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            watcher::Config::default(),
            &health,
            "Namespaces",
        )
        .modify(|ns| strip_namespace(ns.meta_mut())),
    )
    .inspect({
        // A deleted namespace leaves the change map and the per-namespace identities (a
        // re-list sweeps those deleted while the watch was down).
        let changes = namespace_changes.clone();
        let ctx = ctx.clone();
        move |event| match event {
            Ok(watcher::Event::Delete(ns)) => {
                changes.forget(&ns.name_any());
                if let Some(ids) = &ctx.settings.namespace_identity {
                    ids.forget(&ns.name_any());
                }
            }
            Ok(watcher::Event::InitDone) => {
                changes.retain(|name| ctx.namespace(name).is_some());
            }
            _ => {}
        }
    })
    .touched_objects()
    .filter_map({
        let changes = namespace_changes.clone();
        move |ns| {
            let pass = match &ns {
                Ok(ns) => changes.changed(&ns.name_any(), triggers::namespace_hash(ns)),
                Err(_) => false,
            };
            futures::future::ready(pass.then_some(ns))
        }
    });

    // --- VaultSecrets: the controller's own stream ---
    let vs_changes = Changes::default();
    let source_index = SourceIndex::default();
    let vs_streams: Vec<Events<StoredVaultSecret>> =
        scoped_apis::<StoredVaultSecret>(&client, &options.namespaces)
            .into_iter()
            .map(|(scope, api)| {
                let what = format!("VaultSecrets{}", scope_suffix(&scope));
                watch(
                    api,
                    watcher::Config::default().any_semantic(),
                    &health,
                    &what,
                )
            })
            .collect();
    let vs_trigger = reflector::reflector(
        vs_writer,
        // Stripped as they are decoded (`StoredVaultSecret`).
        scopes::merge(
            vs_streams,
            options.namespaces.clone(),
            in_namespace(vs_store.clone()),
        ),
    )
    .inspect({
        let ctx = ctx.clone();
        let changes = vs_changes.clone();
        let index = source_index.clone();
        move |event| match event {
            Ok(watcher::Event::Apply(vs) | watcher::Event::InitApply(vs)) => {
                let decoded = vs.decode();
                index.set(&ObjectRef::from_obj(vs), source_of(&decoded));
                ctx.claims.set(&decoded, &ctx.settings.name_template);
            }
            Ok(watcher::Event::InitDone) => changes.retain(|key| {
                key.split_once('/').is_some_and(|(namespace, name)| {
                    ctx.vault_secrets
                        .get(&ObjectRef::new(name).within(namespace))
                        .is_some()
                })
            }),
            Ok(watcher::Event::Delete(vs)) => {
                let key = vault_secret::key_of(vs);
                changes.forget(&key);
                index.remove(&ObjectRef::from_obj(vs));
                ctx.claims.remove(&key);
                ctx.own_writes.forget(vs);
                vault_secret::forget(&ctx, &key);
            }
            _ => {}
        }
    })
    .applied_objects()
    .filter_map({
        let ctx = ctx.clone();
        move |vs| {
            let pass = match &vs {
                Ok(vs) => {
                    let changed = vs_changes.changed(&vault_secret::key_of(vs), triggers::hash(vs));
                    let echo = ctx.own_writes.is_echo(vs);
                    changed && !echo
                }
                Err(_) => false,
            };
            futures::future::ready(pass.then_some(vs))
        }
    });

    // --- Mirrors: whole Secrets by the managed-by label, kept as the plan reads them ---
    let mirror_streams: Vec<Events<WatchedMirror>> =
        scoped_apis::<WatchedMirror>(&client, &options.namespaces)
            .into_iter()
            .map(|(scope, api)| {
                let what = format!("mirrored Secrets{}", scope_suffix(&scope));
                watch(
                    api,
                    watcher::Config::default()
                        .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")),
                    &health,
                    &what,
                )
            })
            .collect();
    let mirror_triggers = scopes::merge(mirror_streams, options.namespaces.clone(), {
        let store = mirror_store.clone();
        move |ns: &str| store.in_namespace(ns)
    })
    .map({
        let ctx = ctx.clone();
        let store = mirror_store.clone();
        move |event| {
            let owners = match &event {
                Ok(event) => {
                    // The store first: the reconcile this triggers reads it.
                    store.apply(event);
                    match event {
                        watcher::Event::Apply(m)
                        | watcher::Event::InitApply(m)
                        | watcher::Event::Delete(m)
                            if !ctx.own_writes.is_echo(m) =>
                        {
                            m.owners()
                        }
                        _ => Vec::new(),
                    }
                }
                Err(_) => Vec::new(),
            };
            futures::stream::iter(owners)
        }
    })
    .flatten();

    // --- Source Secrets: metadata only, stored nowhere, mapped through the index ---
    let source_triggers: Vec<_> =
        scoped_apis::<PartialObjectMeta<Secret>>(&client, &options.namespaces)
            .into_iter()
            .map(|(scope, api)| {
                let what = format!("source Secrets{}", scope_suffix(&scope));
                let index = source_index.clone();
                watch(
                    api,
                    watcher::Config::default().fields(SOURCE_FIELDS),
                    &health,
                    &what,
                )
                .touched_objects()
                .filter_map(move |secret| {
                    let refs = match secret {
                        Ok(secret) => index.referrers_if_changed(&secret),
                        Err(_) => Vec::new(),
                    };
                    futures::future::ready((!refs.is_empty()).then(|| futures::stream::iter(refs)))
                })
                .flatten()
                .boxed()
            })
            .collect();
    let source_triggers = futures::stream::select_all(source_triggers);

    // --- The PasswordPolicy controller ---
    let policy_controller = Controller::for_shared_stream(
        policies_for_policy_controller.filter({
            let changes = policy_changes.clone();
            let ctx = ctx.clone();
            move |p| {
                let changed = changes.changed(&p.name_any(), triggers::hash(p.as_ref()));
                let echo = ctx.own_writes.is_echo(p.as_ref());
                futures::future::ready(changed && !echo)
            }
        }),
        policy_store.clone(),
    )
    .with_config(controller_config.clone())
    .graceful_shutdown_on(shutdown.clone().cancelled_owned());

    // --- The VaultSecret controller ---
    let by_policy = vs_store.clone();
    let by_namespace = vs_store.clone();
    let vs_controller = Controller::for_stream(vs_trigger, vs_store.clone())
        .with_config(controller_config)
        .reconcile_on(mirror_triggers)
        .watches_shared_stream(
            policies_for_vault_secrets.filter(move |p| {
                // Only a change of the policy's spec matters to the VaultSecrets that use it.
                let generation = p.meta().generation.unwrap_or_default() as u64;
                futures::future::ready(policy_generations.changed(&p.name_any(), generation))
            }),
            move |policy| {
                let name = policy.name_any();
                referrers(&by_policy, |vs| vs.policy() == Some(name.as_str()))
            },
        )
        .watches_stream(namespace_triggers, move |ns| {
            let name = ns.name_any();
            referrers(&by_namespace, |vs| {
                vs.namespace().as_deref() == Some(name.as_str())
            })
        })
        .reconcile_on(source_triggers)
        .reconcile_on(extra_rx)
        .graceful_shutdown_on(shutdown.clone().cancelled_owned());

    // Refreshes due: reconcile requests, every second (see `controller::vault_secret::store::refreshes`).
    ctx.refreshes.activate();
    let refresher = {
        let ctx = ctx.clone();
        let extra_tx = extra_tx.clone();
        async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                every.tick().await;
                for key in ctx.refreshes.take_due(tokio::time::Instant::now()) {
                    if let Some((namespace, name)) = key.split_once('/') {
                        let _ = extra_tx.unbounded_send(ObjectRef::new(name).within(namespace));
                    }
                }
            }
        }
    };
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
        tokio::spawn(refresher),
        tokio::spawn({
            let gate = ctx.synced.clone();
            async move {
                gate.wait().await;
                info!("all watches synced");
            }
        }),
    ]);

    let tasks: Vec<BoxFuture<'static, ()>> = vec![
        Box::pin(
            policy_controller
                .run(
                    password_policy::reconcile,
                    password_policy::error_policy,
                    core.clone(),
                )
                .for_each(|_| futures::future::ready(())),
        ),
        Box::pin(
            vs_controller
                .run(
                    vault_secret::reconcile,
                    vault_secret::error_policy,
                    ctx.clone(),
                )
                .for_each(|_| futures::future::ready(())),
        ),
    ];

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
