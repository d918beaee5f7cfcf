//! A last word before a new artifact is cached: an [`Approver`] sees every artifact fetched from a
//! source (after validation, before it is stored) and may refuse it. The one implementation here is
//! [`Webhook`], a validation webhook in the spirit of Athens' ValidatorHook: agora POSTs a JSON
//! [`Candidate`] and the status code decides.
//!
//! Artifacts already cached are never re-submitted: approval is part of filling the cache, and
//! the cache is write-once.

use std::time::Duration;

use agora_upstream::UpstreamClient;
use async_trait::async_trait;
use serde::Serialize;

/// What is about to be cached. Serialized as the webhook's request body.
#[derive(Clone, Debug, Serialize)]
pub struct Candidate {
    pub module: String,
    pub version: String,
    /// `info`, `mod` or `zip`.
    pub kind: &'static str,
    /// The go.mod file (for `mod`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub go_mod: Option<String>,
    /// The zip's `h1:` hash, as in go.sum (for `zip`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zip_hash: Option<String>,
    /// The zip's size in bytes (for `zip`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zip_size: Option<u64>,
}

impl Candidate {
    fn new(module: &impl ToString, version: &str, kind: &'static str) -> Candidate {
        Candidate {
            module: module.to_string(),
            version: version.to_owned(),
            kind,
            go_mod: None,
            zip_hash: None,
            zip_size: None,
        }
    }

    pub fn info(module: &impl ToString, version: &str) -> Candidate {
        Candidate::new(module, version, "info")
    }

    pub fn go_mod(module: &impl ToString, version: &str, go_mod: &[u8]) -> Candidate {
        Candidate {
            go_mod: Some(String::from_utf8_lossy(go_mod).into_owned()),
            ..Candidate::new(module, version, "mod")
        }
    }

    pub fn zip(
        module: &impl ToString,
        version: &str,
        hash: String,
        size: Option<u64>,
    ) -> Candidate {
        Candidate {
            zip_hash: Some(hash),
            zip_size: size,
            ..Candidate::new(module, version, "zip")
        }
    }
}

/// Why an artifact was not approved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The approver said no (the client gets 403 with this reason, after the artifact's name).
    Denied(String),
    /// The approver could not be asked and the configuration fails closed (503, retry later).
    Unavailable(String),
}

#[async_trait]
pub trait Approver: Send + Sync {
    async fn approve(&self, candidate: &Candidate) -> Result<(), Rejection>;
}

/// Behaviour when the webhook cannot answer (timeout, connection refused, 5xx).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Cache the artifact anyway (logged as a warning).
    Open,
    /// Refuse the artifact for now (503); a later request asks again.
    Closed,
}

/// A validation webhook: `POST url` with a [`Candidate`] as JSON. 2xx approves; 4xx denies (the
/// first line of the body, if any, becomes the reason shown to the client); anything else,
/// including a timeout, is "unavailable" and handled by the [`FailMode`].
pub struct Webhook {
    url: String,
    timeout: Duration,
    fail: FailMode,
    client: UpstreamClient,
}

/// Longest reason kept from a webhook's answer.
const REASON_LIMIT: usize = 200;

impl Webhook {
    pub fn new(url: String, timeout: Duration, fail: FailMode, client: UpstreamClient) -> Self {
        Webhook {
            url,
            timeout,
            fail,
            client,
        }
    }

    fn unavailable(&self, candidate: &Candidate, why: String) -> Result<(), Rejection> {
        let what = format!(
            "{}@{} {}",
            candidate.module, candidate.version, candidate.kind
        );
        match self.fail {
            FailMode::Open => {
                tracing::warn!(artifact = %what, error = %why, "validation webhook unavailable; accepting (fail-open)");
                Ok(())
            }
            FailMode::Closed => {
                tracing::warn!(artifact = %what, error = %why, "validation webhook unavailable; refusing (fail-closed)");
                Err(Rejection::Unavailable(
                    "the validation webhook is unavailable; try again later".into(),
                ))
            }
        }
    }
}

#[async_trait]
impl Approver for Webhook {
    async fn approve(&self, candidate: &Candidate) -> Result<(), Rejection> {
        let body = serde_json::to_vec(candidate).expect("candidate serializes");
        let answer = self
            .client
            .post_json(&self.url, body, self.timeout, REASON_LIMIT)
            .await;
        match answer {
            Ok((status, _)) if (200..300).contains(&status) => Ok(()),
            Ok((status, text)) if (400..500).contains(&status) => {
                let reason = text
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .map(|l| l.chars().filter(|c| !c.is_control()).collect::<String>())
                    .unwrap_or_else(|| format!("status {status}"));
                tracing::info!(
                    module.path = %candidate.module,
                    module.version = %candidate.version,
                    kind = candidate.kind,
                    status,
                    "validation webhook denied an artifact"
                );
                Err(Rejection::Denied(format!(
                    "refused by the validation webhook: {reason}"
                )))
            }
            Ok((status, _)) => self.unavailable(candidate, format!("answered status {status}")),
            Err(err) => self.unavailable(candidate, err.to_string()),
        }
    }
}
