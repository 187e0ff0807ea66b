//! `privx-operator run`: brings the process up in order and down on one signal.
//!
//! Order: logging → HTTP endpoints → Kubernetes client (one clear line if no cluster) →
//! embedded PrivX (try-it mode) → PrivX client (its login: `identity`) → CRDs established →
//! HMAC key → leader election → who the operator is in PrivX (self roles) → controllers. Shutdown: the signal stops the controllers (in-flight reconciles
//! drain), then the lease is released, then the HTTP listener closes. Losing the lease is not a
//! shutdown: the controllers are dropped at once (in-flight reconciles cancelled, not drained),
//! and the lease gate has refused their writes from the moment the lease stopped being valid.

use std::sync::Arc;

use anyhow::{Context as _, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::args::ControllerName;
use super::args::{PolicyGenerationArg, RunArgs};
use super::crds::{CrdWait, wait_for_crds_established};
use super::http::{self, Health};
use super::leader::{LeaderElector, LeaseConfig, default_identity};
use super::metrics::Metrics;
use super::{embedded, logging, shutdown};
use crate::controller::core::ControllerMetrics;
use crate::controller::vault_secret::Settings;
use crate::controller::vault_secret::hashing::HmacKey;
use crate::controller::vault_secret::plan::tenancy::NameTemplate;
use crate::identity::login as identity;
use crate::identity::{SelfRoles, SelfRolesSetting};
use crate::runtime::runner::{self, RunOptions};
use privx_client::config::CredentialSource;
use privx_client::{AuthMethod, PolicyGenerationSetting, PrivxClient, PrivxConfig};

/// The CRDs the controllers need.
pub const CRD_NAMES: [&str; 2] = [
    "vaultsecrets.privx-operator.dev",
    "passwordpolicies.privx-operator.dev",
];

pub async fn main(args: RunArgs) -> anyhow::Result<()> {
    logging::init(args.log_format, &args.log_level)?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let name_template = NameTemplate::parse(&args.name_template).context("--name-template")?;
    let shutdown = shutdown::shutdown_signal().context("installing signal handlers")?;
    let metrics = Arc::new(Metrics::new());
    let health = Health::new();

    // Bind before anything else so that a taken port is a start-up error, not a silent gap.
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("--http-addr {}: cannot listen", args.http_addr))?;
    let http_task = tokio::spawn(http::serve_on(
        listener,
        health.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));

    let client = kube_client(metrics.clone()).await?;

    let operator_namespace = match &args.operator_namespace {
        Some(ns) => ns.clone(),
        None if args.embedded_privx => client.default_namespace().to_string(),
        None => {
            bail!("the operator's namespace is not set: use --operator-namespace or POD_NAMESPACE")
        }
    };

    // Try-it mode: the simulator in-process, as PrivX.
    let mut embedded = None;
    let self_roles_setting = SelfRolesSetting::from_args(&args.privx_self_roles);
    let mut privx_config = if args.embedded_privx {
        let sim = embedded::Embedded::start(args.embedded_privx_addr).await?;
        println!(
            "embedded PrivX simulator (demo seed) listening on {} — admin endpoints under {}/_sim/",
            sim.base_url, sim.base_url
        );
        let config = PrivxConfig::new(
            sim.base_url.clone(),
            CredentialSource::Static(sim.credentials.clone()),
        );
        embedded = Some(sim);
        install_crds_if_missing(&client).await?;
        config
    } else {
        let url = args
            .privx_url
            .clone()
            .context("the PrivX URL is not set: use --privx-url or PRIVX_API_BASE_URL (or --embedded-privx to try the operator)")?;
        PrivxConfig::with_auth(
            url,
            identity::auth_method(&args.auth, &client, &operator_namespace)?,
        )
    };
    privx_config.timeout = args.privx_timeout;
    // One limit for every PrivX client of the process (clones of this configuration share it).
    privx_config.limit = privx_client::Limit::new(privx_client::Limits {
        max_concurrency: args.privx_max_concurrency,
        rate: args.privx_rate_limit,
        burst: args.privx_rate_burst,
    })
    .context("--privx-max-concurrency / --privx-rate-limit / --privx-rate-burst")?;
    if !args.embedded_privx {
        privx_config.ca_file = args.privx_ca_file.clone();
        privx_config.ca_only = args.privx_ca_only;
    }
    privx_config.policy_generation = match args.privx_policy_generation {
        PolicyGenerationArg::Auto => PolicyGenerationSetting::Auto,
        PolicyGenerationArg::V34 => PolicyGenerationSetting::V34,
        PolicyGenerationArg::V35 => PolicyGenerationSetting::V35,
    };
    let configured_identity = match &privx_config.auth {
        AuthMethod::Password(credentials) => credentials.api_client_id(),
        AuthMethod::TokenExchange(_) => None,
    };
    let namespace_identity = identity::namespace_identities(
        &args.auth,
        &client,
        &privx_config,
        &self_roles_setting,
        metrics.clone(),
    )?;
    let privx = PrivxClient::new(privx_config)
        .context("PrivX client configuration")?
        .with_observer(metrics.clone());

    match wait_for_crds_established(client.clone(), &CRD_NAMES, shutdown.clone()).await {
        CrdWait::Established => {}
        CrdWait::Cancelled => return finish(http_task, embedded).await,
    }
    let hmac_key = HmacKey::load_or_create(&client, &operator_namespace, &args.hmac_secret_name)
        .await
        .context("the data-hash key")?;

    // Readiness also waits for PrivX to answer once.
    {
        let privx = privx.clone();
        let health = health.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut delay = std::time::Duration::from_secs(1);
            loop {
                match privx.ping().await {
                    Ok(()) => {
                        info!("PrivX answered");
                        health.set_privx_ok(true);
                        return;
                    }
                    Err(e) => warn!(error = %e, "PrivX does not answer yet"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return,
                }
                delay = (delay * 2).min(std::time::Duration::from_secs(60));
            }
        });
    }

    // `/readyz` says which PrivX services are not serving (their circuit breaker is open).
    tokio::spawn(report_privx_outages(privx.clone(), health.clone()));

    // Leader election: controllers run only while this replica leads.
    let (leader_tx, mut leader_rx) = watch::channel(!args.leader_election);
    let elector_shutdown = CancellationToken::new();
    let mut lease_gate = None;
    let elector_task = if args.leader_election {
        let elector = LeaderElector::new(
            client.clone(),
            LeaseConfig {
                namespace: operator_namespace.clone(),
                name: args.lease_name.clone(),
                identity: default_identity(),
                lease_duration: args.lease_duration,
            },
        );
        lease_gate = Some(elector.gate());
        Some(tokio::spawn(
            elector.run(leader_tx, elector_shutdown.clone()),
        ))
    } else {
        drop(leader_tx);
        None
    };
    if args.leader_election {
        info!(lease = %args.lease_name, "waiting to become the leader");
        // A standby has no watches to sync: it is ready (for rollouts) once PrivX answers.
        health.set_watches_synced(true);
        tokio::select! {
            r = leader_rx.wait_for(|leading| *leading) => { r.context("leader election ended")?; }
            _ = shutdown.cancelled() => {
                elector_shutdown.cancel();
                return finish(http_task, embedded).await;
            }
        }
    }
    // Who the operator is in PrivX decides the self roles (and the author it claims): the
    // controllers start once PrivX has said.
    let Some(resolved) = identity::resolve_at_start(
        &privx,
        &self_roles_setting,
        |n| health.set_note(n),
        &shutdown,
    )
    .await
    else {
        elector_shutdown.cancel();
        return finish(http_task, embedded).await;
    };
    let privx_identity = resolved.user_id.or(configured_identity);
    let self_roles = SelfRoles::default();
    self_roles.set(resolved.self_roles);
    metrics.set_leader(true);
    health.set_watches_synced(false);
    info!("leading: starting the controllers");

    // Stop the controllers (draining) on the shutdown signal; leadership loss drops them below.
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            stop.cancel();
        });
    }

    let renewals = identity::keep_current(
        privx.clone(),
        self_roles_setting.clone(),
        self_roles.clone(),
        stop.clone(),
    );
    let settings = Settings {
        name_template,
        self_roles,
        rollout_restart: args.rollout_restart,
        restart_debounce: args.rollout_restart_debounce,
        default_refresh: std::time::Duration::from_secs(3600),
        hmac_key,
        namespace_identity,
    };
    let controller_metrics: Arc<dyn ControllerMetrics> = metrics.clone();
    let health_synced = health.clone();
    // Every write of the controllers asks the lease gate when it is sent.
    let (client, privx) = match &lease_gate {
        Some(gate) => (
            gate.kube_client(client),
            privx.with_write_gate(gate.privx_gate()),
        ),
        None => (client, privx),
    };
    let controllers = runner::run(
        client,
        privx,
        settings,
        controller_metrics,
        RunOptions {
            namespaces: args.namespaces.clone(),
            concurrency: args.concurrency,
            instance: std::env::var("POD_NAME").ok(),
            privx_identity,
            vault_secrets: args.controllers.contains(&ControllerName::VaultSecret),
            password_policies: args.controllers.contains(&ControllerName::PasswordPolicy),
            selector: args.selector.clone(),
        },
        stop.clone(),
        move |up| health_synced.set_watches_synced(up),
    );
    let lost = async {
        if args.leader_election {
            // An ended elector (sender dropped) is a loss too.
            let _ = leader_rx.wait_for(|leading| !*leading).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = controllers => {}
        () = lost => {
            error!("lost the leader lease: controllers cancelled at once (in-flight reconciles dropped)");
        }
    }
    renewals.abort();
    metrics.set_leader(false);

    // Controllers have drained: now let a standby take over.
    elector_shutdown.cancel();
    if let Some(task) = elector_task {
        let _ = task.await;
    }
    let lost_leadership = !shutdown.is_cancelled();
    if let Some(gate) = &lease_gate {
        let refused = gate.refused();
        if refused > 0 {
            warn!(
                refused,
                "writes refused by the lease gate (this replica's lease was no longer valid)"
            );
        }
    }
    shutdown.cancel();
    finish(http_task, embedded).await?;
    if lost_leadership {
        bail!("lost leadership; exiting so that the pod restarts as a standby");
    }
    Ok(())
}

async fn finish(
    http_task: tokio::task::JoinHandle<Result<(), http::HttpError>>,
    embedded: Option<embedded::Embedded>,
) -> anyhow::Result<()> {
    if let Some(sim) = embedded {
        sim.shutdown().await;
    }
    match http_task.await {
        Ok(result) => result.context("HTTP endpoints")?,
        Err(e) => bail!("HTTP endpoints task failed: {e}"),
    }
    info!("stopped");
    Ok(())
}

/// A client for the cluster in the kube context (or in-cluster), its writes counted into
/// `metrics`, checked with one request so that "no cluster" is one clear line instead of a
/// stream of watch errors.
async fn kube_client(metrics: Arc<Metrics>) -> anyhow::Result<kube::Client> {
    let no_cluster = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "no Kubernetes cluster configured ({e}); set KUBECONFIG or a kube context, or run in a cluster"
        )
    };
    let config = kube::Config::infer().await.map_err(|e| no_cluster(&e))?;
    let client = super::kube_writes::client(config, metrics).map_err(|e| no_cluster(&e))?;
    client.apiserver_version().await.map_err(|e| {
        anyhow::anyhow!("the Kubernetes cluster is not reachable ({e}); check your kube context")
    })?;
    Ok(client)
}

/// Try-it mode: creates the CRDs when the cluster does not have them (never replaces them).
async fn install_crds_if_missing(client: &kube::Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crate::crd::all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        if api
            .get_opt(&name)
            .await
            .with_context(|| format!("reading CRD {name}"))?
            .is_none()
        {
            api.create(&PostParams::default(), &crd)
                .await
                .with_context(|| format!("creating CRD {name}"))?;
            info!(crd = %name, "installed CRD");
        }
    }
    Ok(())
}

/// Keeps `/readyz`'s outage note in step with the PrivX circuit breakers.
async fn report_privx_outages(privx: PrivxClient, health: Health) {
    let mut status = privx.breakers().subscribe();
    loop {
        let down: Vec<&str> = status
            .borrow_and_update()
            .unavailable()
            .into_iter()
            .map(|s| s.as_str())
            .collect();
        health.set_privx_outage((!down.is_empty()).then(|| {
            format!(
                "PrivX unavailable: {} (circuit breaker open; calls paused, probing until it answers)",
                down.join(", ")
            )
        }));
        if status.changed().await.is_err() {
            return;
        }
    }
}
