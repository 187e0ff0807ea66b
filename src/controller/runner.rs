//! Assembles the watches, stores and both controllers, and runs them until shutdown.
//!
//! Watches are narrow: mirrored Secrets by the managed-by label, source Secrets by the source
//! label, both metadata only; Namespaces metadata only. Memory does not grow with unrelated
//! Secrets in the cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::{StreamExt, future::BoxFuture};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::ResourceExt;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Notify;
use tracing::info;

use super::{
    Context, ControllerMetrics, MANAGED_BY_LABEL, MANAGED_BY_VALUE, SOURCE_LABEL, Settings,
    password_policy, vault_secret,
};
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
}

type VsStore = Store<DeserializeGuard<VaultSecret>>;

/// Counts watches that have not yet finished their initial list; readiness waits for zero.
#[derive(Clone, Default)]
struct SyncTracker {
    pending: Arc<AtomicUsize>,
    notify: Arc<Notify>,
}

impl SyncTracker {
    /// A watch to wait for: call the returned closure on every watcher event.
    fn track<K>(&self) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) + Send + 'static {
        self.pending.fetch_add(1, Ordering::SeqCst);
        let tracker = self.clone();
        let mut done = false;
        move |event| {
            if !done && matches!(event, Ok(watcher::Event::InitDone)) {
                done = true;
                tracker.pending.fetch_sub(1, Ordering::SeqCst);
                tracker.notify.notify_waiters();
            }
        }
    }

    async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.pending.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// A controller whose own watch reports to `tracker` when its initial list is complete.
fn tracked_controller<K>(api: Api<K>, tracker: &SyncTracker) -> Controller<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            .inspect(tracker.track()),
    )
    .applied_objects();
    Controller::for_stream(stream, reader)
}

fn all_vault_secrets(stores: &[VsStore]) -> Vec<Arc<DeserializeGuard<VaultSecret>>> {
    stores.iter().flat_map(|s| s.state()).collect()
}

/// Runs both controllers until `shutdown` resolves; in-flight reconciles drain first.
/// `on_synced` is called once every watch has listed its objects.
pub async fn run(
    client: kube::Client,
    privx: PrivxClient,
    settings: Settings,
    metrics: Arc<dyn ControllerMetrics>,
    options: RunOptions,
    shutdown: tokio_util::sync::CancellationToken,
    on_synced: impl FnOnce() + Send + 'static,
) {
    let controller_config = ControllerConfig::default().concurrency(options.concurrency);
    let tracker = SyncTracker::default();

    // PasswordPolicy controller; its store also serves the VaultSecret controllers.
    let policies_api: Api<DeserializeGuard<PasswordPolicy>> = Api::all(client.clone());
    let policy_controller =
        tracked_controller(policies_api, &tracker).with_config(controller_config.clone());
    let policy_store = policy_controller.store();

    // Namespace metadata for tenancy annotations.
    let (namespace_store, namespace_writer) = reflector::store();
    let namespace_reflector = reflector::reflector(
        namespace_writer,
        watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .inspect(tracker.track())
    .for_each(|_| futures::future::ready(()));

    // One VaultSecret controller per watched scope.
    let scopes: Vec<Option<String>> = if options.namespaces.is_empty() {
        vec![None]
    } else {
        options.namespaces.iter().cloned().map(Some).collect()
    };
    let mut vs_controllers = Vec::new();
    let mut vs_stores = Vec::new();
    for scope in &scopes {
        let api: Api<DeserializeGuard<VaultSecret>> = match scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let controller = tracked_controller(api, &tracker).with_config(controller_config.clone());
        vs_stores.push(controller.store());
        vs_controllers.push((scope.clone(), controller));
    }

    let reporter = Reporter {
        controller: "privx-operator".into(),
        instance: options.instance.clone(),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        privx,
        settings,
        metrics,
        recorder: Recorder::new(client.clone(), reporter),
        roles: Default::default(),
        backoff: Default::default(),
        vault_secrets: vs_stores.clone(),
        policies: policy_store.clone(),
        namespaces: namespace_store.clone(),
        mirrors: Default::default(),
    });

    // Background: the namespace reflector, and readiness once every watch has listed.
    let background = vec![
        tokio::spawn(namespace_reflector),
        tokio::spawn({
            let tracker = tracker.clone();
            async move {
                tracker.wait().await;
                info!("all watches synced");
                on_synced();
            }
        }),
    ];

    let mut tasks: Vec<BoxFuture<'static, ()>> = Vec::new();
    tasks.push(Box::pin(
        policy_controller
            .graceful_shutdown_on(shutdown.clone().cancelled_owned())
            .run(
                password_policy::reconcile,
                password_policy::error_policy,
                ctx.clone(),
            )
            .for_each(|_| futures::future::ready(())),
    ));

    for (scope, controller) in vs_controllers {
        let secrets_api: Api<PartialObjectMeta<Secret>> = match &scope {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let own_store = controller.store();
        let mirrors = watcher(
            secrets_api.clone(),
            watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")),
        )
        .default_backoff()
        .touched_objects();
        let sources = watcher(
            secrets_api,
            watcher::Config::default().labels(&format!("{SOURCE_LABEL}=true")),
        )
        .default_backoff()
        .touched_objects();
        let policies = watcher(
            Api::<DeserializeGuard<PasswordPolicy>>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .touched_objects();
        let namespaces = watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .touched_objects();

        let by_source = own_store.clone();
        let by_policy = own_store.clone();
        let by_namespace = own_store.clone();
        let controller = controller
            .owns_stream(mirrors)
            .watches_stream(sources, move |secret| {
                referrers(&by_source, |vs| {
                    vs.namespace() == secret.namespace()
                        && vs
                            .spec
                            .source
                            .as_ref()
                            .and_then(|s| s.secret_ref.as_ref())
                            .is_some_and(|r| r.name == secret.name_any())
                })
            })
            .watches_stream(policies, move |policy| {
                let name = policy.name_any();
                referrers(&by_policy, |vs| {
                    vs.spec
                        .source
                        .as_ref()
                        .and_then(|s| s.generate.as_ref())
                        .is_some_and(|g| g.password_policy_ref.name == name)
                })
            })
            .watches_stream(namespaces, move |ns| {
                let name = ns.name_any();
                referrers(&by_namespace, |vs| {
                    vs.namespace().as_deref() == Some(name.as_str())
                })
            })
            .graceful_shutdown_on(shutdown.clone().cancelled_owned());
        tasks.push(Box::pin(
            controller
                .run(
                    vault_secret::reconcile,
                    vault_secret::error_policy,
                    ctx.clone(),
                )
                .for_each(|_| futures::future::ready(())),
        ));
    }

    // Controllers end on the shutdown signal once in-flight reconciles have drained.
    futures::future::join_all(tasks).await;
    for task in background {
        task.abort();
    }
    info!("controllers stopped");
}

/// The VaultSecrets in `store` that `pred` selects, as reconcile requests.
fn referrers(
    store: &VsStore,
    pred: impl Fn(&VaultSecret) -> bool,
) -> Vec<ObjectRef<DeserializeGuard<VaultSecret>>> {
    store
        .state()
        .iter()
        .filter(|g| g.0.as_ref().is_ok_and(&pred))
        .map(|g| ObjectRef::from_obj(g.as_ref()))
        .collect()
}

impl Context {
    /// Every VaultSecret this process watches, across scopes.
    pub fn every_vault_secret(&self) -> Vec<Arc<DeserializeGuard<VaultSecret>>> {
        all_vault_secrets(&self.vault_secrets)
    }
}
