//! The client's token-exchange logins against the simulator over real HTTP: a projected
//! service-account token file (exchange, expiry, rotation), signed JWTs (RS256, EdDSA and the
//! `Ed25519` alg name), refusals with the lock-out cool-down, no credential in any log line,
//! and who the client is (`current_user`, `search_roles`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use privx_client::{
    AuthMethod, EdAlgName, PrivxClient, PrivxConfig, PrivxError, SignedJwt, SignedJwtClaims,
    TokenExchange, TokenFile,
};
use privx_sim::{SeedIssuer, SeedSubject, SimOptions, Simulator, demo, demo_seed};
use serde_json::{Value, json};

const ISSUER: &str = "https://kubernetes.default.svc";
const LEGACY_ISSUER: &str = "https://privx43-signer";
const AUDIENCE: &str = "privx";
const OPERATOR_SA: &str = "system:serviceaccount:privx-operator:privx-operator";
const LOGIN_ROUTE: &str = "POST /auth/api/v1/token/login";

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/jwt")
        .join(name)
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).unwrap()
}

fn issuer(issuer: &str, public: &str, ed_alg_name: Option<&str>) -> SeedIssuer {
    SeedIssuer {
        issuer: issuer.into(),
        audience: AUDIENCE.into(),
        jwks: None,
        public_key_pem: Some(fixture(public)),
        ed_alg_name: ed_alg_name.map(str::to_string),
        subjects: vec![
            SeedSubject {
                subject: OPERATOR_SA.into(),
                api_client: Some(demo::OPERATOR_CLIENT_NAME.into()),
                user: None,
            },
            SeedSubject {
                subject: "privx-operator".into(),
                api_client: Some(demo::OPERATOR_CLIENT_NAME.into()),
                user: None,
            },
            SeedSubject {
                subject: "alice".into(),
                api_client: None,
                user: Some("alice".into()),
            },
        ],
    }
}

async fn start() -> Simulator {
    let mut seed = demo_seed();
    seed.trusted_issuers = vec![
        issuer(ISSUER, "rsa-public.pem", None),
        issuer("https://ed-signer", "ed25519-public.pem", None),
        issuer(LEGACY_ISSUER, "ed25519-public.pem", Some("Ed25519")),
    ];
    Simulator::start(SimOptions {
        seed,
        ..Default::default()
    })
    .await
    .expect("simulator starts")
}

/// A service-account-like token signed by the "cluster" key.
fn sa_token(subject: &str, audience: &str, lifetime: i64) -> String {
    let now = jiff::Timestamp::now().as_second();
    let key = EncodingKey::from_rsa_pem(fixture("rsa-private.pem").as_bytes()).unwrap();
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &json!({"iss": ISSUER, "sub": subject, "aud": [audience], "iat": now, "nbf": now, "exp": now + lifetime}),
        &key,
    )
    .unwrap()
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "privx-identity-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Writes like the kubelet does: a new file renamed over the old one.
fn write_token(path: &Path, token: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, token).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn client_with(sim: &Simulator, login: TokenExchange) -> PrivxClient {
    let mut config = PrivxConfig::with_auth(sim.base_url(), AuthMethod::TokenExchange(login));
    config.timeout = Duration::from_secs(5);
    config.retry_base_delay = Duration::from_millis(10);
    PrivxClient::new(config).expect("client builds")
}

fn logins(sim: &Simulator) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.route == LOGIN_ROUTE)
        .count()
}

#[tokio::test]
async fn projected_token_file_is_exchanged_renewed_and_reread_when_rotated() {
    let sim = start().await;
    let dir = tempdir();
    let path = dir.join("token");
    write_token(&path, &sa_token(OPERATOR_SA, AUDIENCE, 3600));
    let client = client_with(&sim, TokenExchange::new(Arc::new(TokenFile::new(&path))));
    let mut renewals = client.token_renewals();

    let me = client
        .current_user()
        .await
        .unwrap()
        .expect("endpoint exists");
    assert_eq!(me.id, demo::OPERATOR_CLIENT_ID);
    assert_eq!(me.roles[0].name, "privx-operator");
    assert!(renewals.has_changed().unwrap(), "a login is announced");
    renewals.mark_unchanged();
    client.current_user().await.unwrap();
    assert_eq!(logins(&sim), 1, "the PrivX token is cached");

    // Expiry: PrivX drops the token; the next call exchanges again, once.
    sim.expire_all_tokens();
    client.current_user().await.unwrap();
    assert_eq!(logins(&sim), 2);
    assert!(renewals.has_changed().unwrap());

    // Renewal before expiry: at three quarters of a 4 s lifetime the client exchanges anew
    // while the old token still works.
    sim.set_token_lifetime(Duration::from_secs(4));
    sim.expire_all_tokens();
    client.current_user().await.unwrap();
    assert_eq!(logins(&sim), 3);
    sim.clear_requests();
    tokio::time::sleep(Duration::from_millis(3200)).await;
    client.current_user().await.unwrap();
    assert_eq!(logins(&sim), 1, "renewed before expires_in ran out");
    assert!(
        sim.requests().iter().all(|r| r.status != 401),
        "no call was made with an expired token"
    );
    sim.set_token_lifetime(Duration::from_secs(1800));

    // Rotation: the kubelet replaces the file (here: a token of another subject, to see it).
    write_token(&path, &sa_token("alice", AUDIENCE, 3600));
    let me = client.current_user().await.unwrap().unwrap();
    assert_eq!(me.id, demo::USER_ALICE, "the rotated file was read");
    assert_eq!(logins(&sim), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn signed_jwts_rs256_eddsa_and_the_ed25519_name() {
    let sim = start().await;
    let claims = |issuer: &str| SignedJwtClaims {
        issuer: issuer.into(),
        subject: "privx-operator".into(),
        audience: AUDIENCE.into(),
        lifetime: Duration::from_secs(120),
    };
    let cases = [
        ("rsa-private.pem", ISSUER, EdAlgName::EdDsa),
        ("ed25519-private.pem", "https://ed-signer", EdAlgName::EdDsa),
        ("ed25519-private.pem", LEGACY_ISSUER, EdAlgName::Ed25519),
    ];
    for (key, issuer, name) in cases {
        let jwt = SignedJwt::new(fixture_path(key), claims(issuer), name).unwrap();
        // What the client signs: the claims the issue names, `aud` a single string.
        let token = jwt.sign().unwrap();
        let payload: Value = {
            use base64::Engine as _;
            let part = token.split('.').nth(1).unwrap();
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part)
                    .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(payload["aud"], AUDIENCE);
        assert_eq!(payload["sub"], "privx-operator");
        for claim in ["iat", "nbf", "exp"] {
            assert!(payload[claim].is_i64(), "{claim}");
        }
        let client = client_with(&sim, TokenExchange::new(Arc::new(jwt)));
        let me = client.current_user().await.unwrap().unwrap();
        assert_eq!(me.id, demo::OPERATOR_CLIENT_ID, "{key} {issuer}");
    }
    // The standard name against the PrivX 43 issuer is refused, and the other way round.
    for (issuer, name) in [
        (LEGACY_ISSUER, EdAlgName::EdDsa),
        ("https://ed-signer", EdAlgName::Ed25519),
    ] {
        let jwt =
            SignedJwt::new(fixture_path("ed25519-private.pem"), claims(issuer), name).unwrap();
        let client = client_with(&sim, TokenExchange::new(Arc::new(jwt)));
        assert!(matches!(
            client.current_user().await,
            Err(PrivxError::Unauthenticated { .. })
        ));
    }
    // A key file that holds no private key is a configuration error naming the file.
    let dir = tempdir();
    let bad = dir.join("key.pem");
    std::fs::write(&bad, fixture("rsa-public.pem")).unwrap();
    let error = SignedJwt::new(&bad, claims(ISSUER), EdAlgName::EdDsa).unwrap_err();
    assert!(error.to_string().contains("key.pem"), "{error}");
    assert!(!error.to_string().contains("BEGIN"), "{error}");
    sim.shutdown().await;
}

#[tokio::test]
async fn refused_exchange_cools_down_until_the_token_changes() {
    let sim = start().await;
    let dir = tempdir();
    let path = dir.join("token");
    write_token(&path, &sa_token(OPERATOR_SA, "wrong-audience", 3600));
    let client = client_with(&sim, TokenExchange::new(Arc::new(TokenFile::new(&path))));
    let first = client.current_user().await.unwrap_err();
    let message = first.to_string();
    assert!(
        matches!(first, PrivxError::Unauthenticated { .. }),
        "{message}"
    );
    assert!(message.contains("invalid_grant"), "{message}");
    assert!(message.contains("audience"), "{message}");
    assert!(
        message.contains("no new login is tried for 60s"),
        "{message}"
    );
    // Within the cool-down: no new login reaches PrivX (its lock-out counter stays put).
    for _ in 0..5 {
        assert!(matches!(
            client.current_user().await,
            Err(PrivxError::Unauthenticated { .. })
        ));
    }
    assert_eq!(logins(&sim), 1);
    // A rotated token deserves a new try at once.
    write_token(&path, &sa_token(OPERATOR_SA, AUDIENCE, 3600));
    client.current_user().await.unwrap();
    assert_eq!(logins(&sim), 2);
    sim.shutdown().await;
}
