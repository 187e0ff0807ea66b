//! TokenRequest (`POST /api/v1/namespaces/NS/serviceaccounts/NAME/token`) as kube-apiserver
//! answers it: for an existing ServiceAccount, a `TokenRequest` whose `status.token` is a JWT
//! of that account (`sub` = `system:serviceaccount:NS:NAME`, the requested audiences, the
//! requested lifetime, at least 10 minutes), signed RS256 by the test key in
//! `tests/fixtures/jwt/rsa-private.pem` under [`TOKEN_ISSUER`]; 404 `serviceaccounts "NAME"
//! not found` for a missing one, as the real server. A simulator that trusts
//! [`TOKEN_ISSUER`] with [`token_public_key_pem`] accepts these tokens.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::path::Target;
use super::store::{Answer, State, bad_request, not_found};

/// The `iss` of the tokens (a kind cluster's default issuer).
pub const TOKEN_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The key id in the tokens' header.
pub const TOKEN_KEY_ID: &str = "fake-kube-test-key";

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The public key the tokens verify with (PEM).
pub fn token_public_key_pem() -> String {
    fixture("rsa-public.pem")
}

/// Whether `target` is a TokenRequest.
pub fn is_token_request(method: &str, target: &Target) -> bool {
    method == "POST"
        && target.prefix == "api/v1"
        && target.resource == "serviceaccounts"
        && target.name.is_some()
        && target.subresource.as_deref() == Some("token")
}

/// Answers a TokenRequest for the ServiceAccount `target` names.
pub fn token_request(state: &State, target: &Target, body: Option<&Value>) -> Answer {
    let account = Target {
        subresource: None,
        ..target.clone()
    };
    if state.get_object(&account.object_path()).is_none() {
        return not_found(&account);
    }
    let spec = body.map(|b| b["spec"].clone()).unwrap_or_default();
    let audiences = match &spec["audiences"] {
        Value::Null => json!(["https://kubernetes.default.svc.cluster.local"]),
        Value::Array(a) if !a.is_empty() => json!(a),
        _ => return bad_request("spec.audiences must be a non-empty list"),
    };
    let lifetime = spec["expirationSeconds"].as_i64().unwrap_or(3600);
    if lifetime < 600 {
        return bad_request(
            "spec.expirationSeconds: Invalid value: may not specify a duration less than 10 minutes",
        );
    }
    let namespace = target.namespace.as_deref().unwrap_or_default();
    let name = target.name.as_deref().unwrap_or_default();
    let now = jiff::Timestamp::now().as_second();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(TOKEN_KEY_ID.into());
    let key = EncodingKey::from_rsa_pem(fixture("rsa-private.pem").as_bytes()).expect("test key");
    let token = jsonwebtoken::encode(
        &header,
        &json!({"iss": TOKEN_ISSUER, "sub": format!("system:serviceaccount:{namespace}:{name}"),
                "aud": audiences, "iat": now, "nbf": now, "exp": now + lifetime,
                "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name}}}),
        &key,
    )
    .expect("signing a test token");
    let expires = jiff::Timestamp::from_second(now + lifetime).expect("a timestamp");
    (
        201,
        json!({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"name": name, "namespace": namespace},
               "spec": {"audiences": audiences, "expirationSeconds": lifetime},
               "status": {"token": token, "expirationTimestamp": expires.to_string()}}),
    )
}
