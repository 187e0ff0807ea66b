//! What the request log counts as a PrivX write ([`LoggedRequest::is_write`]), checked against
//! what each request did to the simulator's state: every read-only POST of
//! [`READ_ONLY_POSTS`] succeeds and changes nothing; every successful create, replace and
//! delete changes something; a refused write changes nothing. The end-to-end harness counts
//! the operator's writes with the same function.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use privx_sim::{
    LoggedRequest, READ_ONLY_POSTS, SeedIssuer, SeedSubject, SimOptions, Simulator, demo, demo_seed,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "privx";
const SUBJECT: &str = "operator-subject";

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/jwt")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// The demo seed, plus an issuer whose JWTs log in as the operator's API client.
async fn start() -> Simulator {
    let mut seed = demo_seed();
    seed.trusted_issuers = vec![SeedIssuer {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        jwks: None,
        public_key_pem: Some(fixture("rsa-public.pem")),
        ed_alg_name: None,
        subjects: vec![SeedSubject {
            subject: SUBJECT.into(),
            api_client: Some(demo::OPERATOR_CLIENT_NAME.into()),
            user: None,
        }],
    }];
    Simulator::start(SimOptions {
        seed,
        ..Default::default()
    })
    .await
    .expect("simulator starts")
}

fn signed_jwt() -> String {
    let now = jiff::Timestamp::now().as_second();
    let claims = json!({"iss": ISSUER, "sub": SUBJECT, "aud": AUDIENCE,
        "iat": now, "nbf": now, "exp": now + 300});
    let key = EncodingKey::from_rsa_pem(fixture("rsa-private.pem").as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap()
}

struct Caller {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Caller {
    async fn operator(sim: &Simulator) -> Caller {
        let http = http();
        let (status, body) = grant(&http, sim).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        Caller {
            http,
            base: sim.base_url(),
            token: body["access_token"].as_str().unwrap().to_string(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// What a write could change: the shared secrets, alice's personal ones and the policies
    /// (with their `updated` stamps).
    async fn state(&self) -> Value {
        let mut state = Vec::new();
        for path in [
            "/vault/api/v1/secrets".to_string(),
            format!("/vault/api/v1/user/{}/secrets", demo::USER_ALICE),
            "/secrets-manager/api/v1/password-policies".to_string(),
        ] {
            let (status, body) = self.call(Method::GET, &path, None).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            state.push(body);
        }
        Value::Array(state)
    }
}

async fn grant(http: &reqwest::Client, sim: &Simulator) -> (StatusCode, Value) {
    let c = sim.credentials();
    let response = http
        .post(format!("{}/auth/api/v1/oauth/token", sim.base_url()))
        .basic_auth(&c.oauth_client_id, Some(&c.oauth_client_secret))
        .form(&[
            ("grant_type", "password"),
            ("username", c.api_client_id.as_str()),
            ("password", c.api_client_secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The log entry of the last request.
fn last_logged(sim: &Simulator) -> LoggedRequest {
    sim.requests().pop().expect("a logged request")
}

#[tokio::test]
async fn read_only_posts_change_nothing_and_are_not_writes() {
    let sim = start().await;
    let api = Caller::operator(&sim).await;
    let before = api.state().await;
    for route in READ_ONLY_POSTS {
        let (status, body) = match route {
            "/auth/api/v1/oauth/token" => grant(&api.http, &sim).await,
            "/auth/api/v1/token/login" => {
                let response = api
                    .http
                    .post(format!("{}{route}", api.base))
                    .json(&json!({"token": signed_jwt()}))
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                (status, response.json().await.unwrap_or(Value::Null))
            }
            "/vault/api/v1/search/secrets" => {
                api.call(Method::POST, route, Some(json!({"keywords": "demo"})))
                    .await
            }
            "/role-store/api/v1/roles/resolve" => {
                api.call(Method::POST, route, Some(json!(["app-readers"])))
                    .await
            }
            "/role-store/api/v1/roles/search" => {
                api.call(Method::POST, route, Some(json!({"name": ["app-readers"]})))
                    .await
            }
            other => panic!("{other} is listed as read-only: add a request that shows it"),
        };
        assert!(status.is_success(), "{route}: {status} {body}");
        let logged = last_logged(&sim);
        assert_eq!(logged.route, format!("POST {route}"));
        assert!(!logged.is_write(), "{logged:?}");
        assert_eq!(api.state().await, before, "{route} changed PrivX");
    }
}

#[tokio::test]
async fn successful_writes_change_state_and_refused_ones_do_not() {
    let sim = start().await;
    let api = Caller::operator(&sim).await;
    let secret = |value: &str| {
        json!({"name": "k8s/log/db", "data": {"password": value},
            "read_roles": [{"id": demo::ROLE_PRIVX_OPERATOR}],
            "write_roles": [{"id": demo::ROLE_PRIVX_OPERATOR}]})
    };
    let personal = format!("/vault/api/v1/user/{}/secrets", demo::USER_ALICE);
    let policy = |versions: u32| json!({"name": "log-policy", "max_versions": versions});

    let mut state = api.state().await;
    let mut policy_id = String::new();
    let steps: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            "/vault/api/v1/secrets".into(),
            Some(secret("one")),
        ),
        (
            Method::PUT,
            "/vault/api/v1/secrets/k8s%2Flog%2Fdb".into(),
            Some(secret("two")),
        ),
        (Method::POST, personal.clone(), Some(secret("one"))),
        (Method::DELETE, format!("{personal}/k8s%2Flog%2Fdb"), None),
        (
            Method::POST,
            "/secrets-manager/api/v1/password-policy".into(),
            Some(policy(2)),
        ),
        (Method::PUT, "policy".into(), Some(policy(3))),
        (Method::DELETE, "policy".into(), None),
        (
            Method::DELETE,
            "/vault/api/v1/secrets/k8s%2Flog%2Fdb".into(),
            None,
        ),
    ];
    for (method, path, body) in steps {
        let path = if path == "policy" {
            format!("/secrets-manager/api/v1/password-policy/{policy_id}")
        } else {
            path
        };
        let (status, answer) = api.call(method.clone(), &path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {answer}");
        if let Some(id) = answer.get("id").and_then(Value::as_str) {
            policy_id = id.to_string();
        }
        let logged = last_logged(&sim);
        assert!(logged.is_write(), "{logged:?}");
        let now = api.state().await;
        assert_ne!(now, state, "{method} {path} changed nothing");
        state = now;
    }

    // Refused writes: a taken name (the create-without-read of a new object), a PUT and a
    // DELETE of what does not exist, a body PrivX refuses.
    let (status, _) = api
        .call(
            Method::POST,
            "/vault/api/v1/secrets",
            Some(json!({"name": "k8s/demo/upstream-api-key", "data": {"k": "v"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!last_logged(&sim).is_write());
    for (method, path, body) in [
        (
            Method::PUT,
            "/vault/api/v1/secrets/no-such-secret",
            Some(secret("x")),
        ),
        (Method::DELETE, "/vault/api/v1/secrets/no-such-secret", None),
        (
            Method::POST,
            "/secrets-manager/api/v1/password-policy",
            Some(json!({"name": "no-versions"})),
        ),
    ] {
        let (status, _) = api.call(method.clone(), path, body).await;
        assert!(status.is_client_error(), "{method} {path}: {status}");
        let logged = last_logged(&sim);
        assert!(!logged.is_write(), "{logged:?}");
    }
    assert_eq!(api.state().await, state, "a refused write changed PrivX");
}
