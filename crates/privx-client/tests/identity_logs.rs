//! No credential reaches a log line: token-exchange logins (a service-account token file, a
//! rotation to a refused token, a signed JWT) run with every line captured at TRACE level.
//! Its own test binary: the capturing subscriber is thread-local and tracing caches callsite
//! interest process-wide, so no other test may run beside it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use privx_client::{
    AuthMethod, EdAlgName, PrivxClient, PrivxConfig, SignedJwt, SignedJwtClaims, TokenExchange,
    TokenFile,
};
use privx_sim::{SeedIssuer, SeedSubject, SimOptions, Simulator, demo, demo_seed};
use serde_json::json;

const ISSUER: &str = "https://kubernetes.default.svc";
const AUDIENCE: &str = "privx";
const OPERATOR_SA: &str = "system:serviceaccount:privx-operator:privx-operator";

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/jwt")
        .join(name)
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).unwrap()
}

async fn start() -> Simulator {
    let mut seed = demo_seed();
    seed.trusted_issuers = vec![SeedIssuer {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        jwks: None,
        public_key_pem: Some(fixture("rsa-public.pem")),
        ed_alg_name: None,
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
        ],
    }];
    Simulator::start(SimOptions {
        seed,
        ..Default::default()
    })
    .await
    .expect("simulator starts")
}

fn sa_token(subject: &str, audience: &str) -> String {
    let now = jiff::Timestamp::now().as_second();
    let key = EncodingKey::from_rsa_pem(fixture("rsa-private.pem").as_bytes()).unwrap();
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &json!({"iss": ISSUER, "sub": subject, "aud": [audience], "iat": now, "nbf": now, "exp": now + 3600}),
        &key,
    )
    .unwrap()
}

fn write_token(path: &Path, token: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, token).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn client_with(sim: &Simulator, login: TokenExchange) -> PrivxClient {
    let mut config = PrivxConfig::with_auth(sim.base_url(), AuthMethod::TokenExchange(login));
    config.timeout = Duration::from_secs(5);
    PrivxClient::new(config).expect("client builds")
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_credential_in_any_log_line() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // A callsite another thread reached first may have cached "never enabled": ask again.
    tracing::callsite::rebuild_interest_cache();

    let sim = start().await;
    let dir = std::env::temp_dir().join(format!("privx-identity-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("token");
    let good = sa_token(OPERATOR_SA, AUDIENCE);
    write_token(&path, &good);
    let client = client_with(&sim, TokenExchange::new(Arc::new(TokenFile::new(&path))));
    client.current_user().await.unwrap();
    sim.expire_all_tokens();
    client.current_user().await.unwrap();
    let bad = sa_token(OPERATOR_SA, "wrong");
    write_token(&path, &bad);
    let refused = client.current_user().await.unwrap_err();
    let jwt = SignedJwt::new(
        fixture_path("rsa-private.pem"),
        SignedJwtClaims {
            issuer: ISSUER.into(),
            subject: "privx-operator".into(),
            audience: AUDIENCE.into(),
            lifetime: Duration::from_secs(60),
        },
        EdAlgName::EdDsa,
    )
    .unwrap();
    let signed = client_with(&sim, TokenExchange::new(Arc::new(jwt)));
    signed.current_user().await.unwrap();
    sim.shutdown().await;
    drop(_guard);

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("exchanging a JWT"),
        "the capture works: {logs}"
    );
    assert!(
        logs.contains(&privx_client::auth::fingerprint(&good)),
        "the fingerprint is logged"
    );
    let key_body: String = fixture("rsa-private.pem")
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    for (what, value) in [
        ("subject token", good.as_str()),
        ("refused token", bad.as_str()),
        ("token signature", good.rsplit('.').next().unwrap()),
        ("private key", key_body.as_str()),
    ] {
        assert!(!logs.contains(value), "the {what} reached the logs");
        assert!(
            !refused.to_string().contains(value),
            "the {what} is in an error"
        );
        assert!(
            !format!("{refused:?}").contains(value),
            "the {what} is in an error"
        );
    }
    // PrivX's access tokens neither.
    for request in ["access_token\":", "Bearer ey"] {
        assert!(!logs.contains(request), "{request}");
    }
    std::io::stderr().flush().ok();
}
