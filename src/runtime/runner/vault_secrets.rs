//! The VaultSecret controller's watches and triggers: Namespaces (metadata), VaultSecrets,
//! mirrors (by the managed-by label), source Secrets (metadata), and the PasswordPolicies it
//! generates to (the shared store's subscriber); what is due in the refresh queue.

use std::sync::Arc;

use futures::channel::mpsc;
use futures::{StreamExt, future::BoxFuture, stream::BoxStream};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::Api;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};

use super::health::WatchHealth;
use super::queue::Queued;
use super::scopes;
use super::triggers::{self, Changes, SourceIndex, strip_namespace};
use super::{
    Events, RunOptions, SOURCE_FIELDS, in_namespace, referrers, scope_suffix, scoped_apis,
    source_of, watch,
};
use crate::controller::vault_secret::store::stored::{StoredVaultSecret, VsRef};
use crate::controller::vault_secret::store::stored_mirror::WatchedMirror;
use crate::controller::vault_secret::{self, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::crd::PasswordPolicy;

/// What the VaultSecret controller is fed from.
pub(super) struct Feeds {
    pub vs_writer: Writer<StoredVaultSecret>,
    pub namespace_writer: Writer<PartialObjectMeta<Namespace>>,
    pub policies: BoxStream<'static, Arc<DeserializeGuard<PasswordPolicy>>>,
    pub extra_tx: mpsc::UnboundedSender<VsRef>,
    pub extra_rx: mpsc::UnboundedReceiver<VsRef>,
    /// The generation of each policy last passed on (the policy reflector forgets deleted ones).
    pub policy_generations: Changes,
}

/// The VaultSecret controller and its refresher, ready to run until `shutdown`.
pub(super) fn controller(
    ctx: &Arc<vault_secret::Context>,
    options: &RunOptions,
    health: &WatchHealth,
    feeds: Feeds,
    controller_config: ControllerConfig,
    queued: Queued,
    shutdown: tokio_util::sync::CancellationToken,
) -> (BoxFuture<'static, ()>, BoxFuture<'static, ()>) {
    let Feeds {
        vs_writer,
        namespace_writer,
        policies: policies_for_vault_secrets,
        extra_tx,
        extra_rx,
        policy_generations,
    } = feeds;
    let client = &ctx.client;
    let vs_store = ctx.vault_secrets.clone();
    let mirror_store = ctx.mirrors.clone();
    // --- Namespaces (metadata only, only our annotations kept) ---
    let namespace_changes = Changes::default();
    let namespace_triggers = reflector::reflector(
        namespace_writer,
        watch(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            watcher::Config::default(),
            health,
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
        scoped_apis::<StoredVaultSecret>(client, &options.namespaces)
            .into_iter()
            .map(|(scope, api)| {
                let what = format!("VaultSecrets{}", scope_suffix(&scope));
                let config = watcher::Config::default().any_semantic();
                let config = match &options.selector {
                    Some(selector) => config.labels(&selector.to_string()),
                    None => config,
                };
                watch(api, config, health, &what)
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
        let queued = queued.clone();
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
                queued.started(&key);
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
        scoped_apis::<WatchedMirror>(client, &options.namespaces)
            .into_iter()
            .map(|(scope, api)| {
                let what = format!("mirrored Secrets{}", scope_suffix(&scope));
                watch(
                    api,
                    watcher::Config::default()
                        .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")),
                    health,
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
        scoped_apis::<PartialObjectMeta<Secret>>(client, &options.namespaces)
            .into_iter()
            .map(|(scope, api)| {
                let what = format!("source Secrets{}", scope_suffix(&scope));
                let index = source_index.clone();
                watch(
                    api,
                    watcher::Config::default().fields(SOURCE_FIELDS),
                    health,
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

    // --- The VaultSecret controller ---
    let by_policy = vs_store.clone();
    let by_namespace = vs_store.clone();
    let vs_trigger = vs_trigger.inspect({
        let queued = queued.clone();
        move |vs| {
            if let Ok(vs) = vs {
                queued.asked(vault_secret::key_of(vs));
            }
        }
    });
    let vs_controller = Controller::for_stream(vs_trigger, vs_store.clone())
        .with_config(controller_config)
        .reconcile_on(mirror_triggers.inspect({
            let queued = queued.clone();
            move |r| queued.asked_ref(r)
        }))
        .watches_shared_stream(
            policies_for_vault_secrets.filter(move |p| {
                // Only a change of the policy's spec matters to the VaultSecrets that use it.
                let generation = p.meta().generation.unwrap_or_default() as u64;
                futures::future::ready(policy_generations.changed(&p.name_any(), generation))
            }),
            {
                let queued = queued.clone();
                move |policy| {
                    let name = policy.name_any();
                    let refs = referrers(&by_policy, |vs| vs.policy() == Some(name.as_str()));
                    refs.iter().for_each(|r| queued.asked_ref(r));
                    refs
                }
            },
        )
        .watches_stream(namespace_triggers, {
            let queued = queued.clone();
            move |ns| {
                let name = ns.name_any();
                let refs = referrers(&by_namespace, |vs| {
                    vs.namespace().as_deref() == Some(name.as_str())
                });
                refs.iter().for_each(|r| queued.asked_ref(r));
                refs
            }
        })
        .reconcile_on(source_triggers.inspect({
            let queued = queued.clone();
            move |r| queued.asked_ref(r)
        }))
        .reconcile_on(extra_rx.inspect({
            let queued = queued.clone();
            move |r| queued.asked_ref(r)
        }))
        .graceful_shutdown_on(shutdown.cancelled_owned());

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
    let run = vs_controller
        .run(
            {
                let queued = queued.clone();
                move |vs, ctx| {
                    queued.started(&vault_secret::key_of(vs.as_ref()));
                    vault_secret::reconcile(vs, ctx)
                }
            },
            vault_secret::error_policy,
            ctx.clone(),
        )
        .for_each(|_| futures::future::ready(()));
    (Box::pin(run), Box::pin(refresher))
}
