//! PrivX paths (docs/privx-api.md sections 1–4): route templates (metric labels) and concrete paths with
//! every name and ID percent-encoded as one path segment (`/` becomes `%2F`, as PrivX's Go SDK
//! does).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::{PrivxError, SecretLocation};

/// Everything but RFC 3986's unreserved characters is encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One path segment, encoded. Empty, `.` and `..` cannot be addressed in a URL path (URL
/// parsers resolve them, encoded or not), so they are refused.
pub(crate) fn segment(kind: &str, value: &str) -> Result<String, PrivxError> {
    if value.is_empty() || value == "." || value == ".." {
        return Err(PrivxError::InvalidRequest {
            operation: format!("address {kind} {value:?}"),
            code: "INVALID_NAME".into(),
            property: Some(kind.into()),
            message: format!("a {kind} cannot be empty, \".\" or \"..\""),
        });
    }
    Ok(utf8_percent_encode(value, SEGMENT).to_string())
}

pub(crate) const TOKEN: &str = "POST /auth/api/v1/oauth/token";
pub(crate) const TOKEN_PATH: &str = "/auth/api/v1/oauth/token";

/// The route templates of one secret location.
pub(crate) struct SecretRoutes {
    pub list: &'static str,
    pub create: &'static str,
    pub get: &'static str,
    pub update: &'static str,
    pub delete: &'static str,
    pub metadata: &'static str,
}

const SHARED: SecretRoutes = SecretRoutes {
    list: "GET /vault/api/v1/secrets",
    create: "POST /vault/api/v1/secrets",
    get: "GET /vault/api/v1/secrets/{name}",
    update: "PUT /vault/api/v1/secrets/{name}",
    delete: "DELETE /vault/api/v1/secrets/{name}",
    metadata: "GET /vault/api/v1/metadata/secrets/{name}",
};

const PERSONAL: SecretRoutes = SecretRoutes {
    list: "GET /vault/api/v1/user/{user_id}/secrets",
    create: "POST /vault/api/v1/user/{user_id}/secrets",
    get: "GET /vault/api/v1/user/{user_id}/secrets/{name}",
    update: "PUT /vault/api/v1/user/{user_id}/secrets/{name}",
    delete: "DELETE /vault/api/v1/user/{user_id}/secrets/{name}",
    metadata: "GET /vault/api/v1/user/{user_id}/metadata/secrets/{name}",
};

pub(crate) fn secret_routes(at: &SecretLocation) -> &'static SecretRoutes {
    match at {
        SecretLocation::Shared => &SHARED,
        SecretLocation::Personal { .. } => &PERSONAL,
    }
}

/// `/vault/api/v1/secrets` or `/vault/api/v1/user/{user_id}/secrets`.
pub(crate) fn secrets_path(at: &SecretLocation) -> Result<String, PrivxError> {
    Ok(match at {
        SecretLocation::Shared => "/vault/api/v1/secrets".to_string(),
        SecretLocation::Personal { user_id } => {
            format!(
                "/vault/api/v1/user/{}/secrets",
                segment("user id", user_id)?
            )
        }
    })
}

pub(crate) fn secret_path(at: &SecretLocation, name: &str) -> Result<String, PrivxError> {
    Ok(format!(
        "{}/{}",
        secrets_path(at)?,
        segment("secret name", name)?
    ))
}

pub(crate) fn secret_metadata_path(at: &SecretLocation, name: &str) -> Result<String, PrivxError> {
    let name = segment("secret name", name)?;
    Ok(match at {
        SecretLocation::Shared => format!("/vault/api/v1/metadata/secrets/{name}"),
        SecretLocation::Personal { user_id } => format!(
            "/vault/api/v1/user/{}/metadata/secrets/{name}",
            segment("user id", user_id)?
        ),
    })
}

/// How a secret is named in messages.
pub(crate) fn describe_secret(at: &SecretLocation, name: &str) -> String {
    match at {
        SecretLocation::Shared => format!("shared secret {name:?}"),
        SecretLocation::Personal { user_id } => {
            format!("personal secret {name:?} of user {user_id:?}")
        }
    }
}

pub(crate) const ROLES_RESOLVE: &str = "POST /role-store/api/v1/roles/resolve";
pub(crate) const ROLES_RESOLVE_PATH: &str = "/role-store/api/v1/roles/resolve";

pub(crate) const POLICIES_LIST: &str = "GET /secrets-manager/api/v1/password-policies";
pub(crate) const POLICIES_PATH: &str = "/secrets-manager/api/v1/password-policies";
pub(crate) const POLICY_CREATE: &str = "POST /secrets-manager/api/v1/password-policy";
pub(crate) const POLICY_PATH: &str = "/secrets-manager/api/v1/password-policy";
pub(crate) const POLICY_GET: &str = "GET /secrets-manager/api/v1/password-policy/{id}";
pub(crate) const POLICY_UPDATE: &str = "PUT /secrets-manager/api/v1/password-policy/{id}";
pub(crate) const POLICY_DELETE: &str = "DELETE /secrets-manager/api/v1/password-policy/{id}";
pub(crate) const SECRETS_MANAGER_STATUS: &str = "GET /secrets-manager/api/v1/status";
pub(crate) const SECRETS_MANAGER_STATUS_PATH: &str = "/secrets-manager/api/v1/status";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_one_encoded_segment() {
        assert_eq!(segment("n", "a b/c").unwrap(), "a%20b%2Fc");
        assert_eq!(
            segment("n", "prod/db-1.pass_x~").unwrap(),
            "prod%2Fdb-1.pass_x~"
        );
        assert_eq!(segment("n", "sala-ä€").unwrap(), "sala-%C3%A4%E2%82%AC");
        assert_eq!(segment("n", "%?#").unwrap(), "%25%3F%23");
    }

    #[test]
    fn unaddressable_names_are_refused() {
        for bad in ["", ".", ".."] {
            assert!(matches!(
                segment("secret name", bad),
                Err(PrivxError::InvalidRequest { .. })
            ));
        }
        assert!(segment("n", "...").is_ok());
    }

    #[test]
    fn paths_for_both_locations() {
        let personal = SecretLocation::Personal {
            user_id: "u 1".into(),
        };
        assert_eq!(
            secret_path(&SecretLocation::Shared, "k8s/ns/x").unwrap(),
            "/vault/api/v1/secrets/k8s%2Fns%2Fx"
        );
        assert_eq!(
            secret_path(&personal, "x").unwrap(),
            "/vault/api/v1/user/u%201/secrets/x"
        );
        assert_eq!(
            secret_metadata_path(&personal, "x").unwrap(),
            "/vault/api/v1/user/u%201/metadata/secrets/x"
        );
        assert_eq!(
            secret_metadata_path(&SecretLocation::Shared, "x").unwrap(),
            "/vault/api/v1/metadata/secrets/x"
        );
    }

    #[test]
    fn encoded_paths_survive_url_parsing() {
        let base = url::Url::parse("https://privx.example.com/prefix").unwrap();
        let path = secret_path(&SecretLocation::Shared, "a/../b c").unwrap();
        let url =
            url::Url::parse(&format!("{}{path}", base.as_str().trim_end_matches('/'))).unwrap();
        assert_eq!(url.path(), "/prefix/vault/api/v1/secrets/a%2F..%2Fb%20c");
    }
}
