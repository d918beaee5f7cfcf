//! The `[storage]` settings: which backend holds the artifacts and how to reach it.
//!
//! [`StorageConfig`] is the raw, serde-facing shape (every key has a default, unknown keys are
//! rejected, so agora's layered loader can derive an `AGORA_STORAGE_*` variable for each leaf).
//! [`Storage::open`](crate::Storage::open) validates it and names the offending setting
//! (`storage.s3.bucket`, ...) in every error.
//!
//! Secrets (S3 secret key, Azure account key) can be written inline, read from a file (`*_file`, a
//! mounted Kubernetes secret) or from an environment variable (`*_env`), like agora's git
//! credentials. They are held in [`Secret`], whose `Debug` prints `***`, and
//! [`StorageConfig::redacted`] masks them for `config show`. When no credentials are configured, each
//! cloud's standard chain applies (AWS: `AWS_*` variables, web identity, ECS, instance metadata; GCS:
//! application default credentials; Azure: `AZURE_*` variables, workload or managed identity).
//!
//! ```toml
//! [storage]
//! backend = "s3"          # local (default) | memory | s3 | gcs | azure
//!
//! [storage.s3]
//! bucket = "goproxy"
//! prefix = "agora"                       # optional: objects live under goproxy/agora/...
//! endpoint = "https://minio.corp.example" # empty = AWS
//! region = "eu-west-1"
//! access_key_id = "agora"
//! secret_access_key_file = "/run/secrets/s3-secret"
//! ```

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::StorageError;

/// Which store holds the artifacts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A directory under `data_dir` that is itself a `GOPROXY=file://` tree.
    #[default]
    Local,
    /// Process memory (tests, throw-away instances).
    Memory,
    /// Amazon S3 or an S3-compatible store (MinIO, Ceph RGW, ...).
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage.
    Azure,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Local => "local",
            BackendKind::Memory => "memory",
            BackendKind::S3 => "s3",
            BackendKind::Gcs => "gcs",
            BackendKind::Azure => "azure",
        })
    }
}

/// `[storage]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `local` (default), `memory`, `s3`, `gcs` or `azure`.
    pub backend: BackendKind,
    pub s3: S3Config,
    pub gcs: GcsConfig,
    pub azure: AzureConfig,
    /// PEM file with extra CA certificates to trust for a remote backend's endpoint (an on-premises
    /// MinIO or Ceph behind a private CA). Empty = the system store only.
    pub ca_file: String,
    /// Time allowed to connect to a remote backend.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// A remote request that sends or receives nothing for this long is failed (and retried). There
    /// is deliberately no total time limit: a zip of hundreds of MiB may take long to move.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// Retries of a failed remote request (with exponential backoff), within `retry_timeout`.
    pub max_retries: usize,
    #[serde(with = "humantime_serde")]
    pub retry_timeout: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: BackendKind::Local,
            s3: S3Config::default(),
            gcs: GcsConfig::default(),
            azure: AzureConfig::default(),
            ca_file: String::new(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            max_retries: 3,
            retry_timeout: Duration::from_secs(60),
        }
    }
}

/// `[storage.s3]`: Amazon S3 and S3-compatible stores.
///
/// The store must honour `If-None-Match: *` on `PutObject`, and on `CompleteMultipartUpload`
/// unless `large_files = "single_put"` (AWS since 2024, MinIO, moto; Ceph RGW 16.2 only with
/// `single_put`); [`Storage::verify_write_once`](crate::Storage::verify_write_once) checks it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Bucket name (required).
    pub bucket: String,
    /// Key prefix inside the bucket (`agora` stores `agora/<module>/@v/...`). Empty = bucket root.
    pub prefix: String,
    /// Endpoint URL of an S3-compatible store (`https://minio.corp.example:9000`). Empty = AWS.
    pub endpoint: String,
    /// Region; empty = `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: String,
    /// Virtual-hosted-style requests (`https://<bucket>.<endpoint host>/key`) instead of path-style
    /// (`https://<endpoint host>/<bucket>/key`, the default, which needs no wildcard DNS).
    pub virtual_hosted_style: bool,
    /// Allow a plain `http://` endpoint.
    pub allow_http: bool,
    /// Static credentials. When neither key is set, the standard AWS chain applies (`AWS_*`
    /// variables, web identity, ECS task role, instance metadata).
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// File holding the secret access key (trailing newline ignored).
    pub secret_access_key_file: String,
    /// Environment variable holding the secret access key.
    pub secret_access_key_env: String,
    /// How files larger than one part (zips over 8 MiB) are published.
    pub large_files: LargeFiles,
}

/// How an S3 store receives files larger than one part ([`crate::remote::PART_SIZE`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LargeFiles {
    /// A multipart upload to a staging key, then a conditional copy to the final key: bounded
    /// memory, and the store must honour `If-None-Match` on `CompleteMultipartUpload`.
    #[default]
    Multipart,
    /// One conditional `PutObject` whose body is the scratch file mapped into memory (no copy on
    /// the heap; its pages are the page cache's, counted in RSS while sent). For stores whose
    /// conditional `PutObject` is atomic but whose multipart completion is not (Ceph RGW 16.2).
    /// S3 takes up to 5 GiB in one `PutObject`; Go module zips are at most 500 MiB.
    SinglePut,
}

/// `[storage.gcs]`: Google Cloud Storage.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcsConfig {
    /// Bucket name (required).
    pub bucket: String,
    /// Key prefix inside the bucket. Empty = bucket root.
    pub prefix: String,
    /// Service account key file (JSON). Empty = application default credentials
    /// (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's file, or the metadata server).
    pub service_account_file: String,
}

/// `[storage.azure]`: Azure Blob Storage.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzureConfig {
    /// Storage account name (required).
    pub account: String,
    /// Container name (required).
    pub container: String,
    /// Key prefix inside the container. Empty = container root.
    pub prefix: String,
    /// Endpoint URL override (sovereign clouds, Azurite). Empty = `https://<account>.blob.core.windows.net`.
    pub endpoint: String,
    /// Allow a plain `http://` endpoint.
    pub allow_http: bool,
    /// Shared account key. When none of the three is set, the standard chain applies (`AZURE_*`
    /// variables, workload identity, managed identity).
    pub access_key: Secret,
    /// File holding the account key (trailing newline ignored).
    pub access_key_file: String,
    /// Environment variable holding the account key.
    pub access_key_env: String,
}

/// A secret setting. Serialized as itself (so a configuration survives a round trip); shown as
/// `***` by `Debug` and by [`StorageConfig::redacted`].
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The secret itself, for handing to a client. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn masked(&self) -> Secret {
        if self.is_empty() {
            Secret::default()
        } else {
            Secret::new(MASK)
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            f.write_str("Secret(\"\")")
        } else {
            f.write_str("Secret(***)")
        }
    }
}

const MASK: &str = "***";

impl StorageConfig {
    /// A copy safe to print (`agora config show`): inline secrets are replaced by `***`. File and
    /// variable names are kept; they say where a secret is, not what it is.
    pub fn redacted(&self) -> StorageConfig {
        let mut shown = self.clone();
        shown.s3.secret_access_key = shown.s3.secret_access_key.masked();
        shown.azure.access_key = shown.azure.access_key.masked();
        shown
    }
}

/// A configuration error naming the setting (`storage.s3.bucket`).
pub(crate) fn invalid(setting: &str, reason: impl Into<String>) -> StorageError {
    StorageError::Config {
        setting: setting.to_owned(),
        reason: reason.into(),
    }
}

/// Resolves a secret given inline, by file or by environment variable (at most one of them).
/// `base` is the setting's name (`storage.s3.secret_access_key`); errors name the variant used.
pub(crate) fn resolve_secret(
    base: &str,
    inline: &Secret,
    file: &str,
    env: &str,
) -> Result<Option<String>, StorageError> {
    let set = [!inline.is_empty(), !file.is_empty(), !env.is_empty()];
    if set.iter().filter(|s| **s).count() > 1 {
        return Err(invalid(
            base,
            format!("set only one of {base}, {base}_file, {base}_env"),
        ));
    }
    if !inline.is_empty() {
        return Ok(Some(inline.expose().to_owned()));
    }
    if !file.is_empty() {
        let text = std::fs::read_to_string(Path::new(file))
            .map_err(|e| invalid(&format!("{base}_file"), format!("cannot read {file}: {e}")))?;
        let value = text.trim_end_matches(['\r', '\n']).to_owned();
        if value.is_empty() {
            return Err(invalid(&format!("{base}_file"), format!("{file} is empty")));
        }
        return Ok(Some(value));
    }
    if !env.is_empty() {
        return match std::env::var(env) {
            Ok(v) if !v.is_empty() => Ok(Some(v)),
            _ => Err(invalid(
                &format!("{base}_env"),
                format!("environment variable {env} is not set"),
            )),
        };
    }
    Ok(None)
}

/// Checks a bucket or container name: a bare name, not a URL or a path.
pub(crate) fn check_bucket(
    setting: &str,
    name: &str,
    backend: BackendKind,
) -> Result<(), StorageError> {
    if name.is_empty() {
        return Err(invalid(
            setting,
            format!("required when storage.backend = \"{backend}\""),
        ));
    }
    if name.contains('/') || name.contains(':') || name.chars().any(|c| c.is_whitespace()) {
        return Err(invalid(
            setting,
            format!("{name:?} is not a bare name (no scheme, slashes or spaces; put a key prefix in the prefix setting)"),
        ));
    }
    Ok(())
}

/// Normalizes a key prefix (`/a/b/` → `a/b`) and rejects ones that cannot be object paths.
pub(crate) fn normalize_prefix(setting: &str, prefix: &str) -> Result<String, StorageError> {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    for segment in trimmed.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(invalid(
                setting,
                format!("{prefix:?}: empty, `.` and `..` path elements are not allowed"),
            ));
        }
        if segment.chars().any(|c| c.is_control()) {
            return Err(invalid(setting, "control characters are not allowed"));
        }
    }
    Ok(trimmed.to_owned())
}

/// Checks an endpoint URL: `http(s)://host[:port][/path]`, no credentials, `http` only when allowed.
/// Returns it without a trailing slash.
pub(crate) fn check_endpoint(
    setting: &str,
    endpoint: &str,
    allow_http: bool,
    allow_http_setting: &str,
) -> Result<String, StorageError> {
    let (scheme, rest) = endpoint.split_once("://").ok_or_else(|| {
        invalid(
            setting,
            "must be a URL such as https://minio.corp.example:9000",
        )
    })?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.contains('@') {
        // Do not echo the value: it holds a credential.
        return Err(invalid(
            setting,
            "must not contain credentials; use the access key settings",
        ));
    }
    if authority.is_empty() {
        return Err(invalid(setting, format!("{endpoint:?} has no host")));
    }
    match scheme {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return Err(invalid(
                setting,
                format!("{endpoint} is plain HTTP: set {allow_http_setting} = true to allow it"),
            ))
        }
        _ => {
            return Err(invalid(
                setting,
                format!("{endpoint:?}: the scheme must be http or https"),
            ))
        }
    }
    Ok(endpoint.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let text = toml::to_string(&StorageConfig::default()).unwrap();
        let back: StorageConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, StorageConfig::default());
        assert!(text.contains("connect_timeout = \"5s\""), "{text}");
        assert!(text.contains("backend = \"local\""), "{text}");
    }

    #[test]
    fn parses_every_backend_section() {
        let c: StorageConfig = toml::from_str(
            r#"
            backend = "s3"
            read_timeout = "2m"
            [s3]
            bucket = "goproxy"
            prefix = "agora/"
            endpoint = "http://127.0.0.1:9000"
            allow_http = true
            access_key_id = "id"
            secret_access_key = "s3cr3t"
            [gcs]
            bucket = "goproxy"
            service_account_file = "/etc/agora/gcs.json"
            [azure]
            account = "corp"
            container = "goproxy"
            access_key_env = "AZURE_KEY"
            "#,
        )
        .unwrap();
        assert_eq!(c.backend, BackendKind::S3);
        assert_eq!(c.read_timeout, Duration::from_secs(120));
        assert_eq!(c.s3.secret_access_key.expose(), "s3cr3t");
        assert_eq!(c.gcs.service_account_file, "/etc/agora/gcs.json");
        assert_eq!(c.azure.access_key_env, "AZURE_KEY");
        assert_eq!(
            c.connect_timeout,
            Duration::from_secs(5),
            "defaults fill in"
        );
    }

    #[test]
    fn unknown_keys_and_backends_are_rejected_by_name() {
        let e = toml::from_str::<StorageConfig>("[s3]\nbuckett = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("buckett"), "{e}");
        let e = toml::from_str::<StorageConfig>("backend = \"ftp\"\n").unwrap_err();
        assert!(e.to_string().contains("ftp"), "{e}");
    }

    #[test]
    fn secrets_are_hidden_from_debug_and_redacted() {
        let mut c = StorageConfig::default();
        c.s3.secret_access_key = Secret::new("s3cr3t");
        c.azure.access_key = Secret::new("azk3y");
        c.s3.secret_access_key_file = "/run/secrets/s3".into();
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert!(!format!("{c:?}").contains("azk3y"));
        let shown = toml::to_string(&c.redacted()).unwrap();
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("azk3y"),
            "{shown}"
        );
        assert!(shown.contains("secret_access_key = \"***\""), "{shown}");
        assert!(
            shown.contains("/run/secrets/s3"),
            "where a secret lives is not secret"
        );
        assert!(
            toml::to_string(&c).unwrap().contains("s3cr3t"),
            "serialization keeps the value"
        );
    }

    #[test]
    fn secret_sources() {
        let none = Secret::default();
        assert_eq!(
            resolve_secret("storage.s3.secret_access_key", &none, "", "").unwrap(),
            None
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-file\n").unwrap();
        assert_eq!(
            resolve_secret("k", &none, file.to_str().unwrap(), "").unwrap(),
            Some("from-file".into())
        );
        let e =
            resolve_secret("storage.s3.secret_access_key", &Secret::new("x"), "f", "").unwrap_err();
        assert!(e.to_string().contains("set only one of"), "{e}");
        let e = resolve_secret("storage.s3.secret_access_key", &none, "/nonexistent/x", "")
            .unwrap_err();
        assert!(
            e.to_string().contains("storage.s3.secret_access_key_file"),
            "{e}"
        );
        let e = resolve_secret(
            "storage.azure.access_key",
            &none,
            "",
            "AGORA_TEST_SURELY_UNSET_VAR",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("storage.azure.access_key_env"),
            "{e}"
        );
        assert!(e.to_string().contains("AGORA_TEST_SURELY_UNSET_VAR"), "{e}");
    }

    #[test]
    fn endpoint_and_prefix_checks() {
        let s = "storage.s3.endpoint";
        let a = "storage.s3.allow_http";
        assert_eq!(
            check_endpoint(s, "https://h:9000/", false, a).unwrap(),
            "https://h:9000"
        );
        let e = check_endpoint(s, "http://h:9000", false, a).unwrap_err();
        assert!(
            e.to_string().contains("storage.s3.allow_http = true"),
            "{e}"
        );
        let e = check_endpoint(s, "https://user:hunter2@h", false, a).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(check_endpoint(s, "h:9000", false, a).is_err());
        assert!(check_endpoint(s, "ftp://h", false, a).is_err());
        assert_eq!(normalize_prefix("p", "/a/b/").unwrap(), "a/b");
        assert_eq!(normalize_prefix("p", "").unwrap(), "");
        assert!(normalize_prefix("p", "a//b").is_err());
        assert!(normalize_prefix("p", "a/../b").is_err());
        assert!(check_bucket("storage.s3.bucket", "s3://b", BackendKind::S3).is_err());
        let e = check_bucket("storage.s3.bucket", "", BackendKind::S3).unwrap_err();
        assert!(e.to_string().contains("storage.s3.bucket"), "{e}");
    }
}
