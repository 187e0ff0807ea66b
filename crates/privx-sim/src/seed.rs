//! The simulator's initial content (API clients, roles, users, secrets, password policies), as
//! read from YAML, and the demo seed that examples and tests rely on (documented in
//! `docs/simulator.md`; `docs/sim-seed.yaml` is the same seed as a file).

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Everything the simulator holds when it starts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seed {
    /// API clients; the first one is what [`crate::Simulator::credentials`] returns.
    #[serde(default)]
    pub api_clients: Vec<SeedApiClient>,
    #[serde(default)]
    pub roles: Vec<SeedRole>,
    #[serde(default)]
    pub users: Vec<SeedUser>,
    #[serde(default)]
    pub secrets: Vec<SeedSecret>,
    #[serde(default)]
    pub policies: Vec<SeedPolicy>,
    /// Issuers whose JWTs `POST /auth/api/v1/token/login` accepts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_issuers: Vec<SeedIssuer>,
}

/// An issuer PrivX trusts for token exchange: its `iss`, the audience its tokens must carry,
/// its keys (a JWKS, as the Kubernetes API server publishes at `/openid/v1/jwks`, or one PEM
/// public key), and which PrivX principal each token subject logs in as.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedIssuer {
    pub issuer: String,
    pub audience: String,
    /// A JSON Web Key Set (`{"keys": [...]}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    /// One public key in PEM (RSA or Ed25519).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_pem: Option<String>,
    /// The `alg` name accepted for Ed25519 signatures: `EdDSA` (standard, default) or
    /// `Ed25519` (what PrivX 43 expected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ed_alg_name: Option<String>,
    pub subjects: Vec<SeedSubject>,
}

/// A token subject (`sub`) and the PrivX principal it logs in as: an API client (by name) or
/// a user (by username); exactly one of the two.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedSubject {
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// An API client: its four credentials and the roles (by name) granted to it. Its client id is
/// also its user id (the `author` of what it writes, the owner of its personal vault).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedApiClient {
    pub name: String,
    pub oauth_client_id: String,
    pub oauth_client_secret: String,
    pub client_id: String,
    pub client_secret: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

impl fmt::Debug for SeedApiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeedApiClient")
            .field("name", &self.name)
            .field("oauth_client_id", &self.oauth_client_id)
            .field("oauth_client_secret", &"<redacted>")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("roles", &self.roles)
            .finish()
    }
}

/// A role and the permissions it grants (`vault-add`, `vault-manage`, `privx-admin`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedRole {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// A human user (owner of personal secrets).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedUser {
    pub id: String,
    pub username: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// A secret present at start: shared, or personal when `owner_id` is set. Roles by name.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedSecret {
    pub name: String,
    #[serde(default)]
    pub owner_id: Option<String>,
    #[serde(default)]
    pub data: Map<String, Value>,
    #[serde(default)]
    pub read_roles: Vec<String>,
    #[serde(default)]
    pub write_roles: Vec<String>,
}

impl fmt::Debug for SeedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeedSecret")
            .field("name", &self.name)
            .field("owner_id", &self.owner_id)
            .field("data_keys", &self.data.keys().collect::<Vec<_>>())
            .field("read_roles", &self.read_roles)
            .field("write_roles", &self.write_roles)
            .finish()
    }
}

/// A password policy present at start: the wire fields (`name`, `rotation_interval`, ... as
/// PrivX spells them), an optional fixed `id`, and `inUse` (then DELETE refuses it). Durations
/// may be written in either generation's spelling; the simulator translates seed policies to the
/// generation it serves and drops the other generation's fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedPolicy {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub in_use: bool,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// A seed file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("reading seed file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing seed file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("seed: {what} refers to unknown role {role:?}")]
    UnknownRole { what: String, role: String },
    #[error("seed: {what} is given twice")]
    Duplicate { what: String },
    #[error("seed: secret {secret:?} belongs to unknown user {owner:?}")]
    UnknownOwner { secret: String, owner: String },
    #[error("seed: trusted issuer {issuer:?}: {message}")]
    Issuer { issuer: String, message: String },
    #[error("seed: password policy {policy:?}: {message} (field {field})")]
    Policy {
        policy: String,
        field: String,
        message: String,
    },
}

/// Reads a seed from a YAML file.
pub fn load_seed(path: &Path) -> anyhow::Result<Seed> {
    let text = std::fs::read_to_string(path).map_err(|source| SeedError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let seed = serde_saphyr::from_str::<Seed>(&text).map_err(|e| SeedError::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    Ok(seed)
}

/// Fixed ids of the demo seed (see `docs/simulator.md`).
pub mod demo {
    pub const OAUTH_CLIENT_ID: &str = "privx-external";
    pub const OPERATOR_CLIENT_NAME: &str = "privx-operator";
    pub const OPERATOR_CLIENT_ID: &str = "30000000-0000-4000-8000-000000000001";
    pub const SOMEONE_ELSE_CLIENT_NAME: &str = "someone-else";
    pub const SOMEONE_ELSE_CLIENT_ID: &str = "30000000-0000-4000-8000-000000000002";
    pub const ROLE_PRIVX_OPERATOR: &str = "10000000-0000-4000-8000-000000000001";
    pub const ROLE_APP_READERS: &str = "10000000-0000-4000-8000-000000000002";
    pub const ROLE_APP_WRITERS: &str = "10000000-0000-4000-8000-000000000003";
    pub const ROLE_DB_ADMINS: &str = "10000000-0000-4000-8000-000000000004";
    pub const ROLE_HUMAN_ADMINS: &str = "10000000-0000-4000-8000-000000000005";
    pub const USER_ALICE: &str = "20000000-0000-4000-8000-000000000001";
    pub const USER_BOB: &str = "20000000-0000-4000-8000-000000000002";
    pub const POLICY_DEFAULT_ROTATION: &str = "40000000-0000-4000-8000-000000000001";
    pub const SECRET_LEGACY: &str = "legacy/db-password";
    pub const SECRET_UPSTREAM: &str = "k8s/demo/upstream-api-key";
    /// Read by examples/vaultsecret-database-url.yaml (fields username, password).
    pub const SECRET_ORDERS_DB: &str = "k8s/demo/orders-db";
    /// Read by examples/vaultsecret-dockerconfigjson.yaml (fields username, password).
    pub const SECRET_REGISTRY: &str = "k8s/demo/registry-credentials";
}

/// The demo seed: two API clients (`privx-operator` first, `someone-else`), five roles, users
/// alice and bob, four shared secrets (three of them read by the examples) and the password policy `default-rotation` (written in v34
/// spelling; translated when the simulator serves v35).
pub fn demo_seed() -> Seed {
    use demo::*;
    let admin_permissions = || {
        vec![
            "vault-add".to_string(),
            "vault-manage".to_string(),
            "privx-admin".to_string(),
        ]
    };
    let role = |id: &str, name: &str, permissions: Vec<String>| SeedRole {
        id: id.into(),
        name: name.into(),
        permissions,
    };
    let policy_fields = json!({
        "name": "default-rotation",
        "rotation_interval": "720h0m0s",
        "password_min_length": 16,
        "password_max_length": 32,
        "use_special_characters": true,
        "use_lower_case": true,
        "use_upper_case": true,
        "use_numbers": true,
        "delete_version_after": "2160h0m0s",
        "max_versions": 5,
        "number_of_retries": 3,
        "retry_interval": "5m0s",
        "fallback_to_previous": true,
    });
    Seed {
        api_clients: vec![
            SeedApiClient {
                name: OPERATOR_CLIENT_NAME.into(),
                oauth_client_id: OAUTH_CLIENT_ID.into(),
                oauth_client_secret: "sim-oauth-client-secret".into(),
                client_id: OPERATOR_CLIENT_ID.into(),
                client_secret: "sim-operator-api-client-secret".into(),
                roles: vec!["privx-operator".into()],
            },
            SeedApiClient {
                name: SOMEONE_ELSE_CLIENT_NAME.into(),
                oauth_client_id: OAUTH_CLIENT_ID.into(),
                oauth_client_secret: "sim-oauth-client-secret".into(),
                client_id: SOMEONE_ELSE_CLIENT_ID.into(),
                client_secret: "sim-someone-else-api-client-secret".into(),
                roles: vec!["human-admins".into(), "privx-operator".into()],
            },
        ],
        roles: vec![
            role(ROLE_PRIVX_OPERATOR, "privx-operator", admin_permissions()),
            role(ROLE_APP_READERS, "app-readers", vec![]),
            role(ROLE_APP_WRITERS, "app-writers", vec![]),
            role(ROLE_DB_ADMINS, "db-admins", vec![]),
            role(ROLE_HUMAN_ADMINS, "human-admins", admin_permissions()),
        ],
        users: vec![
            SeedUser {
                id: USER_ALICE.into(),
                username: "alice".into(),
                roles: vec!["app-readers".into(), "db-admins".into()],
            },
            SeedUser {
                id: USER_BOB.into(),
                username: "bob".into(),
                roles: vec!["app-writers".into()],
            },
        ],
        secrets: vec![
            SeedSecret {
                name: SECRET_LEGACY.into(),
                owner_id: None,
                data: json_object(json!({"password": "legacy-db-password-value"})),
                read_roles: vec!["db-admins".into()],
                write_roles: vec!["db-admins".into()],
            },
            SeedSecret {
                name: SECRET_UPSTREAM.into(),
                owner_id: None,
                data: json_object(json!({"api-key": "demo-upstream-api-key-value"})),
                read_roles: vec!["privx-operator".into()],
                write_roles: vec!["privx-operator".into()],
            },
            SeedSecret {
                name: SECRET_ORDERS_DB.into(),
                owner_id: None,
                data: json_object(
                    json!({"username": "orders", "password": "demo-orders-db-password"}),
                ),
                read_roles: vec!["privx-operator".into()],
                write_roles: vec!["privx-operator".into()],
            },
            SeedSecret {
                name: SECRET_REGISTRY.into(),
                owner_id: None,
                data: json_object(json!({"username": "robot", "password": "demo-registry-token"})),
                read_roles: vec!["privx-operator".into()],
                write_roles: vec!["privx-operator".into()],
            },
        ],
        policies: vec![SeedPolicy {
            id: Some(POLICY_DEFAULT_ROTATION.into()),
            in_use: false,
            fields: json_object(policy_fields),
        }],
        trusted_issuers: Vec::new(),
    }
}

fn json_object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_seed_file_is_the_demo_seed() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/sim-seed.yaml");
        let seed = load_seed(&path).expect("docs/sim-seed.yaml loads");
        assert_eq!(seed, demo_seed());
    }

    #[test]
    fn debug_of_seed_redacts_secrets() {
        let text = format!("{:?}", demo_seed());
        assert!(text.contains("privx-operator"));
        for secret in [
            "sim-oauth-client-secret",
            "sim-operator-api-client-secret",
            "legacy-db-password-value",
            "demo-upstream-api-key-value",
        ] {
            assert!(!text.contains(secret), "Debug leaks {secret}");
        }
    }

    #[test]
    fn unknown_seed_field_is_refused_with_its_name() {
        let dir = std::env::temp_dir().join(format!("sim-seed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.yaml");
        std::fs::write(&path, "apiClients: []\nrolez: []\n").unwrap();
        let error = load_seed(&path).unwrap_err().to_string();
        assert!(error.contains("rolez"), "{error}");
    }
}
