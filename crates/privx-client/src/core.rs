//! The request core every service module builds on: one request ([`Call`]) with its error
//! context, the retry loop, one token refresh on a 401, JSON answers and paging
//! (docs/privx-api.md sections 5 and 6). No endpoint lives here.

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{CallContext, error_from_answer, parse_failure, service_of};
use crate::transport::Answer;
use crate::{PrivxClient, PrivxError, Result, SecretData, auth, paging, retry, routes};

/// Asked before every PrivX write (POST, PUT, DELETE other than read-only searches): `false`
/// refuses the write unsent ([`PrivxError::WriteRefused`]). The operator answers whether it
/// still holds a valid leader lease at that moment.
pub type WriteGate = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

/// POSTs that only read (searches): never refused by the write gate.
const READ_ONLY_POSTS: [&str; 2] = [routes::ROLES_RESOLVE, routes::ROLES_SEARCH];

/// The largest request body PrivX's front proxy accepts in its standard deployment.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// One request as the retry loop repeats it.
pub(crate) struct Call {
    pub method: Method,
    pub endpoint: &'static str,
    pub path: String,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<Vec<u8>>,
    pub ctx: CallContext,
    /// Sent at most once: a create whose outcome is unknown (timeout, lost connection, 5xx)
    /// may have reached PrivX, and repeating it could create a second object. The caller
    /// re-reads and decides.
    pub at_most_once: bool,
    /// Statuses that mean "this PrivX has no such endpoint" (older versions): answered as they
    /// are instead of as errors; the caller looks at the status.
    pub absent: &'static [u16],
}

impl Call {
    pub(crate) fn new(
        method: Method,
        endpoint: &'static str,
        path: String,
        operation: String,
        what: String,
    ) -> Self {
        Self {
            method,
            endpoint,
            path,
            query: Vec::new(),
            body: None,
            at_most_once: false,
            absent: &[],
            ctx: CallContext {
                operation,
                what,
                service: service_of(endpoint),
                redact: Vec::new(),
            },
        }
    }

    /// Whether this call changes something in PrivX (what the write gate is asked about).
    pub(crate) fn is_write(&self) -> bool {
        self.method != Method::GET
            && self.method != Method::HEAD
            && !READ_ONLY_POSTS.contains(&self.endpoint)
    }

    /// Marks the call as sent at most once (creates).
    pub(crate) fn at_most_once(mut self) -> Self {
        self.at_most_once = true;
        self
    }

    pub(crate) fn json(mut self, body: &Value) -> Result<Self> {
        let bytes = serde_json::to_vec(body).expect("JSON values always serialize");
        if bytes.len() > MAX_BODY_BYTES {
            return Err(PrivxError::InvalidRequest {
                operation: self.ctx.operation.clone(),
                code: "REQUEST_TOO_LARGE".into(),
                property: None,
                message: format!(
                    "the request body is {} bytes; PrivX accepts at most {MAX_BODY_BYTES}",
                    bytes.len()
                ),
            });
        }
        self.body = Some(bytes);
        Ok(self)
    }

    /// Keeps the strings of `data` out of any error message about this call (as sent and
    /// JSON-escaped, as PrivX may echo them), and the call's answer bodies out of the log.
    pub(crate) fn redacting(mut self, data: &SecretData) -> Self {
        fn collect(value: &Value, out: &mut Vec<String>) {
            match value {
                Value::String(s) => {
                    let escaped = serde_json::to_string(s).expect("a string serialises");
                    let escaped = &escaped[1..escaped.len() - 1];
                    if escaped != s {
                        out.push(escaped.to_string());
                    }
                    out.push(s.clone());
                }
                Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
                Value::Object(map) => map.values().for_each(|v| collect(v, out)),
                _ => {}
            }
        }
        data.0
            .values()
            .for_each(|v| collect(v, &mut self.ctx.redact));
        // Longest first, so that a value containing another is removed whole.
        self.ctx.redact.sort_by_key(|s| std::cmp::Reverse(s.len()));
        self
    }
}

impl PrivxClient {
    /// Asks `gate` before every write to PrivX, at the moment of sending (each retry asks
    /// again): a write it refuses is not sent. Applies to every clone.
    pub fn with_write_gate(self, gate: WriteGate) -> Self {
        self.inner.transport.set_write_gate(gate);
        self
    }

    // ---- the request machinery ----

    /// Runs `attempt` until it succeeds, fails for good, or `max_retries` retries of
    /// retryable failures are spent.
    pub(crate) async fn with_retries<T, F, Fut>(&self, attempt: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut retries = 0;
        loop {
            match attempt().await {
                Err(PrivxError::Unavailable {
                    retry_after,
                    service,
                    ..
                }) if retries < self.inner.max_retries
                    && service.is_none_or(|s| self.breakers().refusal(s).is_none()) =>
                {
                    // (An open breaker, whether it refused this attempt or the failure opened
                    // it, would refuse the retry: the call fails now instead.)
                    let wait = retry::backoff(self.inner.retry_base_delay, retries, retry_after);
                    retries += 1;
                    tracing::debug!(
                        retry = retries,
                        wait_ms = wait.as_millis() as u64,
                        "PrivX unavailable; retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    /// Sends `call` (with retries, and one token refresh on a 401) and returns its successful
    /// answer, or the typed error of the last failure.
    pub(crate) async fn execute(&self, call: &Call) -> Result<Answer> {
        if call.at_most_once {
            // The token grant may be retried (nothing is created by it); the call is not.
            let token = self
                .with_retries(|| async { self.inner.auth.token(&self.inner.transport).await })
                .await?;
            return self.attempt(call, token).await;
        }
        self.with_retries(|| async {
            let token = self.inner.auth.token(&self.inner.transport).await?;
            self.attempt(call, token).await
        })
        .await
    }

    /// One send of `call` (with one token refresh on a 401), as a typed result.
    async fn attempt(&self, call: &Call, token: auth::Token) -> Result<Answer> {
        {
            let mut answer = self.send_once(call, &token).await?;
            if answer.status == 401 {
                // Refresh once (only if no one else has already) and retry once.
                self.inner.auth.invalidate(&token);
                let token = self.inner.auth.token(&self.inner.transport).await?;
                answer = self.send_once(call, &token).await?;
            }
            if (200..300).contains(&answer.status) || call.absent.contains(&answer.status) {
                Ok(answer)
            } else {
                Err(error_from_answer(
                    &call.ctx,
                    answer.status,
                    answer.retry_after,
                    &answer.body,
                ))
            }
        }
    }

    async fn send_once(&self, call: &Call, token: &auth::Token) -> Result<Answer> {
        let transport = &self.inner.transport;
        if call.is_write() && !transport.may_write() {
            tracing::warn!(operation = %call.ctx.operation, "PrivX write refused by the write gate");
            return Err(PrivxError::WriteRefused {
                operation: call.ctx.operation.clone(),
            });
        }
        let mut url = transport.url(&call.path)?;
        if !call.query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(call.query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut request = transport
            .client()
            .request(call.method.clone(), url)
            .bearer_auth(&*token.access)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = &call.body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        transport.send(&call.ctx, call.endpoint, request).await
    }

    pub(crate) async fn execute_json<T: DeserializeOwned>(&self, call: &Call) -> Result<T> {
        let answer = self.execute(call).await?;
        serde_json::from_slice(&answer.body).map_err(|e| parse_failure(&call.ctx, &e))
    }

    /// Reads every page of a `{count, items}` list.
    pub(crate) async fn list_paged<T: DeserializeOwned>(&self, mut call: Call) -> Result<Vec<T>> {
        let base_query = std::mem::take(&mut call.query);
        let mut all = Vec::new();
        let mut offset = 0;
        let mut previous_first: Option<Value> = None;
        for _ in 0..paging::MAX_PAGES {
            call.query = base_query.clone();
            call.query.push(("offset", offset.to_string()));
            call.query.push(("limit", paging::PAGE_LIMIT.to_string()));
            let page: paging::Page<Value> = self.execute_json(&call).await?;
            let len = page.items.len();
            if let Some(first) = page.items.first() {
                if offset > 0 && previous_first.as_ref() == Some(first) {
                    return Err(PrivxError::Other {
                        operation: call.ctx.operation.clone(),
                        message: format!(
                            "PrivX answered offset {offset} with the previous page again; it seems to ignore paging"
                        ),
                    });
                }
                previous_first = Some(first.clone());
            }
            for item in page.items {
                all.push(serde_json::from_value(item).map_err(|e| parse_failure(&call.ctx, &e))?);
            }
            match paging::next_offset(offset, paging::PAGE_LIMIT, page.count, len) {
                Some(next) => offset = next,
                None => return Ok(all),
            }
        }
        Err(PrivxError::Other {
            operation: call.ctx.operation,
            message: format!("the list did not end within {} pages", paging::MAX_PAGES),
        })
    }
}
