//! The OAuth password grant (docs/privx-api.md section 1) with the API client's four
//! credentials, each given directly or read from a file that is re-read when it changes.

use std::path::Path;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::{GrantFailure, Granted, oauth_answer};
use crate::PrivxError;
use crate::config::{CredentialSource, CredentialValue, Credentials};
use crate::error::CallContext;
use crate::routes;
use crate::transport::{FileStamp, Transport};

const LABELS: [&str; 4] = [
    "OAuth client ID",
    "OAuth client secret",
    "API client ID",
    "API client secret",
];

struct Loaded {
    credentials: Credentials,
    stamps: Vec<Option<FileStamp>>,
    digest: [u8; 32],
}

pub(super) struct PasswordGrant {
    values: [CredentialValue; 4],
    loaded: Mutex<Option<Loaded>>,
}

impl PasswordGrant {
    pub(super) fn new(source: &CredentialSource) -> Result<Self, PrivxError> {
        let grant = Self {
            values: source.values(),
            loaded: Mutex::new(None),
        };
        // Fail early on unreadable files or empty values.
        grant.digest()?;
        Ok(grant)
    }

    /// The digest of the credentials as they are now; files are re-read only when their
    /// stamp changed.
    pub(super) fn digest(&self) -> Result<[u8; 32], PrivxError> {
        let mut loaded = self.loaded.lock().expect("credentials lock");
        let stamps: Vec<Option<FileStamp>> = self
            .values
            .iter()
            .zip(LABELS)
            .map(|(value, label)| match value {
                CredentialValue::Value(_) => Ok(None),
                CredentialValue::File(path) => FileStamp::of(path)
                    .map(Some)
                    .map_err(|e| file_error(label, path, &e)),
            })
            .collect::<Result<_, _>>()?;
        if let Some(l) = loaded.as_ref()
            && l.stamps == stamps
        {
            return Ok(l.digest);
        }
        let mut read = Vec::with_capacity(4);
        for (value, label) in self.values.iter().zip(LABELS) {
            let text = match value {
                CredentialValue::Value(v) => v.trim().to_string(),
                CredentialValue::File(path) => std::fs::read_to_string(path)
                    .map_err(|e| file_error(label, path, &e))?
                    .trim()
                    .to_string(),
            };
            if text.is_empty() {
                return Err(PrivxError::Config(match value {
                    CredentialValue::Value(_) => format!("the PrivX {label} is empty"),
                    CredentialValue::File(path) => {
                        format!("the PrivX {label} file {} is empty", path.display())
                    }
                }));
            }
            read.push(text);
        }
        let [
            oauth_client_id,
            oauth_client_secret,
            api_client_id,
            api_client_secret,
        ]: [String; 4] = read.try_into().expect("four values");
        let credentials = Credentials {
            oauth_client_id,
            oauth_client_secret,
            api_client_id,
            api_client_secret,
        };
        let digest = digest(&credentials);
        *loaded = Some(Loaded {
            credentials,
            stamps,
            digest,
        });
        Ok(digest)
    }

    pub(super) async fn grant(&self, transport: &Transport) -> Result<Granted, GrantFailure> {
        self.digest().map_err(GrantFailure::Failed)?;
        let credentials = self
            .loaded
            .lock()
            .expect("credentials lock")
            .as_ref()
            .map(|l| l.credentials.clone())
            .expect("credentials loaded");
        let ctx = CallContext {
            operation: "login (token grant)".into(),
            what: "token endpoint".into(),
            service: "auth",
            redact: vec![
                credentials.oauth_client_secret.clone(),
                credentials.api_client_secret.clone(),
            ],
        };
        let url = transport
            .url(routes::TOKEN_PATH)
            .map_err(GrantFailure::Failed)?;
        let request = transport
            .client()
            .post(url)
            .basic_auth(
                &credentials.oauth_client_id,
                Some(&credentials.oauth_client_secret),
            )
            .form(&[
                ("grant_type", "password"),
                ("username", credentials.api_client_id.as_str()),
                ("password", credentials.api_client_secret.as_str()),
            ]);
        let answer = transport
            .send(&ctx, routes::TOKEN, request)
            .await
            .map_err(GrantFailure::Failed)?;
        oauth_answer(
            &ctx,
            &answer,
            "the API client credentials",
            "check the API client ID and secret and the OAuth client ID and secret",
        )
    }
}

fn file_error(label: &str, path: &Path, err: &std::io::Error) -> PrivxError {
    PrivxError::Config(format!(
        "cannot read the PrivX {label} file {}: {err}",
        path.display()
    ))
}

fn digest(c: &Credentials) -> [u8; 32] {
    let mut hash = Sha256::new();
    for value in [
        &c.oauth_client_id,
        &c.oauth_client_secret,
        &c.api_client_id,
        &c.api_client_secret,
    ] {
        hash.update((value.len() as u64).to_be_bytes());
        hash.update(value.as_bytes());
    }
    hash.finalize().into()
}
