//! The chart's helpers run from the operator's own image (which has no shell):
//! `privx-operator probe URL` (the `helm test` hook: does the installed operator answer
//! `/readyz`?) and `privx-operator uninstall-check` (the pre-delete hook: would an uninstall
//! leave objects stuck in deletion?).
//!
//! Both only read. Neither touches PrivX, removes a finalizer nor deletes anything.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use kube::api::{Api, ListParams, ObjectMeta};
use kube::core::PartialObjectMeta;

use crate::controller::core::finalizer::FINALIZER;
use crate::crd::{PasswordPolicy, VaultSecret};

/// `privx-operator probe`: one GET, success on a 2xx answer.
#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// The URL to ask, e.g. `http://privx-operator-metrics.privx-operator.svc:8080/readyz`.
    #[arg(value_name = "URL")]
    pub url: String,
    /// How long to wait for the answer (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `privx-operator uninstall-check`: fails while objects carry the operator's finalizer.
#[derive(clap::Args, Debug)]
pub struct UninstallCheckArgs {
    /// Namespaces whose VaultSecrets the operator watches, comma-separated (default: all).
    #[arg(long, value_delimiter = ',', value_name = "NS,...")]
    pub namespaces: Vec<String>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::crd::duration::parse_duration(text).map_err(|e| e.to_string())
}

/// Runs `probe`: prints the answer's status (and its first line, which `/readyz` uses for the
/// reason) and exits 0 on 2xx, 1 otherwise.
pub async fn probe(args: ProbeArgs) -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::Client::builder().timeout(args.timeout).build() {
        Ok(client) => client,
        Err(e) => {
            eprintln!("privx-operator probe: {e}");
            return ExitCode::FAILURE;
        }
    };
    match client.get(&args.url).send().await {
        Ok(response) => {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            let first = body.lines().next().unwrap_or_default();
            let line = format!("{} answered {status}: {first}", args.url);
            if status.is_success() {
                println!("{line}");
                ExitCode::SUCCESS
            } else {
                eprintln!("privx-operator probe: {line}");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("privx-operator probe: {}: no answer: {e}", args.url);
            ExitCode::FAILURE
        }
    }
}

/// One object that would be stuck in deletion without the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocking {
    pub kind: &'static str,
    /// `namespace/name`, or `name` for a cluster-scoped object.
    pub name: String,
}

/// The objects among `metas` that carry the operator's finalizer.
pub fn blocking(kind: &'static str, metas: &[ObjectMeta]) -> Vec<Blocking> {
    metas
        .iter()
        .filter(|m| {
            m.finalizers
                .as_ref()
                .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
        })
        .map(|m| Blocking {
            kind,
            name: match &m.namespace {
                Some(ns) => format!("{ns}/{}", m.name.as_deref().unwrap_or_default()),
                None => m.name.clone().unwrap_or_default(),
            },
        })
        .collect()
}

/// What `uninstall-check` prints when objects block: each of them, and the ways out.
pub fn report(blocking: &[Blocking]) -> String {
    let mut text = format!(
        "{} object(s) still carry the operator's finalizer {FINALIZER} (deletionPolicy Delete). \
         Without the operator they, and their namespaces, would wait in deletion forever, so \
         the uninstall stops here and nothing was deleted:\n",
        blocking.len()
    );
    for b in blocking {
        text.push_str(&format!("  {} {}\n", b.kind, b.name));
    }
    text.push_str(
        "Then either delete them while the operator runs (it deletes their PrivX objects, as \
         declared), or set spec.deletionPolicy: Retain on them (the operator removes its \
         finalizer and leaves the PrivX objects in place), and uninstall again. \
         `helm uninstall --no-hooks` skips this check; the objects then keep their finalizers \
         (docs/operations.md, \"Uninstalling\").\n",
    );
    text
}

/// Every VaultSecret (in `namespaces`, or all) and PasswordPolicy that carries the operator's
/// finalizer; lists metadata only.
pub async fn find_blocking(
    client: &kube::Client,
    namespaces: &[String],
) -> anyhow::Result<Vec<Blocking>> {
    let params = ListParams::default();
    let mut found = Vec::new();
    let policies = Api::<PasswordPolicy>::all(client.clone())
        .list_metadata(&params)
        .await
        .context("listing PasswordPolicies")?;
    found.extend(blocking("PasswordPolicy", &metas(policies)));
    let vault_secret_apis: Vec<Api<VaultSecret>> = if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    };
    for api in vault_secret_apis {
        let secrets = api
            .list_metadata(&params)
            .await
            .context("listing VaultSecrets")?;
        found.extend(blocking("VaultSecret", &metas(secrets)));
    }
    Ok(found)
}

/// Runs `uninstall-check` with the in-cluster (or kubeconfig) credentials: exit 0 when nothing
/// blocks, 1 (with the report on stderr) when something does.
pub async fn uninstall_check(args: UninstallCheckArgs) -> anyhow::Result<ExitCode> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let found = find_blocking(&client, &args.namespaces).await?;
    if found.is_empty() {
        println!(
            "no VaultSecret or PasswordPolicy carries the operator's finalizer: uninstalling leaves nothing stuck"
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprint!("privx-operator uninstall-check: {}", report(&found));
        Ok(ExitCode::FAILURE)
    }
}

fn metas<K: Clone>(list: kube::core::ObjectList<PartialObjectMeta<K>>) -> Vec<ObjectMeta> {
    list.items.into_iter().map(|o| o.metadata).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(ns: Option<&str>, name: &str, finalizers: &[&str]) -> ObjectMeta {
        ObjectMeta {
            namespace: ns.map(str::to_string),
            name: Some(name.into()),
            finalizers: Some(finalizers.iter().map(|f| f.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn only_objects_with_the_operators_finalizer_block() {
        let metas = [
            meta(Some("demo"), "kept", &[FINALIZER]),
            meta(Some("demo"), "retained", &[]),
            meta(Some("demo"), "foreign", &["example.com/other"]),
            meta(None, "policy", &["example.com/other", FINALIZER]),
        ];
        let found = blocking("VaultSecret", &metas);
        let names: Vec<&str> = found.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["demo/kept", "policy"]);
    }

    #[test]
    fn the_report_names_each_object_and_both_ways_out() {
        let text = report(&[
            Blocking {
                kind: "VaultSecret",
                name: "demo/app".into(),
            },
            Blocking {
                kind: "PasswordPolicy",
                name: "app-passwords".into(),
            },
        ]);
        assert!(text.starts_with("2 object(s)"), "{text}");
        assert!(text.contains("  VaultSecret demo/app\n"), "{text}");
        assert!(text.contains("  PasswordPolicy app-passwords\n"), "{text}");
        assert!(text.contains("deletionPolicy: Retain"), "{text}");
        assert!(text.contains("--no-hooks"), "{text}");
    }
}
