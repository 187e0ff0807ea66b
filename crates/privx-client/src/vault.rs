//! The vault service (docs/privx-api.md section 2): shared and personal secrets.

use reqwest::Method;
use serde_json::json;

use crate::core::Call;
use crate::{PrivxClient, Result, Secret, SecretLocation, SecretWrite, routes};

impl PrivxClient {
    // ---- vault secrets (shared and personal) ----

    /// All secrets at a location (pages through).
    pub async fn list_secrets(&self, at: &SecretLocation) -> Result<Vec<Secret>> {
        let what = match at {
            SecretLocation::Shared => "shared secrets".to_string(),
            SecretLocation::Personal { user_id } => format!("personal secrets of user {user_id:?}"),
        };
        let call = Call::new(
            Method::GET,
            routes::secret_routes(at).list,
            routes::secrets_path(at)?,
            format!("list {what}"),
            what,
        );
        self.list_paged(call).await
    }

    /// One secret with its data (`data` is `None` if PrivX withholds it).
    pub async fn get_secret(&self, at: &SecretLocation, name: &str) -> Result<Secret> {
        let what = routes::describe_secret(at, name);
        let call = Call::new(
            Method::GET,
            routes::secret_routes(at).get,
            routes::secret_path(at, name)?,
            format!("get {what}"),
            what,
        );
        self.execute_json(&call).await
    }

    /// One secret's metadata (no data).
    pub async fn get_secret_metadata(&self, at: &SecretLocation, name: &str) -> Result<Secret> {
        let what = routes::describe_secret(at, name);
        let call = Call::new(
            Method::GET,
            routes::secret_routes(at).metadata,
            routes::secret_metadata_path(at, name)?,
            format!("get metadata of {what}"),
            what,
        );
        let mut secret: Secret = self.execute_json(&call).await?;
        secret.data = None;
        Ok(secret)
    }

    /// Creates a secret; `AlreadyExists` if the name is taken.
    pub async fn create_secret(
        &self,
        at: &SecretLocation,
        name: &str,
        body: &SecretWrite,
    ) -> Result<()> {
        routes::segment("secret name", name)?;
        let what = routes::describe_secret(at, name);
        let mut json = json!({
            "name": name,
            "data": body.data,
            "read_roles": body.read_roles,
            "write_roles": body.write_roles,
        });
        if let SecretLocation::Personal { user_id } = at {
            json["owner_id"] = json!(user_id);
        }
        let call = Call::new(
            Method::POST,
            routes::secret_routes(at).create,
            routes::secrets_path(at)?,
            format!("create {what}"),
            what,
        )
        .at_most_once()
        .redacting(&body.data)
        .json(&json)?;
        self.execute(&call).await.map(drop)
    }

    /// Replaces a secret's data and roles.
    pub async fn update_secret(
        &self,
        at: &SecretLocation,
        name: &str,
        body: &SecretWrite,
    ) -> Result<()> {
        let what = routes::describe_secret(at, name);
        let json = json!({
            "data": body.data,
            "read_roles": body.read_roles,
            "write_roles": body.write_roles,
        });
        let call = Call::new(
            Method::PUT,
            routes::secret_routes(at).update,
            routes::secret_path(at, name)?,
            format!("update {what}"),
            what,
        )
        .redacting(&body.data)
        .json(&json)?;
        self.execute(&call).await.map(drop)
    }

    /// Deletes a secret; `NotFound` if it is not there.
    pub async fn delete_secret(&self, at: &SecretLocation, name: &str) -> Result<()> {
        let what = routes::describe_secret(at, name);
        let call = Call::new(
            Method::DELETE,
            routes::secret_routes(at).delete,
            routes::secret_path(at, name)?,
            format!("delete {what}"),
            what,
        );
        self.execute(&call).await.map(drop)
    }
}
