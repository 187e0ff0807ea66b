//! The operator's PrivX identity: self roles `auto` by default (push + mirror Ready with no
//! self-roles flag), an explicit list checked against PrivX, the older-PrivX fallback, the
//! TokenRequest source against a fake Kubernetes API, and per-namespace identity (a cached
//! client per namespace; a missing ServiceAccount is a clear refusal).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kube::client::Body;
use privx_client::{AuthMethod, PrivxClient, PrivxConfig, TokenExchange};
use privx_operator::controller::identity::{
    IdentityError, NamespaceIdentities, NamespaceIdentityConfig, SelfRolesSetting,
    TokenRequestSource,
};
use privx_operator::runtime::http::Health;
use privx_operator::runtime::identity::resolve_at_start;
use privx_sim::{Fault, SeedIssuer, SeedSubject, SimOptions, Simulator, demo, demo_seed};
use serde_json::{Value, json};
use support::{Harness, NS};
use tokio_util::sync::CancellationToken;

fn push_spec() -> Value {
    json!({
        "source": {"secretRef": {"name": "db-creds"}},
        "mirror": {"secretName": "db-creds-mirror"},
    })
}

async fn resolve(h: &Harness, setting: SelfRolesSetting) -> Health {
    let health = Health::new();
    let resolved = resolve_at_start(&h.ctx.privx, &setting, &health, &CancellationToken::new())
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
            &health,
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
            &Health::new(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert!(auto.self_roles.names.is_empty(), "today's behaviour: none");
    }
}

// ---- a fake Kubernetes API that mints service-account tokens ----

const CLUSTER_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/jwt")
            .join(name),
    )
    .unwrap()
}

#[derive(Clone, Default)]
struct TokenApi {
    /// (namespace, name) of the ServiceAccounts that exist.
    accounts: Arc<Mutex<Vec<(String, String)>>>,
    /// (path, audiences, expirationSeconds) of every token request.
    requests: Arc<Mutex<Vec<(String, Value, Value)>>>,
}

impl TokenApi {
    fn client(&self) -> kube::Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let api = self.clone();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let path = request.uri().path().to_string();
                let method = request.method().clone();
                let body = request
                    .into_body()
                    .collect_bytes()
                    .await
                    .unwrap_or_default();
                let body: Value = serde_json::from_slice(&body).unwrap_or_default();
                respond.send_response(api.answer(method.as_str(), &path, &body));
            }
        });
        kube::Client::new(service, "default")
    }

    fn answer(&self, method: &str, path: &str, body: &Value) -> Response<Body> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // /api/v1/namespaces/{ns}/serviceaccounts/{name}/token
        let reply = |code: u16, value: Value| {
            Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&value).unwrap()))
                .unwrap()
        };
        match (method, parts.as_slice()) {
            (
                "POST",
                [
                    "api",
                    "v1",
                    "namespaces",
                    ns,
                    "serviceaccounts",
                    name,
                    "token",
                ],
            ) => {
                let spec = &body["spec"];
                self.requests.lock().unwrap().push((
                    path.to_string(),
                    spec["audiences"].clone(),
                    spec["expirationSeconds"].clone(),
                ));
                let exists = self
                    .accounts
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|(n, a)| n == ns && a == name);
                if !exists {
                    return reply(
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                               "message": format!("serviceaccounts \"{name}\" not found")}),
                    );
                }
                let now = jiff::Timestamp::now().as_second();
                let key = EncodingKey::from_rsa_pem(fixture("rsa-private.pem").as_bytes()).unwrap();
                let token = jsonwebtoken::encode(
                    &Header::new(Algorithm::RS256),
                    &json!({"iss": CLUSTER_ISSUER, "sub": format!("system:serviceaccount:{ns}:{name}"),
                            "aud": spec["audiences"], "iat": now, "nbf": now,
                            "exp": now + spec["expirationSeconds"].as_i64().unwrap_or(3600)}),
                    &key,
                )
                .unwrap();
                reply(
                    201,
                    json!({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                           "spec": spec, "status": {"token": token, "expirationTimestamp": "2030-01-01T00:00:00Z"}}),
                )
            }
            _ => reply(
                404,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not served"}),
            ),
        }
    }
}

async fn sim_trusting_the_cluster() -> Simulator {
    let mut seed = demo_seed();
    let subject = |sub: &str, api_client: Option<&str>, user: Option<&str>| SeedSubject {
        subject: sub.into(),
        api_client: api_client.map(str::to_string),
        user: user.map(str::to_string),
    };
    seed.trusted_issuers = vec![SeedIssuer {
        issuer: CLUSTER_ISSUER.into(),
        audience: "privx".into(),
        jwks: None,
        public_key_pem: Some(fixture("rsa-public.pem")),
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
    let api = TokenApi::default();
    api.accounts
        .lock()
        .unwrap()
        .push(("privx-operator".into(), "privx-operator".into()));
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
    let requests = api.requests.lock().unwrap().clone();
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
    let api = TokenApi::default();
    api.accounts
        .lock()
        .unwrap()
        .push(("team-a".into(), "privx".into()));
    // A ServiceAccount of another name in team-b does not count.
    api.accounts
        .lock()
        .unwrap()
        .push(("team-b".into(), "default".into()));
    let template = PrivxConfig::new(
        sim.base_url(),
        privx_client::CredentialSource::Static(privx_client::Credentials {
            oauth_client_id: "unused".into(),
            oauth_client_secret: "unused".into(),
            api_client_id: "unused".into(),
            api_client_secret: "unused".into(),
        }),
    );
    let ids = NamespaceIdentities::new(
        api.client(),
        template,
        NamespaceIdentityConfig {
            service_account: "privx".into(),
            audience: "privx".into(),
            expiration: Duration::from_secs(600),
            self_roles: SelfRolesSetting::Auto,
        },
        None,
    );
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
    let before = api.requests.lock().unwrap().len();
    ids.client("team-a").await.unwrap();
    assert_eq!(api.requests.lock().unwrap().len(), before, "cached");

    let error = ids.client("team-b").await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, IdentityError::MissingServiceAccount { .. }));
    assert!(
        message.contains("team-b") && message.contains("\"privx\""),
        "{message}"
    );
    let (refusal, _) = error.stop();
    assert_eq!(refusal.reason, "IdentityNotFound");
    assert_eq!(refusal.message, message, "a stable message");
    // Every token request names the fixed ServiceAccount and audience, whatever the namespace.
    for (path, audiences, _) in api.requests.lock().unwrap().iter() {
        assert!(path.ends_with("/serviceaccounts/privx/token"), "{path}");
        assert_eq!(audiences, &json!(["privx"]));
    }
    sim.shutdown().await;
}
