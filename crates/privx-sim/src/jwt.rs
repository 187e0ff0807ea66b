//! Verifying the JWTs that `POST /auth/api/v1/token/login` exchanges (docs/privx-api.md
//! section 1): the issuers of the seed, their keys (JWKS or PEM), signature, `exp`, `nbf`,
//! audience and issuer, and the subject's PrivX principal. Signatures are checked with
//! `jsonwebtoken`; the claim rules are the simulator's own (it checks the client, it does not
//! share its code).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::error::OAuthError;
use crate::seed::{SeedError, SeedIssuer};

/// Seconds of clock skew allowed on `nbf` and `iat` (not on `exp`).
const SKEW: i64 = 30;

pub(crate) struct IssuerRecord {
    pub issuer: String,
    pub audience: String,
    keys: Vec<VerifyKey>,
    accept_ed25519_name: bool,
    /// (subject, principal id)
    pub subjects: Vec<(String, String)>,
}

struct VerifyKey {
    kid: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

impl IssuerRecord {
    /// Builds an issuer from the seed; `principal` maps a subject entry to a principal id.
    pub(crate) fn from_seed(
        seed: &SeedIssuer,
        principal: impl Fn(&crate::seed::SeedSubject) -> Result<String, String>,
    ) -> Result<Self, SeedError> {
        let fail = |message: String| SeedError::Issuer {
            issuer: seed.issuer.clone(),
            message,
        };
        let mut keys = Vec::new();
        if let Some(jwks) = &seed.jwks {
            let set: JwkSet = serde_json::from_value(jwks.clone())
                .map_err(|e| fail(format!("jwks is not a JSON Web Key Set: {e}")))?;
            for jwk in &set.keys {
                let key = DecodingKey::from_jwk(jwk)
                    .map_err(|e| fail(format!("jwks holds an unusable key: {e}")))?;
                let algorithms = algorithms_of(&key);
                keys.push(VerifyKey {
                    kid: jwk.common.key_id.clone(),
                    key,
                    algorithms,
                });
            }
        }
        if let Some(pem) = &seed.public_key_pem {
            let key = DecodingKey::from_ed_pem(pem.as_bytes())
                .or_else(|_| DecodingKey::from_rsa_pem(pem.as_bytes()))
                .or_else(|_| DecodingKey::from_ec_pem(pem.as_bytes()))
                .map_err(|_| fail("publicKeyPem is no RSA, EC or Ed25519 public key".into()))?;
            let algorithms = algorithms_of(&key);
            keys.push(VerifyKey {
                kid: None,
                key,
                algorithms,
            });
        }
        if keys.is_empty() {
            return Err(fail("needs jwks or publicKeyPem".into()));
        }
        let accept_ed25519_name = match seed.ed_alg_name.as_deref() {
            None | Some("EdDSA") => false,
            Some("Ed25519") => true,
            Some(other) => {
                return Err(fail(format!("edAlgName {other:?} is not EdDSA or Ed25519")));
            }
        };
        let subjects = seed
            .subjects
            .iter()
            .map(|s| principal(s).map(|p| (s.subject.clone(), p)).map_err(&fail))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            issuer: seed.issuer.clone(),
            audience: seed.audience.clone(),
            keys,
            accept_ed25519_name,
            subjects,
        })
    }
}

fn algorithms_of(key: &DecodingKey) -> Vec<Algorithm> {
    use jsonwebtoken::AlgorithmFamily;
    match key.family() {
        AlgorithmFamily::Rsa => vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512],
        AlgorithmFamily::Ec => vec![Algorithm::ES256, Algorithm::ES384],
        AlgorithmFamily::Ed => vec![Algorithm::EdDSA],
        AlgorithmFamily::Hmac => Vec::new(),
    }
}

fn refused(description: impl Into<String>) -> OAuthError {
    OAuthError::new(400, "invalid_grant", description)
}

fn part(text: &str, what: &str) -> Result<Value, OAuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| refused(format!("the token's {what} is not base64url")))?;
    serde_json::from_slice(&bytes).map_err(|_| refused(format!("the token's {what} is not JSON")))
}

/// The principal id a valid token logs in as, or the OAuth refusal.
pub(crate) fn verify(
    issuers: &[IssuerRecord],
    token: &str,
    now: i64,
) -> Result<String, OAuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refused("the token is not a JWS compact serialisation"));
    };
    let header_json = part(header, "header")?;
    let claims = part(payload, "payload")?;
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let issuer = issuers
        .iter()
        .find(|i| i.issuer == iss)
        .ok_or_else(|| refused("the token's issuer is not trusted"))?;
    let alg_name = header_json
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let algorithm = match alg_name {
        "EdDSA" if !issuer.accept_ed25519_name => Algorithm::EdDSA,
        "Ed25519" if issuer.accept_ed25519_name => Algorithm::EdDSA,
        "EdDSA" | "Ed25519" => {
            return Err(refused(format!(
                "algorithm {alg_name} is not accepted for this issuer"
            )));
        }
        "none" | "HS256" | "HS384" | "HS512" | "" => {
            return Err(refused("the token's algorithm is not accepted"));
        }
        other => other
            .parse::<Algorithm>()
            .map_err(|_| refused("the token's algorithm is not accepted"))?,
    };
    let kid = header_json.get("kid").and_then(Value::as_str);
    let message = format!("{header}.{payload}");
    let verified = issuer
        .keys
        .iter()
        .filter(|k| k.algorithms.contains(&algorithm))
        .filter(|k| match (kid, &k.kid) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        })
        .any(|k| {
            jsonwebtoken::crypto::verify(signature, message.as_bytes(), &k.key, algorithm)
                .unwrap_or(false)
        });
    if !verified {
        return Err(refused("the token's signature does not verify"));
    }
    let number = |name: &str| claims.get(name).and_then(Value::as_i64);
    let exp = number("exp").ok_or_else(|| refused("the token has no exp"))?;
    if now >= exp {
        return Err(refused("the token has expired"));
    }
    if number("nbf").is_some_and(|nbf| nbf > now + SKEW) {
        return Err(refused("the token is not valid yet (nbf)"));
    }
    if number("iat").is_some_and(|iat| iat > now + SKEW) {
        return Err(refused("the token was issued in the future (iat)"));
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => *aud == issuer.audience,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(&issuer.audience)),
        _ => false,
    };
    if !audience_ok {
        return Err(refused("the token's audience is not accepted"));
    }
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default();
    issuer
        .subjects
        .iter()
        .find(|(s, _)| s == sub)
        .map(|(_, principal)| principal.clone())
        .ok_or_else(|| refused("the token's subject maps to no PrivX user"))
}
