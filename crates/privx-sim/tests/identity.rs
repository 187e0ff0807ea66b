//! The simulator's identity endpoints over real HTTP: token exchange (`token/login`) with the
//! seed's trusted issuers (RS256 and EdDSA, PEM and JWKS, the `Ed25519` alg name), every
//! refusal in the OAuth shape, `users/current`, `roles/search`, `schemas`, and 404/405 rules.

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use privx_sim::{SeedIssuer, SeedSubject, SimOptions, Simulator, demo, demo_seed};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "privx";

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/jwt")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn subjects() -> Vec<SeedSubject> {
    vec![
        SeedSubject {
            subject: "system:serviceaccount:privx-operator:privx-operator".into(),
            api_client: Some(demo::OPERATOR_CLIENT_NAME.into()),
            user: None,
        },
        SeedSubject {
            subject: "alice-subject".into(),
            api_client: None,
            user: Some("alice".into()),
        },
    ]
}

fn issuer_with_pem(issuer: &str, public: &str, ed_alg_name: Option<&str>) -> SeedIssuer {
    SeedIssuer {
        issuer: issuer.into(),
        audience: AUDIENCE.into(),
        jwks: None,
        public_key_pem: Some(String::from_utf8(fixture(public)).unwrap()),
        ed_alg_name: ed_alg_name.map(str::to_string),
        subjects: subjects(),
    }
}

async fn start(issuers: Vec<SeedIssuer>) -> Simulator {
    let mut seed = demo_seed();
    seed.trusted_issuers = issuers;
    Simulator::start(SimOptions {
        seed,
        ..Default::default()
    })
    .await
    .expect("simulator starts")
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn claims(iss: &str, sub: &str, aud: Value, lifetime: i64) -> Value {
    let now = now();
    json!({"iss": iss, "sub": sub, "aud": aud, "iat": now, "nbf": now, "exp": now + lifetime})
}

fn sign(private: &str, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let pem = fixture(private);
    let key = match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(&pem).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

async fn login(sim: &Simulator, body: Value) -> (StatusCode, Value) {
    let response = http()
        .post(format!("{}/auth/api/v1/token/login", sim.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(sim: &Simulator, token: &str, path: &str) -> (StatusCode, Value) {
    let response = http()
        .get(format!("{}{path}", sim.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

const OPERATOR_SUBJECT: &str = "system:serviceaccount:privx-operator:privx-operator";

#[tokio::test]
async fn rs256_token_from_a_pem_issuer_logs_in_as_the_mapped_api_client() {
    let sim = start(vec![issuer_with_pem(ISSUER, "rsa-public.pem", None)]).await;
    let jwt = sign(
        "rsa-private.pem",
        Algorithm::RS256,
        None,
        &claims(ISSUER, OPERATOR_SUBJECT, json!(AUDIENCE), 300),
    );
    let (status, body) = login(&sim, json!({"token": jwt, "client_id": "privx-external"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "bearer");
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    let token = body["access_token"].as_str().unwrap();
    let (status, me) = get(&sim, token, "/role-store/api/v1/users/current").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["id"], demo::OPERATOR_CLIENT_ID);
    assert_eq!(me["roles"][0]["name"], "privx-operator");
    // The exchanged token behaves like any other: it expires through the admin endpoint.
    sim.expire_all_tokens();
    let (status, _) = get(&sim, token, "/role-store/api/v1/users/current").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let logged = sim
        .requests()
        .into_iter()
        .find(|r| r.route == "POST /auth/api/v1/token/login")
        .unwrap();
    assert_eq!(logged.client_id.as_deref(), Some(demo::OPERATOR_CLIENT_ID));
    sim.shutdown().await;
}

#[tokio::test]
async fn rs256_token_against_a_jwks_with_key_ids_and_array_audience() {
    let public = jsonwebtoken::DecodingKey::from_rsa_pem(&fixture("rsa-public.pem")).unwrap();
    let mut jwk = Jwk::from_decoding_key(&public, Some(Algorithm::RS256)).unwrap();
    jwk.common.key_id = Some("key-1".into());
    let other_public = {
        // A second key under another kid: the right one must be picked by kid.
        let private = EncodingKey::from_rsa_pem(&fixture("other-rsa-private.pem")).unwrap();
        let mut jwk = Jwk::from_encoding_key(&private, Algorithm::RS256).unwrap();
        jwk.common.key_id = Some("key-0".into());
        jwk
    };
    let jwks = JwkSet {
        keys: vec![other_public, jwk],
    };
    let sim = start(vec![SeedIssuer {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        jwks: Some(serde_json::to_value(&jwks).unwrap()),
        public_key_pem: None,
        ed_alg_name: None,
        subjects: subjects(),
    }])
    .await;
    // Kubernetes writes `aud` as an array.
    let jwt = sign(
        "rsa-private.pem",
        Algorithm::RS256,
        Some("key-1"),
        &claims(ISSUER, "alice-subject", json!(["other", AUDIENCE]), 600),
    );
    let (status, body) = login(&sim, json!({"token": jwt})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, me) = get(
        &sim,
        body["access_token"].as_str().unwrap(),
        "/role-store/api/v1/users/current",
    )
    .await;
    assert_eq!(me["id"], demo::USER_ALICE);
    assert_eq!(me["username"], "alice");
    let names: Vec<&str> = me["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["app-readers", "db-admins"]);
    // Signed by the key of kid key-0 but naming key-1: refused.
    let wrong = sign(
        "other-rsa-private.pem",
        Algorithm::RS256,
        Some("key-1"),
        &claims(ISSUER, "alice-subject", json!(AUDIENCE), 600),
    );
    let (status, body) = login(&sim, json!({"token": wrong})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    sim.shutdown().await;
}

#[tokio::test]
async fn eddsa_tokens_and_the_ed25519_alg_name_option() {
    let standard = "https://standard.test";
    let legacy = "https://privx43.test";
    let sim = start(vec![
        issuer_with_pem(standard, "ed25519-public.pem", None),
        issuer_with_pem(legacy, "ed25519-public.pem", Some("Ed25519")),
    ])
    .await;
    let jwt = sign(
        "ed25519-private.pem",
        Algorithm::EdDSA,
        None,
        &claims(standard, OPERATOR_SUBJECT, json!(AUDIENCE), 300),
    );
    let (status, body) = login(&sim, json!({"token": jwt})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The legacy issuer accepts only the `Ed25519` name.
    let jwt = sign(
        "ed25519-private.pem",
        Algorithm::EdDSA,
        None,
        &claims(legacy, OPERATOR_SUBJECT, json!(AUDIENCE), 300),
    );
    let (status, body) = login(&sim, json!({"token": jwt})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("EdDSA")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn every_bad_token_is_refused_in_the_oauth_shape() {
    let sim = start(vec![issuer_with_pem(ISSUER, "rsa-public.pem", None)]).await;
    let good = |c: Value| sign("rsa-private.pem", Algorithm::RS256, None, &c);
    let now = now();
    let cases: Vec<(&str, Value)> = vec![
        ("no token", json!({})),
        ("token not a string", json!({"token": 5})),
        ("not a JWT", json!({"token": "abc"})),
        (
            "wrong audience",
            json!({"token": good(claims(ISSUER, OPERATOR_SUBJECT, json!("someone-else"), 300))}),
        ),
        (
            "untrusted issuer",
            json!({"token": good(claims("https://evil.test", OPERATOR_SUBJECT, json!(AUDIENCE), 300))}),
        ),
        (
            "expired",
            json!({"token": good(json!({"iss": ISSUER, "sub": OPERATOR_SUBJECT, "aud": AUDIENCE, "iat": now - 600, "exp": now - 1}))}),
        ),
        (
            "not yet valid",
            json!({"token": good(json!({"iss": ISSUER, "sub": OPERATOR_SUBJECT, "aud": AUDIENCE, "nbf": now + 600, "exp": now + 900}))}),
        ),
        (
            "no exp",
            json!({"token": good(json!({"iss": ISSUER, "sub": OPERATOR_SUBJECT, "aud": AUDIENCE}))}),
        ),
        (
            "unknown subject",
            json!({"token": good(claims(ISSUER, "system:serviceaccount:x:y", json!(AUDIENCE), 300))}),
        ),
        (
            "signed by another key",
            json!({"token": sign("other-rsa-private.pem", Algorithm::RS256, None, &claims(ISSUER, OPERATOR_SUBJECT, json!(AUDIENCE), 300))}),
        ),
        (
            "client_id not a string",
            json!({"token": good(claims(ISSUER, OPERATOR_SUBJECT, json!(AUDIENCE), 300)), "client_id": 1}),
        ),
    ];
    for (case, body) in cases {
        let (status, answer) = login(&sim, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(
            error == "invalid_grant" || error == "invalid_request",
            "{case}: {answer}"
        );
        assert!(answer["error_description"].is_string(), "{case}");
        assert!(answer.get("error_code").is_none(), "{case}: OAuth shape");
    }
    // alg "none" with the signature stripped.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let unsigned = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(claims(ISSUER, OPERATOR_SUBJECT, json!(AUDIENCE), 300).to_string())
    );
    let (status, answer) = login(&sim, json!({"token": unsigned})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"], "invalid_grant");
    // Form bodies are the password grant's, not this endpoint's.
    let response = http()
        .post(format!("{}/auth/api/v1/token/login", sim.base_url()))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    sim.shutdown().await;
}

async fn operator_token(sim: &Simulator) -> String {
    let c = sim.credentials();
    let body: Value = http()
        .post(format!("{}/auth/api/v1/oauth/token", sim.base_url()))
        .basic_auth(&c.oauth_client_id, Some(&c.oauth_client_secret))
        .form(&[
            ("grant_type", "password"),
            ("username", c.api_client_id.as_str()),
            ("password", c.api_client_secret.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn current_user_of_a_password_grant_client() {
    let sim = start(vec![]).await;
    let token = operator_token(&sim).await;
    let (status, me) = get(&sim, &token, "/role-store/api/v1/users/current").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["id"], demo::OPERATOR_CLIENT_ID);
    assert_eq!(me["username"], demo::OPERATOR_CLIENT_NAME);
    assert_eq!(
        me["roles"],
        json!([{"id": demo::ROLE_PRIVX_OPERATOR, "name": "privx-operator", "explicit": true}])
    );
    let (status, _) = get(&sim, "no-such-token", "/role-store/api/v1/users/current").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    sim.shutdown().await;
}

#[tokio::test]
async fn roles_search_by_name_with_paging() {
    let sim = start(vec![]).await;
    let token = operator_token(&sim).await;
    let http = http();
    let search = |query: &'static str, body: Value| {
        let request = http
            .post(format!(
                "{}/role-store/api/v1/roles/search{query}",
                sim.base_url()
            ))
            .bearer_auth(&token)
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = search(
        "",
        json!({"name": ["app-readers", "privx-operator", "nope"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["count"], 2);
    assert_eq!(body["items"][0]["name"], "app-readers");
    assert_eq!(body["items"][1]["name"], "privx-operator");
    assert_eq!(
        body["items"][1]["permissions"],
        json!(["vault-add", "vault-manage", "privx-admin"])
    );
    let (status, body) = search("?offset=1&limit=2&sortdir=DESC", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["count"], 5);
    let names: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["human-admins", "db-admins"]);
    let (status, body) = search("", json!({"name": "privx-operator"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["property"], "name");
    sim.shutdown().await;
}

#[tokio::test]
async fn schemas_and_the_404_405_rules() {
    let sim = start(vec![]).await;
    let token = operator_token(&sim).await;
    let (status, schemas) = get(&sim, &token, "/vault/api/v1/schemas").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = schemas
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"password"), "{schemas}");
    assert!(schemas[0]["schema"]["properties"].is_object());
    let http = http();
    // A known path with an unknown method: 405.
    for (method, path) in [
        (reqwest::Method::DELETE, "/role-store/api/v1/users/current"),
        (reqwest::Method::GET, "/role-store/api/v1/roles/search"),
        (reqwest::Method::GET, "/auth/api/v1/token/login"),
        (reqwest::Method::POST, "/vault/api/v1/schemas"),
    ] {
        let response = http
            .request(method.clone(), format!("{}{path}", sim.base_url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
    }
    // An unknown path under a known prefix: 404 OBJECT_NOT_FOUND.
    for path in [
        "/role-store/api/v1/users/current/extra",
        "/vault/api/v1/no-such-thing",
        "/auth/api/v1/token/other",
    ] {
        let response = http
            .get(format!("{}{path}", sim.base_url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error_code"], "OBJECT_NOT_FOUND", "{path}");
    }
    sim.shutdown().await;
}

#[test]
fn seed_issuers_are_checked() {
    let mut seed = demo_seed();
    seed.trusted_issuers = vec![SeedIssuer {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        jwks: None,
        public_key_pem: None,
        ed_alg_name: None,
        subjects: vec![],
    }];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let error = runtime
        .block_on(Simulator::start(SimOptions {
            seed: seed.clone(),
            ..Default::default()
        }))
        .err()
        .map(|e| format!("{e:#}"))
        .expect("an issuer without keys is refused");
    assert!(error.contains("jwks or publicKeyPem"), "{error}");
    seed.trusted_issuers[0].public_key_pem =
        Some(String::from_utf8(fixture("rsa-public.pem")).unwrap());
    seed.trusted_issuers[0].subjects = vec![SeedSubject {
        subject: "s".into(),
        api_client: Some("no-such-client".into()),
        user: None,
    }];
    let error = runtime
        .block_on(Simulator::start(SimOptions {
            seed,
            ..Default::default()
        }))
        .err()
        .map(|e| format!("{e:#}"))
        .expect("an unknown API client is refused");
    assert!(error.contains("no-such-client"), "{error}");
}
