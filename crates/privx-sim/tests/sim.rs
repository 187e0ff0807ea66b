//! The PrivX simulator over real sockets on 127.0.0.1, driven with raw `reqwest` (not the
//! operator's PrivX client, which is tested against the simulator elsewhere).

use std::time::{Duration, Instant};

use privx_sim::{
    Fault, PolicyUnknownFields, PolicyUnsetFields, SeedApiClient, SimCredentials, SimOptions,
    SimPolicyGeneration, Simulator, UnreadableSecret, demo, demo_seed,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().unwrap()
}

async fn start(options: SimOptions) -> Simulator {
    Simulator::start(options).await.expect("simulator starts")
}

async fn start_default() -> Simulator {
    start(SimOptions::default()).await
}

async fn grant(http: &reqwest::Client, sim: &Simulator, c: &SimCredentials) -> reqwest::Response {
    http.post(format!("{}/auth/api/v1/oauth/token", sim.base_url()))
        .basic_auth(&c.oauth_client_id, Some(&c.oauth_client_secret))
        .form(&[
            ("grant_type", "password"),
            ("username", c.api_client_id.as_str()),
            ("password", c.api_client_secret.as_str()),
        ])
        .send()
        .await
        .unwrap()
}

/// A caller with a token, speaking JSON.
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn login(sim: &Simulator, credentials: &SimCredentials) -> Api {
        let http = http();
        let response = grant(&http, sim, credentials).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        Api {
            http,
            base: sim.base_url(),
            token: body["access_token"].as_str().unwrap().to_string(),
        }
    }

    async fn operator(sim: &Simulator) -> Api {
        Api::login(sim, &sim.credentials()).await
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (status, _, body) = self.call_full(method, path, body).await;
        (status, body)
    }

    async fn call_full(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, headers, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call("GET", path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call("POST", path, Some(body)).await
    }
    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call("PUT", path, Some(body)).await
    }
    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call("DELETE", path, None).await
    }
}

fn encode(name: &str) -> String {
    percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn secret_body(name: &str, value: &str) -> Value {
    json!({
        "name": name,
        "data": {"password": value},
        "read_roles": [{"id": demo::ROLE_PRIVX_OPERATOR}],
        "write_roles": [{"id": demo::ROLE_PRIVX_OPERATOR, "name": "ignored"}],
    })
}

fn assert_privx_error(body: &Value, code: &str) {
    assert_eq!(body["error_code"], code, "{body}");
    assert!(body["error_message"].is_string(), "{body}");
    assert!(body["details"].is_array(), "{body}");
}

// ------------------------------------------------------------------------------------------
// Authentication

#[tokio::test]
async fn token_grant_answers_oauth_token() {
    let sim = start_default().await;
    let response = grant(&http(), &sim, &sim.credentials()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 1800);
    assert!(body["access_token"].as_str().unwrap().split('.').count() == 3);
    assert!(body["refresh_token"].is_string());
    assert!(body["scope"].is_string());
    let log = sim.requests();
    assert_eq!(log[0].route, "POST /auth/api/v1/oauth/token");
    assert_eq!(log[0].client_id.as_deref(), Some(demo::OPERATOR_CLIENT_ID));
}

/// Basic auth, form fields, expected status and OAuth error.
type TokenCase<'a> = (
    Option<(&'a str, &'a str)>,
    Vec<(&'a str, &'a str)>,
    u16,
    &'a str,
);

#[tokio::test]
async fn token_errors_are_oauth_shaped() {
    let sim = start_default().await;
    let http = http();
    let url = format!("{}/auth/api/v1/oauth/token", sim.base_url());
    let good = sim.credentials();
    let send = |auth: Option<(&str, &str)>, form: Vec<(&str, &str)>| {
        let mut request = http.post(&url).form(&form);
        if let Some((user, password)) = auth {
            request = request.basic_auth(user, Some(password));
        }
        request.send()
    };
    let oauth = (
        good.oauth_client_id.as_str(),
        good.oauth_client_secret.as_str(),
    );
    let cases: Vec<TokenCase> = vec![
        (
            None,
            vec![
                ("grant_type", "password"),
                ("username", &good.api_client_id),
                ("password", &good.api_client_secret),
            ],
            401,
            "invalid_client",
        ),
        (
            Some((oauth.0, "wrong-oauth-secret")),
            vec![
                ("grant_type", "password"),
                ("username", &good.api_client_id),
                ("password", &good.api_client_secret),
            ],
            401,
            "invalid_client",
        ),
        (
            Some(oauth),
            vec![
                ("grant_type", "password"),
                ("username", &good.api_client_id),
                ("password", "wrong-api-secret"),
            ],
            400,
            "invalid_grant",
        ),
        (
            Some(oauth),
            vec![("grant_type", "client_credentials")],
            400,
            "unsupported_grant_type",
        ),
        (
            Some(oauth),
            vec![("username", &good.api_client_id)],
            400,
            "invalid_request",
        ),
        (
            Some(oauth),
            vec![
                ("grant_type", "password"),
                ("username", &good.api_client_id),
            ],
            400,
            "invalid_request",
        ),
    ];
    for (auth, form, status, error) in cases {
        let response = send(auth, form).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{error}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], error);
        assert!(body["error_description"].is_string());
        assert!(!body.to_string().contains("wrong-api-secret"));
    }
    // Refused grants are logged without a client id.
    assert!(sim.requests().iter().all(|r| r.client_id.is_none()));
}

#[tokio::test]
async fn expired_unknown_and_missing_tokens_get_401() {
    let sim = start_default().await;
    let api = Api::operator(&sim).await;
    assert_eq!(api.get("/vault/api/v1/secrets").await.0, StatusCode::OK);

    sim.expire_all_tokens();
    let (status, body) = api.get("/vault/api/v1/secrets").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_privx_error(&body, "GENERAL_ERROR");

    // A fresh grant works again; a zero lifetime yields tokens that are already expired.
    let api = Api::operator(&sim).await;
    assert_eq!(api.get("/vault/api/v1/secrets").await.0, StatusCode::OK);
    sim.set_token_lifetime(Duration::ZERO);
    let response = grant(&http(), &sim, &sim.credentials()).await;
    assert_eq!(response.json::<Value>().await.unwrap()["expires_in"], 0);
    let short = Api::operator(&sim).await;
    assert_eq!(
        short.get("/vault/api/v1/secrets").await.0,
        StatusCode::UNAUTHORIZED
    );

    let unknown = Api {
        token: "not-a-token".into(),
        ..Api::operator(&sim).await
    };
    assert_eq!(
        unknown.get("/vault/api/v1/secrets").await.0,
        StatusCode::UNAUTHORIZED
    );
    let response = http()
        .get(format!("{}/vault/api/v1/secrets", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn status_reports_the_version_unless_told_not_to() {
    // The default is v35 (what current PrivX speaks); v34 stays selectable.
    let sim = start(SimOptions {
        policy_generation: SimPolicyGeneration::V34,
        ..Default::default()
    })
    .await;
    let http = http();
    for prefix in ["auth", "vault", "secrets-manager", "role-store"] {
        let body: Value = http
            .get(format!("{}/{prefix}/api/v1/status", sim.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["status"], "ok");
        assert!(
            body["app_version"].as_str().unwrap().starts_with("34."),
            "{body}"
        );
        // The vendor's Go SDK reads `version`.
        assert_eq!(body["version"], body["app_version"], "{body}");
    }
    let v35 = start_default().await;
    let body: Value = http
        .get(format!("{}/secrets-manager/api/v1/status", v35.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(body["app_version"].as_str().unwrap().starts_with("35."));
    assert_eq!(body["version"], body["app_version"], "{body}");
    let hidden = start(SimOptions {
        report_version: false,
        ..Default::default()
    })
    .await;
    let body: Value = http
        .get(format!(
            "{}/secrets-manager/api/v1/status",
            hidden.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "ok");
    assert!(body.get("app_version").is_none());
    assert!(body.get("version").is_none());
}

// ------------------------------------------------------------------------------------------
// Vault

#[tokio::test]
async fn shared_secret_crud() {
    let sim = start_default().await;
    let api = Api::operator(&sim).await;
    let (status, body) = api
        .post("/vault/api/v1/secrets", secret_body("app/db", "one"))
        .await;
    assert_eq!(
        (status, &body),
        (StatusCode::CREATED, &json!({"name": "app/db"}))
    );

    let (status, secret) = api
        .get(&format!("/vault/api/v1/secrets/{}", encode("app/db")))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(secret["data"], json!({"password": "one"}));
    assert_eq!(secret["author"], demo::OPERATOR_CLIENT_ID);
    assert_eq!(secret["updated_by"], demo::OPERATOR_CLIENT_ID);
    assert_eq!(secret["read_roles"][0]["id"], demo::ROLE_PRIVX_OPERATOR);
    assert_eq!(secret["write_roles"][0]["name"], "privx-operator");
    let created = secret["created"].as_str().unwrap();
    assert!(created.parse::<jiff::Timestamp>().is_ok(), "{created}");

    // PUT replaces data and roles whole, answers 200 with an empty body.
    let other = Api::login(&sim, &sim.credentials_of("someone-else").unwrap()).await;
    let (status, body) = other
        .put(
            "/vault/api/v1/secrets/app%2Fdb",
            json!({"data": {"token": "two"}, "read_roles": [{"id": demo::ROLE_PRIVX_OPERATOR}],
                   "write_roles": [{"id": demo::ROLE_PRIVX_OPERATOR}, {"id": demo::ROLE_APP_WRITERS}]}),
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, Value::Null));
    let (_, secret) = api.get("/vault/api/v1/secrets/app%2Fdb").await;
    assert_eq!(secret["data"], json!({"token": "two"}));
    assert_eq!(secret["updated_by"], demo::SOMEONE_ELSE_CLIENT_ID);
    assert_eq!(secret["author"], demo::OPERATOR_CLIENT_ID);
    assert_eq!(secret["write_roles"].as_array().unwrap().len(), 2);

    let (status, meta) = api.get("/vault/api/v1/metadata/secrets/app%2Fdb").await;
    assert_eq!(status, StatusCode::OK);
    assert!(meta.get("data").is_none());
    assert_eq!(meta["name"], "app/db");

    let (status, body) = api.delete("/vault/api/v1/secrets/app%2Fdb").await;
    assert_eq!((status, body), (StatusCode::OK, Value::Null));
    let (status, body) = api.get("/vault/api/v1/secrets/app%2Fdb").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_privx_error(&body, "OBJECT_NOT_FOUND");
}

#[tokio::test]
async fn secret_bodies_are_validated() {
    let sim = start_default().await;
    let api = Api::operator(&sim).await;
    let cases = [
        (
            json!({"data": {"a": "b"}}),
            "REQUIRED_VALUE_MISSING",
            "name",
        ),
        (json!({"name": "x"}), "REQUIRED_VALUE_MISSING", "data"),
        (
            json!({"name": "x", "data": "text"}),
            "VALUE_INCORRECT_TYPE",
            "data",
        ),
        (
            json!({"name": "x", "data": {}, "read_roles": [{"id": "no-such-role"}]}),
            "INVALID_REQUEST_DATA",
            "read_roles",
        ),
    ];
    for (body, code, property) in cases {
        let (status, answer) = api.post("/vault/api/v1/secrets", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_privx_error(&answer, code);
        assert_eq!(answer["property"], property);
    }
}

#[tokio::test]
async fn personal_secret_crud() {
    let sim = start_default().await;
    let api = Api::operator(&sim).await;
    let me = demo::OPERATOR_CLIENT_ID;
    let base = format!("/vault/api/v1/user/{me}/secrets");
    let mut body = secret_body("my key", "p1");
    body["owner_id"] = json!(me);
    let (status, headers, answer) = api.call_full("POST", &base, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(answer, json!({"name": "my key"}));
    assert_eq!(headers["location"], format!("{base}/my%20key"));

    let (status, secret) = api.get(&format!("{base}/my%20key")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(secret["owner_id"], me);
    assert_eq!(secret["data"]["password"], "p1");

    let (status, _) = api
        .put(
            &format!("{base}/my%20key"),
            json!({"data": {"password": "p2"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = api.get(&base).await;
    assert_eq!(list["count"], 1);
    assert_eq!(list["items"][0]["data"]["password"], "p2");
    // PUT replaced the roles too (none given).
    assert_eq!(list["items"][0]["read_roles"], json!([]));

    let (status, meta) = api
        .get(&format!(
            "/vault/api/v1/user/{me}/metadata/secrets/my%20key"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(meta.get("data").is_none());

    // Shared and personal names are separate namespaces.
    let (status, _) = api.get("/vault/api/v1/secrets/my%20key").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    assert_eq!(
        api.delete(&format!("{base}/my%20key")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        api.get(&format!("{base}/my%20key")).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, body) = api.get("/vault/api/v1/user/no-such-user/secrets").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["property"], "user_id");
}

#[tokio::test]
async fn personal_secret_of_another_user_is_owner_only() {
    let sim = start_default().await;
    let api = Api::operator(&sim).await;
    let base = format!("/vault/api/v1/user/{}/secrets", demo::USER_ALICE);
    // vault-add may create in alice's vault.
    let body = json!({"name": "alice-key", "data": {"k": "alice-value"}});
    assert_eq!(api.post(&base, body).await.0, StatusCode::CREATED);
    // Visible through vault-manage, but only the owner reads or replaces it.
    let (status, secret) = api.get(&format!("{base}/alice-key")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(secret.get("data").is_none());
    let (status, body) = api
        .put(&format!("{base}/alice-key"), json!({"data": {"k": "x"}}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_privx_error(&body, "PERMISSION_DENIED");
    assert_eq!(
        api.delete(&format!("{base}/alice-key")).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn paging_over_more_than_250_secrets() {
    let sim = start_default().await;
    let api = Api::operator(&sim).await;
    for i in 0..260 {
        let (status, _) = api
            .post(
                "/vault/api/v1/secrets",
                secret_body(&format!("bulk/{i:03}"), "v"),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let total = 264; // plus the four seeded secrets the operator can see
    let mut names = Vec::new();
    let mut offset = 0;
    loop {
        let (status, page) = api
            .get(&format!("/vault/api/v1/secrets?offset={offset}&limit=100"))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["count"], total);
        let items = page["items"].as_array().unwrap();
        names.extend(
            items
                .iter()
                .map(|i| i["name"].as_str().unwrap().to_string()),
        );
        if items.len() < 100 {
            break;
        }
        offset += 100;
    }
    assert_eq!(names.len(), total);
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(unique.len(), total, "pages overlap");
    // Default limit is 100.
    let (_, page) = api.get("/vault/api/v1/secrets").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 100);
    // More than 100 is refused.
    let (status, body) = api.get("/vault/api/v1/secrets?limit=101").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_privx_error(&body, "VALUE_OUT_OF_BOUNDS");
    assert_eq!(body["property"], "limit");
    // Search pages the same way, without data.
    let (status, page) = api
        .post(
            "/vault/api/v1/search/secrets?offset=200&limit=100",
            json!({"keywords": "bulk"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["count"], 260);
    assert_eq!(page["items"].as_array().unwrap().len(), 60);
    assert!(page["items"][0].get("data").is_none());
}

#[tokio::test]
async fn unreadable_secret_comes_back_without_data_or_403() {
    let sim = start_default().await;
    let api = Api::operator(&sim).await;
    let path = format!("/vault/api/v1/secrets/{}", encode(demo::SECRET_LEGACY));
    let (status, secret) = api.get(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(secret["name"], demo::SECRET_LEGACY);
    assert!(secret.get("data").is_none());
    let (_, list) = api.get("/vault/api/v1/secrets").await;
    let legacy = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == demo::SECRET_LEGACY)
        .unwrap();
    assert!(legacy.get("data").is_none());
    // Not a write role holder: may not replace it.
    let (status, body) = api.put(&path, json!({"data": {"password": "x"}})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_privx_error(&body, "PERMISSION_DENIED");
    // The readable seeded secret has its data.
    let (_, upstream) = api
        .get(&format!(
            "/vault/api/v1/secrets/{}",
            encode(demo::SECRET_UPSTREAM)
        ))
        .await;
    assert_eq!(upstream["data"]["api-key"], "demo-upstream-api-key-value");

    let strict = start(SimOptions {
        unreadable_secret: UnreadableSecret::Forbidden,
        ..Default::default()
    })
    .await;
    let api = Api::operator(&strict).await;
    let (status, body) = api.get(&path).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_privx_error(&body, "PERMISSION_DENIED");
}

#[tokio::test]
async fn caller_without_permissions_is_denied() {
    let mut seed = demo_seed();
    seed.api_clients.push(SeedApiClient {
        name: "nobody".into(),
        oauth_client_id: demo::OAUTH_CLIENT_ID.into(),
        oauth_client_secret: "sim-oauth-client-secret".into(),
        client_id: "30000000-0000-4000-8000-0000000000ff".into(),
        client_secret: "nobody-secret".into(),
        roles: vec!["app-readers".into()],
    });
    let sim = start(SimOptions {
        seed,
        ..Default::default()
    })
    .await;
    let api = Api::login(&sim, &sim.credentials_of("nobody").unwrap()).await;
    let (status, body) = api
        .post("/vault/api/v1/secrets", secret_body("x", "y"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_privx_error(&body, "PERMISSION_DENIED");
    let (status, _) = api
        .get(&format!(
            "/vault/api/v1/secrets/{}",
            encode(demo::SECRET_UPSTREAM)
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, list) = api.get("/vault/api/v1/secrets").await;
    assert_eq!(list["count"], 0);
    let (status, _) = api.get("/secrets-manager/api/v1/password-policies").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn duplicate_name_is_400_or_409() {
    for (options, expected) in [
        (SimOptions::default(), StatusCode::BAD_REQUEST),
        (
            SimOptions {
                duplicate_status: 409,
                ..Default::default()
            },
            StatusCode::CONFLICT,
        ),
    ] {
        let sim = start(options).await;
        let api = Api::operator(&sim).await;
        assert_eq!(
            api.post("/vault/api/v1/secrets", secret_body("dup", "1"))
                .await
                .0,
            StatusCode::CREATED
        );
        let (status, body) = api
            .post("/vault/api/v1/secrets", secret_body("dup", "2"))
            .await;
        assert_eq!(status, expected);
        assert_privx_error(&body, "VALUE_DUPLICATE");
        assert_eq!(body["property"], "name");
    }
}

#[tokio::test]
async fn names_with_spaces_slashes_and_non_ascii() {
    let sim = start_default().await;
    let api = Api::operator(&sim).await;
    for name in ["with spaces here", "a/b/c", "pääsy/ключ 🔑", "100% sure?&#"] {
        let (status, body) = api
            .post("/vault/api/v1/secrets", secret_body(name, "v"))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{name}");
        assert_eq!(body["name"], name);
        let (status, secret) = api
            .get(&format!("/vault/api/v1/secrets/{}", encode(name)))
            .await;
        assert_eq!(status, StatusCode::OK, "{name}");
        assert_eq!(secret["name"], name);
        let (status, _) = api
            .put(
                &format!("/vault/api/v1/secrets/{}", encode(name)),
                secret_body(name, "w"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{name}");
    }
    let (_, list) = api.get("/vault/api/v1/secrets").await;
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"pääsy/ключ 🔑"));
    assert!(names.contains(&"a/b/c"));
    // The log keeps the concrete path encoded and the template generic.
    let last_put = sim
        .requests()
        .into_iter()
        .rfind(|r| r.method == "PUT")
        .unwrap();
    assert_eq!(last_put.route, "PUT /vault/api/v1/secrets/{name}");
    assert_eq!(
        last_put.path,
        format!("/vault/api/v1/secrets/{}", encode("100% sure?&#"))
    );
}

// ------------------------------------------------------------------------------------------
// Password policies

fn v34_policy(name: &str) -> Value {
    json!({"name": name, "rotation_interval": "720h0m0s", "max_versions": 3,
           "retry_interval": "5m0s", "delete_version_after": "48h0m0s", "fallback_to_previous": false,
           "password_min_length": 12, "password_max_length": 24})
}

fn v35_policy(name: &str) -> Value {
    json!({"name": name, "rotation_interval": "P30D", "max_versions": 3, "retry_interval": "PT5M",
           "max_concurrent_checkouts": 2, "max_checkout_duration": "PT1H",
           "rotate_on_release": true, "verify_after_rotation": true})
}

const POLICIES: &str = "/secrets-manager/api/v1/password-policies";
const POLICY: &str = "/secrets-manager/api/v1/password-policy";

#[tokio::test]
async fn policies_v34_lifecycle() {
    let sim = start(SimOptions {
        policy_generation: SimPolicyGeneration::V34,
        ..Default::default()
    })
    .await;
    let api = Api::operator(&sim).await;
    let (status, list) = api.get(POLICIES).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["count"], 1);
    assert_eq!(list["items"][0]["id"], demo::POLICY_DEFAULT_ROTATION);
    assert_eq!(list["items"][0]["rotation_interval"], "720h0m0s");

    let (status, created) = api.post(POLICY, v34_policy("db")).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36);
    let (status, policy) = api.get(&format!("{POLICY}/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(policy["name"], "db");
    assert_eq!(policy["delete_version_after"], "48h0m0s");
    assert_eq!(policy["created_by"], demo::OPERATOR_CLIENT_ID);

    let mut changed = v34_policy("db");
    changed["max_versions"] = json!(7);
    let (status, policy) = api.put(&format!("{POLICY}/{id}"), changed).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(policy["max_versions"], 7);
    assert_eq!(policy["id"], id.as_str());

    // Wrong generation: ISO duration, v35 field.
    let mut iso = v34_policy("iso");
    iso["retry_interval"] = json!("PT5M");
    let (status, body) = api.post(POLICY, iso).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_privx_error(&body, "VALUE_INCORRECT_FORMAT");
    assert_eq!(body["property"], "retry_interval");
    let mut newer = v34_policy("newer");
    newer["max_concurrent_checkouts"] = json!(1);
    let (status, body) = api.post(POLICY, newer).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_privx_error(&body, "INVALID_REQUEST_DATA");
    assert_eq!(body["property"], "max_concurrent_checkouts");
    // Required fields, duplicate names.
    let (status, body) = api.post(POLICY, json!({"name": "no-versions"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        (body["error_code"].as_str(), body["property"].as_str()),
        (Some("REQUIRED_VALUE_MISSING"), Some("max_versions"))
    );
    let (status, body) = api.post(POLICY, v34_policy("db")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_privx_error(&body, "VALUE_DUPLICATE");

    // In use: DELETE refused until unmarked.
    assert!(sim.set_policy_in_use(&id, true));
    let (status, body) = api.delete(&format!("{POLICY}/{id}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_privx_error(&body, "INVALID_REQUEST_DATA");
    let response = http()
        .delete(format!("{}/_sim/policies/{id}/in-use", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    assert_eq!(
        api.delete(&format!("{POLICY}/{id}")).await.0,
        StatusCode::OK
    );
    let (status, body) = api.get(&format!("{POLICY}/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_privx_error(&body, "OBJECT_NOT_FOUND");
}

#[tokio::test]
async fn policies_v35_and_options() {
    let mut seed = demo_seed();
    seed.policies[0].in_use = true;
    let sim = start(SimOptions {
        seed,
        policy_generation: SimPolicyGeneration::V35,
        policy_put_empty_body: true,
        ..Default::default()
    })
    .await;
    let api = Api::operator(&sim).await;
    // The seed policy was translated to v35.
    let (_, seeded) = api
        .get(&format!("{POLICY}/{}", demo::POLICY_DEFAULT_ROTATION))
        .await;
    assert_eq!(seeded["rotation_interval"], "P30D");
    assert_eq!(seeded["retry_interval"], "PT5M");
    assert!(seeded.get("fallback_to_previous").is_none());
    // Seeded in use.
    let (status, _) = api
        .delete(&format!("{POLICY}/{}", demo::POLICY_DEFAULT_ROTATION))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, created) = api.post(POLICY, v35_policy("checkout")).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["id"].as_str().unwrap();
    let (status, body) = api
        .put(&format!("{POLICY}/{id}"), v35_policy("checkout"))
        .await;
    assert_eq!((status, body), (StatusCode::OK, Value::Null));
    let (_, policy) = api.get(&format!("{POLICY}/{id}")).await;
    assert_eq!(policy["max_checkout_duration"], "PT1H");

    let (status, body) = api.post(POLICY, v34_policy("old")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The first v34-only problem found: a Go duration or a v34 field, each named.
    let property = body["property"].as_str().unwrap();
    assert!(
        [
            "rotation_interval",
            "retry_interval",
            "delete_version_after",
            "fallback_to_previous"
        ]
        .contains(&property),
        "{body}"
    );
    let mut go = v35_policy("go");
    go["max_checkout_duration"] = json!("1h0m0s");
    let (_, body) = api.post(POLICY, go).await;
    assert_privx_error(&body, "VALUE_INCORRECT_FORMAT");
    assert_eq!(body["property"], "max_checkout_duration");
    let mut old_field = v35_policy("old-field");
    old_field["fallback_to_previous"] = json!(true);
    let (_, body) = api.post(POLICY, old_field).await;
    assert_privx_error(&body, "INVALID_REQUEST_DATA");
    assert_eq!(body["property"], "fallback_to_previous");
}

/// Every field of a v35 policy as the vendor's Go SDK models it (besides the server-set ones).
const V35_FIELDS: [&str; 15] = [
    "name",
    "rotation_interval",
    "password_min_length",
    "password_max_length",
    "use_special_characters",
    "use_lower_case",
    "use_upper_case",
    "use_numbers",
    "max_versions",
    "number_of_retries",
    "retry_interval",
    "max_concurrent_checkouts",
    "max_checkout_duration",
    "rotate_on_release",
    "verify_after_rotation",
];

/// A policy body as the vendor's Go SDK sends a new one: every v35 field, zero values for
/// what the caller left unset (`""` for durations).
fn sdk_policy(name: &str) -> Value {
    json!({"name": name, "rotation_interval": "", "password_min_length": 0,
           "password_max_length": 0, "use_special_characters": false, "use_lower_case": false,
           "use_upper_case": false, "use_numbers": false, "max_versions": 2,
           "number_of_retries": 0, "retry_interval": "", "max_concurrent_checkouts": 0,
           "max_checkout_duration": "", "rotate_on_release": false,
           "verify_after_rotation": false})
}

fn without_update_stamps(mut policy: Value) -> Value {
    let map = policy.as_object_mut().unwrap();
    map.remove("updated");
    map.remove("updated_by");
    policy
}

#[tokio::test]
async fn sdk_read_then_write_of_an_unchanged_policy_succeeds() {
    let sim = start_default().await;
    let api = Api::operator(&sim).await;
    let (status, created) = api
        .post(POLICY, json!({"name": "minimal", "max_versions": 1}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let minimal = created["id"].as_str().unwrap().to_string();
    let (status, created) = api.post(POLICY, sdk_policy("from-the-sdk")).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let from_sdk = created["id"].as_str().unwrap().to_string();

    // Every answer carries every field of the generation; unset ones with zero values.
    let (_, list) = api.get(POLICIES).await;
    for item in list["items"].as_array().unwrap() {
        for field in V35_FIELDS {
            assert!(item.get(field).is_some(), "{field} missing from {item}");
        }
        assert!(item.get("fallback_to_previous").is_none(), "{item}");
    }
    let (_, answer) = api.get(&format!("{POLICY}/{minimal}")).await;
    assert_eq!(answer["max_checkout_duration"], "");
    assert_eq!(answer["rotation_interval"], "");
    assert_eq!(answer["max_concurrent_checkouts"], 0);
    assert_eq!(answer["rotate_on_release"], false);

    // The SDK's read-then-write: each policy put back exactly as read is accepted and
    // changes nothing but the update stamps.
    for id in [demo::POLICY_DEFAULT_ROTATION, &minimal, &from_sdk] {
        let path = format!("{POLICY}/{id}");
        let (status, before) = api.get(&path).await;
        assert_eq!(status, StatusCode::OK);
        let (status, answer) = api.put(&path, before.clone()).await;
        assert_eq!(status, StatusCode::OK, "{id}: {answer}");
        let (_, after) = api.get(&path).await;
        assert_eq!(
            without_update_stamps(after),
            without_update_stamps(before),
            "{id}"
        );
    }
    // Set durations stay as written.
    let (_, seeded) = api
        .get(&format!("{POLICY}/{}", demo::POLICY_DEFAULT_ROTATION))
        .await;
    assert_eq!(seeded["rotation_interval"], "P30D");
    // "" is "not set" for durations only.
    let mut bad = sdk_policy("bad");
    bad["max_concurrent_checkouts"] = json!("");
    let (status, body) = api.post(POLICY, bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_privx_error(&body, "VALUE_INCORRECT_TYPE");
    assert_eq!(body["property"], "max_concurrent_checkouts");
}

#[tokio::test]
async fn unset_policy_fields_can_be_left_out_of_answers() {
    let sim = start(SimOptions {
        policy_unset_fields: PolicyUnsetFields::Omit,
        ..Default::default()
    })
    .await;
    let api = Api::operator(&sim).await;
    let (status, created) = api.post(POLICY, sdk_policy("sdk")).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (_, policy) = api
        .get(&format!("{POLICY}/{}", created["id"].as_str().unwrap()))
        .await;
    // The empty durations were "not set"; the zero numbers and flags were values.
    assert!(policy.get("max_checkout_duration").is_none(), "{policy}");
    assert!(policy.get("rotation_interval").is_none(), "{policy}");
    assert_eq!(policy["max_concurrent_checkouts"], 0);
    assert_eq!(policy["rotate_on_release"], false);
}

#[tokio::test]
async fn unknown_policy_fields_are_refused_or_ignored() {
    // The SDK's body for a v34 server: v34 durations, but every v35 field too.
    let mut sdk_to_v34 = sdk_policy("sdk");
    sdk_to_v34["rotation_interval"] = json!("720h0m0s");
    sdk_to_v34["colour"] = json!("blue");
    let v34_only = ["delete_version_after", "fallback_to_previous"];
    let v35_only = [
        "max_concurrent_checkouts",
        "max_checkout_duration",
        "rotate_on_release",
        "verify_after_rotation",
    ];

    // Default: refused, naming the field.
    let sim = start(SimOptions {
        policy_generation: SimPolicyGeneration::V34,
        ..Default::default()
    })
    .await;
    let api = Api::operator(&sim).await;
    let (status, body) = api.post(POLICY, sdk_to_v34.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_privx_error(&body, "INVALID_REQUEST_DATA");
    let property = body["property"].as_str().unwrap();
    assert!(
        v35_only.contains(&property) || property == "colour",
        "{body}"
    );

    // Ignored: accepted, not stored, not answered; a read-then-write works too.
    let sim = start(SimOptions {
        policy_generation: SimPolicyGeneration::V34,
        policy_unknown_fields: PolicyUnknownFields::Ignore,
        ..Default::default()
    })
    .await;
    let api = Api::operator(&sim).await;
    let (status, created) = api.post(POLICY, sdk_to_v34.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let path = format!("{POLICY}/{}", created["id"].as_str().unwrap());
    let (_, policy) = api.get(&path).await;
    assert_eq!(policy["rotation_interval"], "720h0m0s");
    for field in v35_only.iter().chain(&["colour"]) {
        assert!(policy.get(*field).is_none(), "{field} in {policy}");
    }
    for field in v34_only {
        assert!(policy.get(field).is_some(), "{field} missing from {policy}");
    }
    let (status, body) = api.put(&path, sdk_to_v34.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Ignoring names loosens nothing else: a v35 duration is still refused by a v34 server.
    let mut iso = sdk_to_v34.clone();
    iso["rotation_interval"] = json!("P30D");
    let (status, body) = api.put(&path, iso).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["property"], "rotation_interval");

    // Either way round: a v35 server ignores v34 fields.
    let sim = start(SimOptions {
        policy_unknown_fields: PolicyUnknownFields::Ignore,
        ..Default::default()
    })
    .await;
    let api = Api::operator(&sim).await;
    let mut old = v35_policy("old");
    old["fallback_to_previous"] = json!(true);
    let (status, created) = api.post(POLICY, old).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (_, policy) = api
        .get(&format!("{POLICY}/{}", created["id"].as_str().unwrap()))
        .await;
    assert!(policy.get("fallback_to_previous").is_none(), "{policy}");
    assert_eq!(policy["max_checkout_duration"], "PT1H");
}

// ------------------------------------------------------------------------------------------
// Roles

#[tokio::test]
async fn roles_resolve_list_and_get() {
    let sim = start_default().await;
    let api = Api::operator(&sim).await;
    let (status, body) = api
        .post(
            "/role-store/api/v1/roles/resolve",
            json!(["db-admins", "no-such-role", "privx-operator"]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["count"], 2);
    let ids: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&demo::ROLE_DB_ADMINS) && ids.contains(&demo::ROLE_PRIVX_OPERATOR));
    let (_, page) = api.get("/role-store/api/v1/roles?offset=1&limit=2").await;
    assert_eq!(page["count"], 5);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let (status, role) = api
        .get(&format!(
            "/role-store/api/v1/roles/{}",
            demo::ROLE_APP_READERS
        ))
        .await;
    assert_eq!(
        (status, role["name"].as_str()),
        (StatusCode::OK, Some("app-readers"))
    );
    let (status, body) = api.get("/role-store/api/v1/roles/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_privx_error(&body, "OBJECT_NOT_FOUND");
    let (status, _) = api
        .post("/role-store/api/v1/roles/resolve", json!({"names": []}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

// ------------------------------------------------------------------------------------------
// Faults, log, limits

#[tokio::test]
async fn fault_status_at_rate_one_and_clearing() {
    let sim = start(SimOptions {
        faults: vec![Fault::status("GET /vault/api/v1/secrets", 503).with_retry_after(7)],
        ..Default::default()
    })
    .await;
    let api = Api::operator(&sim).await;
    let (status, headers, body) = api.call_full("GET", "/vault/api/v1/secrets", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "7");
    assert!(
        body.as_str().unwrap().contains("503"),
        "proxy-style body: {body}"
    );
    // Other methods and routes are untouched.
    assert_eq!(
        api.post("/vault/api/v1/secrets", secret_body("f", "v"))
            .await
            .0,
        StatusCode::CREATED
    );

    sim.set_faults(vec![Fault::status("/vault/*", 500).with_code("MAX_LOAD")]);
    let (status, body) = api.get("/vault/api/v1/secrets/f").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_privx_error(&body, "MAX_LOAD");
    // The faulted request did not reach the handler, and is logged with its code.
    let last = sim.requests().pop().unwrap();
    assert_eq!(
        (last.status, last.error_code.as_deref()),
        (500, Some("MAX_LOAD"))
    );

    // Clearing through the admin endpoint.
    let admin = http();
    let faults: Value = admin
        .get(format!("{}/_sim/faults", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults[0]["route"], "/vault/*");
    let response = admin
        .delete(format!("{}/_sim/faults", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    assert_eq!(api.get("/vault/api/v1/secrets/f").await.0, StatusCode::OK);

    // Rate 0 never fires.
    sim.set_faults(vec![Fault::status("*", 500).with_rate(0.0)]);
    for _ in 0..5 {
        assert_eq!(api.get("/vault/api/v1/secrets/f").await.0, StatusCode::OK);
    }
}

#[tokio::test]
async fn fault_for_next_n_requests_via_admin_endpoint() {
    let sim = start_default().await;
    let api = Api::operator(&sim).await;
    let response = http()
        .put(format!("{}/_sim/faults", sim.base_url()))
        .json(
            &json!([{"method": "PUT", "route": "/vault/api/v1/secrets/{name}", "status": 400,
                       "errorCode": "TOO_MANY_CONNECTIONS", "next": 2}]),
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let path = format!("/vault/api/v1/secrets/{}", encode(demo::SECRET_UPSTREAM));
    let body = json!({"data": {"api-key": "new"}, "read_roles": [{"id": demo::ROLE_PRIVX_OPERATOR}],
                      "write_roles": [{"id": demo::ROLE_PRIVX_OPERATOR}]});
    for _ in 0..2 {
        let (status, answer) = api.put(&path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_privx_error(&answer, "TOO_MANY_CONNECTIONS");
    }
    assert_eq!(api.put(&path, body).await.0, StatusCode::OK);
    assert_eq!(sim.faults()[0].next, Some(0));
    // A bad fault is refused.
    let response = http()
        .post(format!("{}/_sim/faults", sim.base_url()))
        .json(&json!({"route": "/x", "rate": 3.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn fault_latency_delays_but_answers() {
    let sim = start_default().await;
    let api = Api::operator(&sim).await;
    sim.set_faults(vec![Fault::latency(
        "/vault/api/v1/secrets",
        Duration::from_millis(300),
    )]);
    let started = Instant::now();
    assert_eq!(api.get("/vault/api/v1/secrets").await.0, StatusCode::OK);
    // A lower bound only: the injected sleep guarantees it.
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn fault_drops_the_connection() {
    let sim = start(SimOptions {
        faults: vec![Fault::drop_connection("GET /vault/api/v1/secrets").for_next(1)],
        ..Default::default()
    })
    .await;
    let api = Api::operator(&sim).await;
    let result = api
        .http
        .get(format!("{}/vault/api/v1/secrets", sim.base_url()))
        .bearer_auth(&api.token)
        .send()
        .await;
    let error = result.expect_err("no answer on a dropped connection");
    assert!(!error.is_status());
    let last = sim.requests().pop().unwrap();
    assert_eq!(
        (last.status, last.route.as_str()),
        (0, "GET /vault/api/v1/secrets")
    );
    // The next request is answered.
    assert_eq!(api.get("/vault/api/v1/secrets").await.0, StatusCode::OK);
}

#[tokio::test]
async fn token_endpoint_down() {
    let sim = start(SimOptions {
        faults: vec![Fault::token_endpoint_down()],
        ..Default::default()
    })
    .await;
    let response = grant(&http(), &sim, &sim.credentials()).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    sim.set_faults(vec![]);
    assert_eq!(
        grant(&http(), &sim, &sim.credentials()).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn request_log_and_counters_never_hold_secret_data() {
    let sim = start_default().await;
    let api = Api::operator(&sim).await;
    api.post(
        "/vault/api/v1/secrets",
        secret_body("logged", "very-secret-value"),
    )
    .await;
    api.get("/vault/api/v1/secrets/logged").await;
    api.get("/vault/api/v1/secrets/missing").await;
    let admin = http();
    let log_text = admin
        .get(format!("{}/_sim/requests", sim.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let log: Value = serde_json::from_str(&log_text).unwrap();
    let entries = log.as_array().unwrap();
    assert_eq!(entries.len(), 4, "{log}");
    assert_eq!(entries[1]["route"], "POST /vault/api/v1/secrets");
    assert_eq!(entries[1]["status"], 201);
    assert_eq!(entries[1]["clientId"], demo::OPERATOR_CLIENT_ID);
    assert_eq!(entries[3]["path"], "/vault/api/v1/secrets/missing");
    assert_eq!(entries[3]["route"], "GET /vault/api/v1/secrets/{name}");
    assert_eq!(entries[3]["errorCode"], "OBJECT_NOT_FOUND");
    let credentials = sim.credentials();
    for secret in [
        "very-secret-value",
        credentials.api_client_secret.as_str(),
        credentials.oauth_client_secret.as_str(),
        api.token.as_str(),
    ] {
        assert!(!log_text.contains(secret), "log leaks a secret");
        assert!(!format!("{:?}", sim.requests()).contains(secret));
    }
    assert!(!format!("{credentials:?}").contains(&credentials.api_client_secret));
    let counters: Value = admin
        .get(format!("{}/_sim/counters", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters["GET /vault/api/v1/secrets/{name}"]["count"], 2);
    assert_eq!(
        counters["GET /vault/api/v1/secrets/{name}"]["byStatus"]["404"],
        1
    );
    assert_eq!(sim.counters()["POST /vault/api/v1/secrets"].count, 1);
    // Admin calls are not logged; clearing empties the log.
    let response = admin
        .delete(format!("{}/_sim/requests", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn body_over_one_mib_is_refused_with_413() {
    let sim = start_default().await;
    let api = Api::operator(&sim).await;
    let big = "x".repeat(privx_sim::MAX_BODY_BYTES + 10);
    let (status, body) = api
        .post(
            "/vault/api/v1/secrets",
            json!({"name": "big", "data": {"blob": big}}),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_privx_error(&body, "BAD_REQUEST");
    assert_eq!(
        api.get("/vault/api/v1/secrets/big").await.0,
        StatusCode::NOT_FOUND
    );
    // Just under the limit is fine.
    let fits = "y".repeat(privx_sim::MAX_BODY_BYTES - 200);
    let (status, _) = api
        .post(
            "/vault/api/v1/secrets",
            json!({"name": "fits", "data": {"blob": fits}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn tls_certificate_names_the_extra_host_names_and_no_others() {
    let sim = start(SimOptions {
        tls: true,
        tls_names: vec!["privx.sim.test".to_string()],
        ..Default::default()
    })
    .await;
    let pem = sim.ca_pem().expect("a certificate when serving TLS");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = sim.local_addr().port();
    // Both names lead to the simulator; only the one given is in its certificate.
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes()).unwrap()])
        .resolve("privx.sim.test", sim.local_addr())
        .resolve("other.sim.test", sim.local_addr())
        .build()
        .unwrap();
    let named = client
        .get(format!("https://privx.sim.test:{port}/vault/api/v1/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(named.status(), StatusCode::OK);
    let other = client
        .get(format!("https://other.sim.test:{port}/vault/api/v1/status"))
        .send()
        .await;
    assert!(
        other.is_err(),
        "a name outside the certificate was accepted"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn tls_with_generated_certificate() {
    let sim = start(SimOptions {
        tls: true,
        ..Default::default()
    })
    .await;
    assert!(sim.base_url().starts_with("https://127.0.0.1:"));
    let pem = sim.ca_pem().expect("a certificate when serving TLS");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let trusting = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let response = trusting
        .get(format!("{}/vault/api/v1/status", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let token = grant(&trusting, &sim, &sim.credentials()).await;
    assert_eq!(token.status(), StatusCode::OK);
    // A client that does not trust the certificate fails.
    assert!(
        http()
            .get(format!("{}/vault/api/v1/status", sim.base_url()))
            .send()
            .await
            .is_err()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_listening() {
    let sim = start_default().await;
    let url = format!("{}/auth/api/v1/status", sim.base_url());
    sim.shutdown().await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    assert!(client.get(url).send().await.is_err());
}

/// Kills the simulator process even when an assertion fails first.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn cli_prints_its_json_line() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_privx-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--policy-generation",
            "v35",
            "--fault",
            "GET /vault/api/v1/status=503",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _child = KillOnDrop(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let settings: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let base = settings["PRIVX_API_BASE_URL"].as_str().unwrap().to_string();
    assert!(base.starts_with("http://127.0.0.1:"));
    assert_eq!(settings["PRIVX_API_OAUTH_CLIENT_ID"], demo::OAUTH_CLIENT_ID);
    assert_eq!(settings["PRIVX_API_CLIENT_ID"], demo::OPERATOR_CLIENT_ID);
    assert!(settings["PRIVX_API_CLIENT_SECRET"].is_string());
    assert!(settings["PRIVX_API_OAUTH_CLIENT_SECRET"].is_string());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (status, fault_status) = runtime.block_on(async {
        let http = http();
        let status: Value = http
            .get(format!("{base}/secrets-manager/api/v1/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let faulted = http
            .get(format!("{base}/vault/api/v1/status"))
            .send()
            .await
            .unwrap()
            .status();
        (status, faulted)
    });
    assert!(status["app_version"].as_str().unwrap().starts_with("35."));
    assert_eq!(fault_status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn admin_token_lifetime_and_expiry() {
    let sim = start_default().await;
    let admin = http();
    let base = sim.base_url();
    let api = Api::operator(&sim).await;
    let lifetime: Value = admin
        .get(format!("{base}/_sim/token-lifetime"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(lifetime["seconds"], 1800);
    let response = admin
        .put(format!("{base}/_sim/token-lifetime"))
        .json(&json!({"seconds": 60}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let granted: Value = grant(&admin, &sim, &sim.credentials())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(granted["expires_in"], 60);
    let response = admin
        .post(format!("{base}/_sim/tokens/expire"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    assert_eq!(
        api.get("/vault/api/v1/secrets").await.0,
        StatusCode::UNAUTHORIZED
    );
    let response = admin
        .put(format!(
            "{base}/_sim/policies/{}/in-use",
            demo::POLICY_DEFAULT_ROTATION
        ))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let api = Api::operator(&sim).await;
    let (status, _) = api
        .delete(&format!("{POLICY}/{}", demo::POLICY_DEFAULT_ROTATION))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let response = admin
        .put(format!("{base}/_sim/policies/no-such-id/in-use"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[test]
fn cli_with_tls_writes_the_certificate() {
    use std::io::BufRead;
    let ca_file = std::env::temp_dir().join(format!("sim-ca-{}.pem", std::process::id()));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_privx-sim"))
        .args(["--listen", "127.0.0.1:0", "--tls", "--ca-out"])
        .arg(&ca_file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _child = KillOnDrop(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let settings: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert_eq!(settings["PRIVX_CA_FILE"], ca_file.display().to_string());
    let base = settings["PRIVX_API_BASE_URL"].as_str().unwrap().to_string();
    assert!(base.starts_with("https://127.0.0.1:"));
    let pem = std::fs::read(&ca_file).unwrap();
    let _ = std::fs::remove_file(&ca_file);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let status = tokio::runtime::Runtime::new().unwrap().block_on(async {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .build()
            .unwrap()
            .get(format!("{base}/vault/api/v1/status"))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, StatusCode::OK);
}

/// `after_handling`: the write takes effect, and its answer is lost (dropped connection or an
/// error status) — a create whose outcome the client cannot know.
#[tokio::test]
async fn fault_after_handling_applies_the_write_and_loses_the_answer() {
    let sim = start(SimOptions {
        faults: vec![
            Fault::drop_connection("POST /vault/api/v1/secrets")
                .after_handling()
                .for_next(1),
        ],
        ..Default::default()
    })
    .await;
    let api = Api::operator(&sim).await;
    let result = api
        .http
        .post(format!("{}/vault/api/v1/secrets", sim.base_url()))
        .bearer_auth(&api.token)
        .json(&secret_body("lost/answer", "v1"))
        .send()
        .await;
    assert!(result.is_err(), "no answer: {result:?}");
    let (status, stored) = api.get("/vault/api/v1/secrets/lost%2Fanswer").await;
    assert_eq!(status, StatusCode::OK, "the create took effect: {stored}");

    // The same with a 503 answered after the write.
    sim.set_faults(vec![
        Fault::status("POST /vault/api/v1/secrets", 503)
            .after_handling()
            .for_next(1),
    ]);
    let (status, _) = api
        .post("/vault/api/v1/secrets", secret_body("lost/503", "v1"))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        api.get("/vault/api/v1/secrets/lost%2F503").await.0,
        StatusCode::OK
    );
    // Disarmed after one hit: the next create is answered normally.
    let (status, _) = api
        .post("/vault/api/v1/secrets", secret_body("lost/none", "v1"))
        .await;
    assert!(status.is_success(), "{status}");
}
