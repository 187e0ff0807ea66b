//! The operator's PrivX identity: self roles `auto` by default (push + mirror Ready with no
//! self-roles flag), an explicit list checked against PrivX, the older-PrivX fallback, the
//! TokenRequest source against the fake Kubernetes API (tests/support/fake_kube/token.rs), and
//! per-namespace identity (a cached client per namespace; a missing ServiceAccount is a clear
//! refusal), directly and through the running operator.

mod support;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use privx_client::{AuthMethod, PrivxClient, PrivxConfig, TokenExchange};
use privx_operator::identity::login::resolve_at_start;
use privx_operator::identity::{
    IdentityError, NamespaceIdentities, NamespaceIdentityConfig, SelfRolesSetting,
    TokenRequestSource,
};
use privx_operator::runtime::http::Health;
use privx_sim::{Fault, SeedIssuer, SeedSubject, SimOptions, Simulator, demo, demo_seed};
use serde_json::{Value, json};
use support::fake_kube::token::{TOKEN_ISSUER, token_public_key_pem};
use support::{FakeKube, Harness, NS};
use tokio_util::sync::CancellationToken;

fn push_spec() -> Value {
    json!({
        "source": {"secretRef": {"name": "db-creds"}},
        "mirror": {"secretName": "db-creds-mirror"},
    })
}

async fn resolve(h: &Harness, setting: SelfRolesSetting) -> Health {
    let health = Health::new();
    let resolved = resolve_at_start(
        &h.ctx.privx,
        &setting,
        |n| health.set_note(n),
        &CancellationToken::new(),
    )
    .await
    .expect("PrivX answers");
    assert_eq!(resolved.user_id.as_deref(), Some(demo::OPERATOR_CLIENT_ID));
    h.ctx.settings.self_roles.set(resolved.self_roles);
    health
}

#[tokio::test]
async fn defaults_work_push_and_mirror_become_ready_with_auto_self_roles() {
    let mut h = Harness::new().await;
    // Nothing configured: start from no self roles, as the operator does before PrivX answers.
    h.ctx.settings.self_roles.set(Default::default());
    let health = resolve(&h, SelfRolesSetting::from_args(&["auto".into()])).await;
    assert_eq!(h.ctx.settings.self_roles.names(), ["privx-operator"]);
    assert_eq!(health.note(), None);
    h.secret(NS, "db-creds", &[("password", "pa55-value")]);
    h.vault_secret("db", push_spec());
    h.reconcile("db").await.expect("reconcile");
    let (status, reason, message) = h.ready_reason("db");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "Synced"),
        "{message}"
    );
    assert_eq!(
        h.secret_data(NS, "db-creds-mirror").unwrap()["password"],
        "pa55-value"
    );
}

#[tokio::test]
async fn a_configured_self_role_the_operator_does_not_hold_is_named_in_status() {
    let mut h = Harness::new().await;
    resolve(&h, SelfRolesSetting::from_args(&["app-readers".into()])).await;
    let state = h.ctx.settings.self_roles.get();
    assert_eq!(state.not_held, ["app-readers"]);
    h.secret(NS, "db-creds", &[("password", "pa55-value")]);
    h.vault_secret("db", push_spec());
    let _ = h.reconcile("db").await;
    let (status, reason, message) = h.ready_reason("db");
    assert_eq!(status, "False");
    assert_eq!(reason, "NotReadable");
    assert!(message.contains("app-readers"), "{message}");
    assert!(message.contains("--privx-self-roles"), "{message}");
    let vault_writes: Vec<String> = h
        .privx_writes()
        .into_iter()
        .filter(|w| w.contains("/vault/"))
        .collect();
    assert!(
        vault_writes.is_empty(),
        "nothing is written that could not be read back: {vault_writes:?}"
    );
}

#[tokio::test]
async fn older_privx_without_users_current_falls_back_and_says_so() {
    for status in [404, 405] {
        let h = Harness::with_options(SimOptions {
            faults: vec![Fault::status(
                "GET /role-store/api/v1/users/current",
                status,
            )],
            ..Default::default()
        })
        .await;
        let health = Health::new();
        let resolved = resolve_at_start(
            &h.ctx.privx,
            &SelfRolesSetting::Named(vec!["privx-operator".into()]),
            |n| health.set_note(n),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(resolved.user_id, None);
        assert_eq!(resolved.self_roles.names, ["privx-operator"]);
        assert!(resolved.self_roles.not_held.is_empty());
        assert!(health.note().unwrap().contains("users/current"), "{status}");
        let auto = resolve_at_start(
            &h.ctx.privx,
            &SelfRolesSetting::Auto,
            |_| {},
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert!(auto.self_roles.names.is_empty(), "today's behaviour: none");
    }
}

// ---- service-account tokens from the fake Kubernetes API (TokenRequest) ----

/// The fake API with these (namespace, name) ServiceAccounts.
fn kube_with_accounts(accounts: &[(&str, &str)]) -> FakeKube {
    let kube = FakeKube::default();
    for (ns, name) in accounts {
        kube.put(
            &format!("/api/v1/namespaces/{ns}/serviceaccounts/{name}"),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}}),
        );
    }
    kube
}

/// (path, audiences, expirationSeconds) of every TokenRequest the fake API received.
fn token_requests(kube: &FakeKube) -> Vec<(String, Value, Value)> {
    kube.requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/token"))
        .map(|r| {
            let spec = r.body.unwrap_or_default()["spec"].clone();
            (
                r.path,
                spec["audiences"].clone(),
                spec["expirationSeconds"].clone(),
            )
        })
        .collect()
}

/// Per-namespace identities (ServiceAccount `privx`, audience `privx`, self roles auto) over
/// the fake API's TokenRequest; the template's static credentials are never used.
fn namespace_identities(sim: &Simulator, kube: &FakeKube) -> NamespaceIdentities {
    let template = PrivxConfig::new(
        sim.base_url(),
        privx_client::CredentialSource::Static(privx_client::Credentials {
            oauth_client_id: "unused".into(),
            oauth_client_secret: "unused".into(),
            api_client_id: "unused".into(),
            api_client_secret: "unused".into(),
        }),
    );
    NamespaceIdentities::new(
        kube.client(),
        template,
        NamespaceIdentityConfig {
            service_account: "privx".into(),
            audience: "privx".into(),
            expiration: Duration::from_secs(600),
            self_roles: SelfRolesSetting::Auto,
        },
        None,
    )
}

async fn sim_trusting_the_cluster() -> Simulator {
    let mut seed = demo_seed();
    let subject = |sub: &str, api_client: Option<&str>, user: Option<&str>| SeedSubject {
        subject: sub.into(),
        api_client: api_client.map(str::to_string),
        user: user.map(str::to_string),
    };
    seed.trusted_issuers = vec![SeedIssuer {
        issuer: TOKEN_ISSUER.into(),
        audience: "privx".into(),
        jwks: None,
        public_key_pem: Some(token_public_key_pem()),
        ed_alg_name: None,
        subjects: vec![
            subject(
                "system:serviceaccount:privx-operator:privx-operator",
                Some(demo::OPERATOR_CLIENT_NAME),
                None,
            ),
            subject("system:serviceaccount:team-a:privx", None, Some("alice")),
        ],
    }];
    Simulator::start(SimOptions {
        seed,
        ..Default::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn token_request_source_logs_the_operator_in_as_its_own_service_account() {
    let sim = sim_trusting_the_cluster().await;
    let api = kube_with_accounts(&[("privx-operator", "privx-operator")]);
    let source = TokenRequestSource {
        client: api.client(),
        namespace: "privx-operator".into(),
        name: "privx-operator".into(),
        audience: "privx".into(),
        expiration: Duration::from_secs(600),
    };
    let config = PrivxConfig::with_auth(
        sim.base_url(),
        AuthMethod::TokenExchange(TokenExchange::new(Arc::new(source.clone()))),
    );
    let privx = PrivxClient::new(config).unwrap();
    let me = privx.current_user().await.unwrap().unwrap();
    assert_eq!(me.id, demo::OPERATOR_CLIENT_ID);
    let requests = token_requests(&api);
    assert_eq!(
        requests,
        [(
            "/api/v1/namespaces/privx-operator/serviceaccounts/privx-operator/token".to_string(),
            json!(["privx"]),
            json!(600)
        )],
        "one TokenRequest, own ServiceAccount, fixed audience, bounded lifetime"
    );
    // Its own ServiceAccount only: another name is simply not there to be had.
    let other = TokenRequestSource {
        name: "default".into(),
        ..source
    };
    assert!(matches!(
        other.request().await,
        Err(IdentityError::MissingServiceAccount { .. })
    ));
    sim.shutdown().await;
}

#[tokio::test]
async fn per_namespace_identity_caches_a_client_per_namespace_and_refuses_without_the_account() {
    let sim = sim_trusting_the_cluster().await;
    // A ServiceAccount of another name in team-b does not count.
    let api = kube_with_accounts(&[("team-a", "privx"), ("team-b", "default")]);
    let ids = namespace_identities(&sim, &api);
    let team_a = ids
        .client("team-a")
        .await
        .expect("team-a has its ServiceAccount");
    let me = team_a.current_user().await.unwrap().unwrap();
    assert_eq!(
        me.id,
        demo::USER_ALICE,
        "PrivX sees the namespace's own identity"
    );
    // alice's roles carry no vault permission in the demo seed: auto picks none.
    assert_eq!(ids.cached_self_roles("team-a"), Some(vec![]));
    let before = token_requests(&api).len();
    ids.client("team-a").await.unwrap();
    assert_eq!(token_requests(&api).len(), before, "cached");

    let error = ids.client("team-b").await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, IdentityError::MissingServiceAccount { .. }));
    assert!(
        message.contains("team-b") && message.contains("\"privx\""),
        "{message}"
    );
    let (refusal, _) = privx_operator::controller::vault_secret::identity_stop(error);
    assert_eq!(refusal.reason, "IdentityNotFound");
    assert_eq!(refusal.message, message, "a stable message");
    // Every token request names the fixed ServiceAccount and audience, whatever the namespace.
    for (path, audiences, _) in token_requests(&api).iter() {
        assert!(path.ends_with("/serviceaccounts/privx/token"), "{path}");
        assert_eq!(audiences, &json!(["privx"]));
    }
    sim.shutdown().await;
}

// ---- per-namespace identity through the running operator ----

/// Issue 11 §4, through the runner as `privx-operator run` assembles it: with per-namespace
/// identity on, each namespace's VaultSecrets are reconciled with a token the (fake) Kubernetes
/// API mints for that namespace's one ServiceAccount `privx` (TokenRequest), exchanged at PrivX
/// (the simulator trusts the fake API's issuer and key). team-a has the account: Ready.
/// team-b has only a ServiceAccount of another name: `Ready=False IdentityNotFound` naming the
/// missing account, and nothing of team-b reaches PrivX's vault.
#[tokio::test]
async fn per_namespace_identity_through_the_runner_is_ready_with_the_account_and_refused_without() {
    use support::running::{
        Running, eventually, namespace_object, push_mirror_spec, ready_reason, secret_object,
        vault_secret_object,
    };
    use support::{privx_client_for, secret_path, vs_path};

    let mut seed = demo_seed();
    seed.trusted_issuers = vec![SeedIssuer {
        issuer: TOKEN_ISSUER.into(),
        audience: "privx".into(),
        jwks: None,
        public_key_pem: Some(token_public_key_pem()),
        ed_alg_name: None,
        subjects: vec![SeedSubject {
            subject: "system:serviceaccount:team-a:privx".into(),
            api_client: Some(demo::OPERATOR_CLIENT_NAME.into()),
            user: None,
        }],
    }];
    let sim = Simulator::start(SimOptions {
        seed,
        ..Default::default()
    })
    .await
    .unwrap();
    let kube = FakeKube::default();
    for ns in ["team-a", "team-b"] {
        kube.put(
            &format!("/api/v1/namespaces/{ns}"),
            namespace_object(ns, json!({})),
        );
        kube.put(
            &secret_path(ns, "db-creds"),
            secret_object(ns, "db-creds", &[("password", "pa55-value")]),
        );
    }
    let account = |ns: &str, name: &str| json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}});
    kube.put(
        "/api/v1/namespaces/team-a/serviceaccounts/privx",
        account("team-a", "privx"),
    );
    kube.put(
        "/api/v1/namespaces/team-b/serviceaccounts/default",
        account("team-b", "default"),
    );
    let identities = Arc::new(namespace_identities(&sim, &kube));
    let running = Running::start_tuned(
        &kube,
        &sim,
        privx_client_for(&sim, sim.credentials()),
        &[],
        4,
        move |settings| settings.namespace_identity = Some(identities),
    );
    let limit = Duration::from_secs(10);
    eventually("watches up", limit, || running.up()).await;
    sim.clear_requests();
    for ns in ["team-a", "team-b"] {
        kube.put(
            &vs_path(ns, "db"),
            vault_secret_object(ns, "db", push_mirror_spec("db-creds")),
        );
    }
    eventually("team-a Synced", limit, || {
        ready_reason(&kube, "team-a", "db") == "Synced"
    })
    .await;
    eventually("team-b IdentityNotFound", limit, || {
        ready_reason(&kube, "team-b", "db") == "IdentityNotFound"
    })
    .await;

    let team_b = kube.get(&vs_path("team-b", "db")).unwrap();
    let ready = team_b["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["status"], "False");
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains("namespace team-b has no ServiceAccount \"privx\""),
        "{message}"
    );
    assert!(
        kube.get(&secret_path("team-a", "db")).is_some(),
        "team-a's mirror"
    );
    assert!(
        kube.get(&secret_path("team-b", "db")).is_none(),
        "no team-b mirror"
    );

    // Token requests: only for the one configured name, in each namespace asked about.
    let token_paths: Vec<String> = kube
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/token"))
        .map(|r| r.path)
        .collect();
    assert!(
        token_paths.contains(&"/api/v1/namespaces/team-a/serviceaccounts/privx/token".to_string())
    );
    assert!(
        token_paths.contains(&"/api/v1/namespaces/team-b/serviceaccounts/privx/token".to_string())
    );
    assert!(
        token_paths
            .iter()
            .all(|p| p.ends_with("/serviceaccounts/privx/token")),
        "{token_paths:?}"
    );
    // team-a logged in by token exchange; nothing of team-b reached the vault.
    let privx = sim.requests();
    assert!(
        privx
            .iter()
            .any(|r| r.route == "POST /auth/api/v1/token/login" && r.status == 200),
        "{:?}",
        privx.iter().map(|r| &r.route).collect::<Vec<_>>()
    );
    // One vault call in all: team-a's create (a new object creates without reading first).
    let vault: Vec<(&str, u16)> = privx
        .iter()
        .filter(|r| r.route.contains("/vault/"))
        .map(|r| (r.route.as_str(), r.status))
        .collect();
    assert_eq!(
        vault.len(),
        1,
        "nothing of team-b reached the vault: {vault:?}"
    );
    assert_eq!(vault[0].0, "POST /vault/api/v1/secrets");
    assert!(vault[0].1 < 300, "{vault:?}");
    assert!(
        !privx.iter().any(|r| r.path.contains("team-b")),
        "no PrivX call about team-b"
    );
    running.stop().await;
    sim.shutdown().await;
}

/// Issue 23 §1: with per-namespace identity, the namespace's own PrivX user writes its secrets,
/// so PrivX names that user as their author; ownership must be judged against that user, not
/// the operator's API client. team-a maps to `team-a-bot` (its own role carrying `vault-add`),
/// never to the operator: create, reconcile again after a change (update), delete with
/// `deletionPolicy: Delete` all succeed, while a secret a third identity (`someone-else`)
/// wrote stays `Conflict`.
#[tokio::test]
async fn per_namespace_identity_owns_what_its_own_user_wrote_and_nothing_else() {
    use privx_client::{RoleHandle, SecretData, SecretLocation, SecretWrite};
    use privx_sim::{SeedRole, SeedUser};
    use support::running::{
        Running, eventually, namespace_object, ready_reason, secret_object, vault_secret_object,
    };
    use support::{privx_client_for, secret_path, vs_path};

    const BOT: &str = "20000000-0000-4000-8000-0000000000a1";
    const BOT_ROLE: &str = "10000000-0000-4000-8000-0000000000a1";
    let mut seed = demo_seed();
    seed.roles.push(SeedRole {
        id: BOT_ROLE.into(),
        name: "team-a-vault".into(),
        permissions: vec!["vault-add".into()],
    });
    seed.users.push(SeedUser {
        id: BOT.into(),
        username: "team-a-bot".into(),
        roles: vec!["team-a-vault".into()],
    });
    seed.trusted_issuers = vec![SeedIssuer {
        issuer: TOKEN_ISSUER.into(),
        audience: "privx".into(),
        jwks: None,
        public_key_pem: Some(token_public_key_pem()),
        ed_alg_name: None,
        subjects: vec![SeedSubject {
            subject: "system:serviceaccount:team-a:privx".into(),
            api_client: None,
            user: Some("team-a-bot".into()),
        }],
    }];
    let sim = Simulator::start(SimOptions {
        seed,
        ..Default::default()
    })
    .await
    .unwrap();
    let kube = FakeKube::default();
    kube.put(
        "/api/v1/namespaces/team-a",
        namespace_object("team-a", json!({})),
    );
    kube.put(
        &secret_path("team-a", "db-creds"),
        secret_object("team-a", "db-creds", &[("password", "first-value")]),
    );
    kube.put(
        "/api/v1/namespaces/team-a/serviceaccounts/privx",
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "privx", "namespace": "team-a"}}),
    );
    let identities = Arc::new(namespace_identities(&sim, &kube));
    let team_a = identities.client("team-a").await.expect("team-a logs in");
    assert_eq!(
        team_a.current_user().await.unwrap().unwrap().id,
        BOT,
        "team-a is its own PrivX user, not the operator"
    );
    // A third identity writes a secret in team-a's name space that team-a may read and write.
    let someone_else = privx_client_for(&sim, sim.credentials_of("someone-else").unwrap());
    let bot_role = || RoleHandle {
        id: BOT_ROLE.into(),
        name: None,
        deleted: None,
    };
    someone_else
        .create_secret(
            &SecretLocation::Shared,
            "k8s/team-a/foreign",
            &SecretWrite {
                data: SecretData([("password".to_string(), json!("not-ours"))].into()),
                read_roles: vec![bot_role()],
                write_roles: vec![bot_role()],
            },
        )
        .await
        .expect("someone else writes its secret");

    let running = Running::start_tuned(
        &kube,
        &sim,
        privx_client_for(&sim, sim.credentials()),
        &[],
        4,
        {
            let identities = identities.clone();
            move |settings| settings.namespace_identity = Some(identities)
        },
    );
    let limit = Duration::from_secs(10);
    eventually("watches up", limit, || running.up()).await;
    let spec = |source: &str| {
        json!({"source": {"secretRef": {"name": source}}, "mirror": {},
               "deletionPolicy": "Delete"})
    };
    kube.put(
        &vs_path("team-a", "db"),
        vault_secret_object("team-a", "db", spec("db-creds")),
    );
    eventually("db Synced", limit, || {
        ready_reason(&kube, "team-a", "db") == "Synced"
    })
    .await;
    let written = team_a
        .get_secret(&SecretLocation::Shared, "k8s/team-a/db")
        .await
        .expect("team-a reads what it wrote");
    assert_eq!(written.author.as_deref(), Some(BOT), "PrivX's author");

    // The source changes: the next reconcile reads the secret back (authored by team-a-bot),
    // must see it as its own, and updates it; the mirror follows.
    kube.put(
        &secret_path("team-a", "db-creds"),
        secret_object("team-a", "db-creds", &[("password", "second-value")]),
    );
    let mirrored = |kube: &FakeKube| {
        kube.get(&secret_path("team-a", "db"))
            .and_then(|s| s["data"]["password"].as_str().map(str::to_string))
    };
    let second = base64::engine::general_purpose::STANDARD.encode("second-value");
    eventually("the mirror follows the update", limit, || {
        mirrored(&kube).as_deref() == Some(second.as_str())
            || ready_reason(&kube, "team-a", "db") != "Synced"
    })
    .await;
    assert_eq!(ready_reason(&kube, "team-a", "db"), "Synced");
    let updated = team_a
        .get_secret(&SecretLocation::Shared, "k8s/team-a/db")
        .await
        .unwrap();
    assert_eq!(
        updated.data.unwrap().0.get("password"),
        Some(&json!("second-value"))
    );

    // The third identity's secret is still not team-a's to take.
    kube.put(
        &vs_path("team-a", "foreign"),
        vault_secret_object("team-a", "foreign", spec("db-creds")),
    );
    eventually("foreign Conflict", limit, || {
        !ready_reason(&kube, "team-a", "foreign").is_empty()
    })
    .await;
    assert_eq!(ready_reason(&kube, "team-a", "foreign"), "Conflict");

    // Deletion with `Delete`: the author check passes for team-a-bot's secret, PrivX deletes it
    // and the finalizer goes.
    kube.delete(&vs_path("team-a", "db"));
    eventually("db gone (finalizer released)", limit, || {
        kube.get(&vs_path("team-a", "db")).is_none()
            || ready_reason(&kube, "team-a", "db") == "Conflict"
    })
    .await;
    assert!(
        kube.get(&vs_path("team-a", "db")).is_none(),
        "finalizer stuck: {}",
        ready_reason(&kube, "team-a", "db")
    );
    assert!(
        matches!(
            team_a
                .get_secret_metadata(&SecretLocation::Shared, "k8s/team-a/db")
                .await,
            Err(privx_client::PrivxError::NotFound { .. })
        ),
        "deleted in PrivX"
    );
    let foreign = someone_else
        .get_secret_metadata(&SecretLocation::Shared, "k8s/team-a/foreign")
        .await
        .expect("the foreign secret is untouched");
    assert_eq!(
        foreign.author.as_deref(),
        Some(demo::SOMEONE_ELSE_CLIENT_ID)
    );
    running.stop().await;
    sim.shutdown().await;
}

/// Issue 23 §4: namespaces log in in parallel (one login per namespace at a time, not one for
/// all), and a namespace no longer used is forgotten.
#[tokio::test]
async fn namespace_identities_log_in_in_parallel_and_forget_idle_namespaces() {
    let sim = sim_trusting_the_cluster().await;
    let namespaces: Vec<String> = (0..200).map(|i| format!("team-{i}")).collect();
    let mut accounts: Vec<(&str, &str)> =
        namespaces.iter().map(|n| (n.as_str(), "privx")).collect();
    accounts.push(("team-a", "privx"));
    let kube = kube_with_accounts(&accounts);
    let ids = Arc::new(namespace_identities(&sim, &kube));
    // Every login waits at PrivX's token endpoint: serial logins would never overlap there.
    sim.set_faults(vec![Fault::latency(
        "POST /auth/api/v1/token/login",
        Duration::from_millis(20),
    )]);
    sim.reset_max_in_flight();
    let logins: Vec<_> = namespaces
        .iter()
        .map(|ns| {
            let ids = ids.clone();
            let ns = ns.clone();
            tokio::spawn(async move { ids.login(&ns).await.map(|_| ()) })
        })
        .collect();
    for login in logins {
        // Unmapped subjects are refused by PrivX; what matters is how the logins ran.
        let _ = login.await.unwrap();
    }
    let (_, overlapping) = sim.in_flight();
    sim.set_faults(Vec::new());
    assert!(
        overlapping > 1,
        "namespace logins ran one at a time ({overlapping} in flight at most)"
    );
    // A namespace that is deleted, or idle long enough, is forgotten.
    ids.login("team-a").await.expect("team-a maps to alice");
    assert!(ids.cached_self_roles("team-a").is_some());
    assert_eq!(
        ids.len(),
        201,
        "every namespace asked about, until forgotten"
    );
    ids.forget("team-a");
    assert!(ids.cached_self_roles("team-a").is_none(), "forgotten");
    assert_eq!(ids.len(), 200);
    let later = std::time::Instant::now() + Duration::from_secs(3600);
    assert_eq!(ids.sweep(later), 0, "an hour later nothing is held");
    sim.shutdown().await;
}
