//! `agora config import-athens`: turns an Athens configuration into an equivalent `agora.toml`.
//!
//! Athens reads a TOML file and lets environment variables override it (`ATHENS_STORAGE_TYPE`,
//! `ATHENS_DISK_STORAGE_ROOT`, `BASIC_AUTH_PASS`, ...); this module reads both the same way, keys
//! matched case-insensitively as Athens' TOML decoder does, and writes only agora keys that exist
//! (the result is checked by loading it with agora's own loader before it is handed out).
//!
//! Principles:
//! - **What the operator chose carries over; Athens' defaults do not.** A setting at Athens'
//!   default (a 300 s timeout, log level `debug`) keeps agora's default, which expresses the same
//!   intent for agora. Storage, the listen address and the upstream chain are always written.
//! - **Every Athens setting that cannot be mapped is reported**, one line each on stderr, with
//!   the reason and, where there is one, what to do instead. Settings at their default value are
//!   not reported (there is nothing to carry over).
//! - **Secrets are never copied.** A secret agora can read from the environment is referenced
//!   by the variable Athens read it from (`secret_access_key_env = "AWS_SECRET_ACCESS_KEY"`);
//!   Athens' basic-auth password becomes an agora token *hash* (the go command sends the
//!   password as basic auth, which agora accepts as a token), so clients keep working and the
//!   password itself appears nowhere. Anything else is reported with what to set by hand.
//!
//! The two rule files Athens knows are translated too: the filter file (`+`/`-`/`D` lines, where
//! the most specific path wins) becomes `[[filter.rules]]` ordered most specific first (agora's
//! first match wins) plus `redirect` download rules for `D`, and the download-mode file (HCL:
//! `mode`, `downloadURL`, `download "pattern" { ... }` blocks) becomes `[[download]]` rules.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use toml::{Table, Value};

/// Athens' own defaults for the settings whose default matters to the translation.
const DEFAULT_PORT: &str = ":3000";
const DEFAULT_GLOBAL_ENDPOINT: &str = "http://localhost:3001";
const DEFAULT_SUMDB: &str = "https://sum.golang.org";
/// Used by Athens' go command when `GoBinaryEnvVars` names no `GOPROXY`.
const GO_DEFAULT_PROXY: &str = "https://proxy.golang.org,direct";

/// What the translation produced: the TOML text and one line per setting that needs attention.
#[derive(Debug)]
pub struct Translation {
    pub toml: String,
    pub notes: Vec<Note>,
}

/// An Athens setting agora cannot express (or that needs a step by hand), and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// `not mapped` or `action needed`.
    pub kind: NoteKind,
    /// The Athens setting, as Athens names it (`Storage.Mongo.URL`, `ATHENS_GITHUB_TOKEN`).
    pub setting: String,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteKind {
    /// agora has no equivalent; the setting is dropped.
    NotMapped,
    /// Mapped, but something must be done by hand (a secret to provide, data to import).
    Action,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            NoteKind::NotMapped => "not mapped",
            NoteKind::Action => "action needed",
        };
        write!(f, "athens: {kind}: {}: {}", self.setting, self.message)
    }
}

/// Choices the Athens configuration cannot make.
#[derive(Clone, Debug)]
pub struct Options {
    /// agora's data directory (Athens' disk storage is imported into it, not shared).
    pub data_dir: PathBuf,
}

/// Reads the Athens configuration at `path` with the environment `env` (Athens' `ATHENS_*` and
/// other variables override the file) and translates it.
pub fn translate(
    path: &Path,
    env: &BTreeMap<String, String>,
    opts: &Options,
) -> Result<Translation> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the Athens configuration {}", path.display()))?;
    let file: Table = toml::from_str(&text)
        .with_context(|| format!("parsing the Athens configuration {}", path.display()))?;
    let base = path.parent().map(Path::to_owned).unwrap_or_default();
    let mut t = Translator {
        athens: Athens {
            file,
            env,
            used: BTreeSet::new(),
        },
        out: Table::new(),
        notes: Vec::new(),
        base_dir: base,
    };
    t.run(opts)?;
    let toml = render(&t.out, path)?;
    Ok(Translation {
        toml,
        notes: t.notes,
    })
}

/// Loads `toml` with agora's own loader and builds its access settings (tokens, rules), as
/// `agora serve` would: a translation that agora would refuse is a bug here, not the user's.
/// Nothing from the process environment takes part (no `AGORA_*`, no `GOPROXY`).
pub fn check_loads(toml: &str) -> Result<crate::config::Config> {
    use std::io::Write as _;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let path = std::env::temp_dir().join(format!(
        "agora-import-athens-{}-{nanos}.toml",
        std::process::id()
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let written = file.write_all(toml.as_bytes());
    drop(file);
    let loaded = written.map_err(anyhow::Error::from).and_then(|()| {
        crate::config::load(
            Some(&path),
            &BTreeMap::new(),
            &crate::config::Overrides::default(),
        )
    });
    let _ = std::fs::remove_file(&path);
    let config = loaded?;
    crate::app::access(&config).context("the translated access settings")?;
    Ok(config)
}

fn render(out: &Table, source: &Path) -> Result<String> {
    let mut body = toml::to_string_pretty(out).context("writing agora.toml")?;
    if !body.ends_with('\n') {
        body.push('\n');
    }
    Ok(format!(
        "# agora configuration translated from the Athens configuration {}\n\
         # by `agora config import-athens`. Check it with `agora config show --config FILE`.\n\n{body}",
        source.display()
    ))
}

/// Where a value came from, for messages (never the value itself).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Origin {
    File(String),
    Env(String),
}

impl Origin {
    fn is_env(&self) -> bool {
        matches!(self, Origin::Env(_))
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(k) => f.write_str(k),
            Origin::Env(v) => f.write_str(v),
        }
    }
}

/// A value and where it came from.
#[derive(Clone, Debug)]
struct Src<T> {
    value: T,
    from: Origin,
}

/// The Athens configuration: the parsed file, the environment, and which keys were read.
struct Athens<'a> {
    file: Table,
    env: &'a BTreeMap<String, String>,
    /// Lower-case dotted paths of the keys read (or whole sections skipped on purpose).
    used: BTreeSet<String>,
}

impl Athens<'_> {
    /// The file's value at `path` (`Storage.Disk.RootPath`), keys compared case-insensitively.
    fn file_value(&mut self, path: &str) -> Option<(String, Value)> {
        let mut table = &self.file;
        let mut shown = Vec::new();
        let parts: Vec<&str> = path.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let (key, value) = table.iter().find(|(k, _)| k.eq_ignore_ascii_case(part))?;
            shown.push(key.clone());
            if i + 1 == parts.len() {
                self.used.insert(path.to_ascii_lowercase());
                return Some((shown.join("."), value.clone()));
            }
            table = value.as_table()?;
        }
        None
    }

    /// The first of `vars` that is set to something non-empty.
    fn env_value(&self, vars: &[&str]) -> Option<(String, String)> {
        vars.iter().find_map(|v| {
            self.env
                .get(*v)
                .filter(|s| !s.trim().is_empty())
                .map(|s| (v.to_string(), s.clone()))
        })
    }

    /// Marks a whole section as read (a storage backend that is not selected).
    fn skip(&mut self, section: &str) {
        self.used.insert(section.to_ascii_lowercase());
    }

    fn text(&mut self, path: &str, vars: &[&str]) -> Result<Option<Src<String>>> {
        let file = self.file_value(path);
        if let Some((var, v)) = self.env_value(vars) {
            return Ok(Some(Src {
                value: v,
                from: Origin::Env(var),
            }));
        }
        let Some((key, value)) = file else {
            return Ok(None);
        };
        let value = match value {
            Value::String(s) => s,
            // Athens would refuse these; being lenient costs nothing and a port is often a number.
            Value::Integer(i) => i.to_string(),
            other => bail!("{key}: expected a string, found {}", other.type_str()),
        };
        Ok(Some(Src {
            value,
            from: Origin::File(key),
        }))
    }

    fn int(&mut self, path: &str, vars: &[&str]) -> Result<Option<Src<i64>>> {
        let file = self.file_value(path);
        if let Some((var, v)) = self.env_value(vars) {
            let n = v
                .trim()
                .parse()
                .map_err(|_| anyhow!("environment variable {var}: expected a whole number"))?;
            return Ok(Some(Src {
                value: n,
                from: Origin::Env(var),
            }));
        }
        let Some((key, value)) = file else {
            return Ok(None);
        };
        let Value::Integer(n) = value else {
            bail!("{key}: expected a whole number, found {}", value.type_str());
        };
        Ok(Some(Src {
            value: n,
            from: Origin::File(key),
        }))
    }

    fn boolean(&mut self, path: &str, vars: &[&str]) -> Result<Option<Src<bool>>> {
        let file = self.file_value(path);
        if let Some((var, v)) = self.env_value(vars) {
            let b = parse_go_bool(&v)
                .ok_or_else(|| anyhow!("environment variable {var}: expected true or false"))?;
            return Ok(Some(Src {
                value: b,
                from: Origin::Env(var),
            }));
        }
        let Some((key, value)) = file else {
            return Ok(None);
        };
        let Value::Boolean(b) = value else {
            bail!("{key}: expected true or false, found {}", value.type_str());
        };
        Ok(Some(Src {
            value: b,
            from: Origin::File(key),
        }))
    }

    /// A list: a TOML array of strings, or a variable split at `sep` (Athens splits lists at
    /// commas, and `GoBinaryEnvVars` at semicolons because GOPROXY values contain commas).
    fn list(&mut self, path: &str, vars: &[&str], sep: char) -> Result<Option<Src<Vec<String>>>> {
        let file = self.file_value(path);
        if let Some((var, v)) = self.env_value(vars) {
            let items = v
                .split(sep)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            return Ok(Some(Src {
                value: items,
                from: Origin::Env(var),
            }));
        }
        let Some((key, value)) = file else {
            return Ok(None);
        };
        let Value::Array(items) = value else {
            bail!(
                "{key}: expected a list of strings, found {}",
                value.type_str()
            );
        };
        let items = items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(anyhow!(
                    "{key}: expected a list of strings, found a {}",
                    other.type_str()
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Src {
            value: items,
            from: Origin::File(key),
        }))
    }

    /// Every key of the file that nothing read: not Athens settings (Athens ignores them too).
    fn unread(&self) -> Vec<String> {
        fn walk(prefix: &str, t: &Table, used: &BTreeSet<String>, out: &mut Vec<String>) {
            for (k, v) in t {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                let lower = path.to_ascii_lowercase();
                if used.contains(&lower) {
                    continue;
                }
                match v {
                    Value::Table(inner) => walk(&path, inner, used, out),
                    _ => out.push(path),
                }
            }
        }
        let mut out = Vec::new();
        walk("", &self.file, &self.used, &mut out);
        out
    }
}

/// Go's `strconv.ParseBool`, which Athens' environment decoding uses.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

struct Translator<'a> {
    athens: Athens<'a>,
    out: Table,
    notes: Vec<Note>,
    base_dir: PathBuf,
}

/// Every variable Athens reads beginning with `ATHENS_` (from its config.dev.toml and
/// pkg/config), for naming the ones it does not: Athens ignores a misspelt variable silently.
const ATHENS_VARIABLES: &[&str] = &[
    "ATHENS_GO_BINARY_ENV_VARS",
    "ATHENS_GOGET_WORKERS",
    "ATHENS_GOGET_DIR",
    "ATHENS_PROTOCOL_WORKERS",
    "ATHENS_LOG_LEVEL",
    "ATHENS_LOG_FORMAT",
    "ATHENS_CLOUD_RUNTIME",
    "ATHENS_ENABLE_PPROF",
    "ATHENS_PPROF_PORT",
    "ATHENS_FILTER_FILE",
    "ATHENS_ROBOTS_FILE",
    "ATHENS_TIMEOUT",
    "ATHENS_STASH_TIMEOUT",
    "ATHENS_STORAGE_TYPE",
    "ATHENS_TLSCERT_FILE",
    "ATHENS_TLSKEY_FILE",
    "ATHENS_PORT",
    "ATHENS_UNIX_SOCKET",
    "ATHENS_GLOBAL_ENDPOINT",
    "ATHENS_HOME_TEMPLATE_PATH",
    "ATHENS_PROXY_VALIDATOR",
    "ATHENS_PATH_PREFIX",
    "ATHENS_NETRC_PATH",
    "ATHENS_GITHUB_TOKEN",
    "ATHENS_HGRC_PATH",
    "ATHENS_TRACE_EXPORTER",
    "ATHENS_TRACE_EXPORTER_URL",
    "ATHENS_TRACE_SAMPLING_FRACTION",
    "ATHENS_STATS_EXPORTER",
    "ATHENS_SUM_DBS",
    "ATHENS_GONOSUM_PATTERNS",
    "ATHENS_DOWNLOAD_MODE",
    "ATHENS_NETWORK_MODE",
    "ATHENS_DOWNLOAD_URL",
    "ATHENS_SINGLE_FLIGHT_TYPE",
    "ATHENS_INDEX_TYPE",
    "ATHENS_SHUTDOWN_TIMEOUT",
    "ATHENS_CONTENT_CACHE_CONTROL",
    "ATHENS_ETCD_ENDPOINTS",
    "ATHENS_REDIS_ENDPOINT",
    "ATHENS_REDIS_PASSWORD",
    "ATHENS_REDIS_CLUSTER",
    "ATHENS_REDIS_LOCK_TTL",
    "ATHENS_REDIS_LOCK_TIMEOUT",
    "ATHENS_REDIS_LOCK_MAX_RETRIES",
    "ATHENS_REDIS_SENTINEL_ENDPOINTS",
    "ATHENS_REDIS_SENTINEL_MASTER_NAME",
    "ATHENS_REDIS_SENTINEL_PASSWORD",
    "ATHENS_REDIS_SENTINEL_DB",
    "ATHENS_REDIS_USERNAME",
    "ATHENS_DISK_STORAGE_ROOT",
    "ATHENS_STORAGE_GCP_BUCKET",
    "ATHENS_STORAGE_GCP_JSON_KEY",
    "ATHENS_MINIO_ENDPOINT",
    "ATHENS_MINIO_ACCESS_KEY_ID",
    "ATHENS_MINIO_SECRET_ACCESS_KEY",
    "ATHENS_MINIO_USE_SSL",
    "ATHENS_MINIO_BUCKET_NAME",
    "ATHENS_MINIO_REGION",
    "ATHENS_MONGO_STORAGE_URL",
    "ATHENS_MONGO_DEFAULT_DATABASE",
    "ATHENS_MONGO_CERT_PATH",
    "ATHENS_MONGO_INSECURE",
    "ATHENS_S3_BUCKET_NAME",
    "ATHENS_AZURE_ACCOUNT_NAME",
    "ATHENS_AZURE_ACCOUNT_KEY",
    "ATHENS_AZURE_MANAGED_IDENTITY_RESOURCE_ID",
    "ATHENS_AZURE_CREDENTIAL_SCOPE",
    "ATHENS_AZURE_CONTAINER_NAME",
    "ATHENS_EXTERNAL_STORAGE_URL",
];

/// Settings agora has no equivalent for: (path, variables, Athens' default as text, why).
/// Reported only when set to something else than the default.
const UNMAPPED: &[(&str, &[&str], &str, &str)] = &[
    ("GoBinary", &["GO_BINARY_PATH"], "go", "agora computes modules itself and runs no go command"),
    ("GoEnv", &["GO_ENV"], "development", "agora has no development/production switch"),
    ("GoGetDir", &["ATHENS_GOGET_DIR"], "", "agora's scratch files live under data_dir (_agora/tmp)"),
    ("ProtocolWorkers", &["ATHENS_PROTOCOL_WORKERS"], "30", "agora does not cap requests being served, only fetches (limits.*)"),
    ("CloudRuntime", &["ATHENS_CLOUD_RUNTIME"], "none", "agora logs text or JSON (log.format) on any platform"),
    ("EnablePprof", &["ATHENS_ENABLE_PPROF"], "false", "agora has no profiling endpoint"),
    ("PprofPort", &["ATHENS_PPROF_PORT"], ":3001", "agora has no profiling endpoint"),
    ("RobotsFile", &["ATHENS_ROBOTS_FILE"], "robots.txt", "agora serves no robots.txt"),
    ("HomeTemplatePath", &["ATHENS_HOME_TEMPLATE_PATH"], "/var/lib/athens/home.html", "agora has no home page template"),
    ("ForceSSL", &["PROXY_FORCE_SSL"], "false", "agora does not redirect HTTP to HTTPS; serve HTTPS only (listen = \"\", [tls]) or redirect at the load balancer"),
    ("ValidatorHook", &["ATHENS_PROXY_VALIDATOR"], "", "agora's validation webhook sends another request body (module, version, kind, go_mod or zip_hash); adapt the hook, then set validation.url"),
    ("NETRCPath", &["ATHENS_NETRC_PATH"], "", "git reads ~/.netrc of agora's user: install the file there (or use [[git.credentials]] with password_file)"),
    ("HGRCPath", &["ATHENS_HGRC_PATH"], "", "agora fetches from git repositories only, not Mercurial"),
    ("TraceExporter", &["ATHENS_TRACE_EXPORTER"], "", "agora exports no traces; use its logs and /metrics"),
    ("TraceExporterURL", &["ATHENS_TRACE_EXPORTER_URL"], "http://localhost:4317", "agora exports no traces"),
    ("TraceSamplingFraction", &["ATHENS_TRACE_SAMPLING_FRACTION"], "1.0", "agora exports no traces"),
    ("StatsExporter", &["ATHENS_STATS_EXPORTER"], "prometheus", "agora always serves Prometheus metrics at /metrics"),
    ("ContentCacheControl", &["ATHENS_CONTENT_CACHE_CONTROL"], "", "agora sets Cache-Control itself (immutable for versions, short for lists)"),
    ("IndexType", &["ATHENS_INDEX_TYPE"], "none", "agora keeps no separate module index"),
];

impl Translator<'_> {
    fn note(&mut self, kind: NoteKind, setting: impl fmt::Display, message: impl Into<String>) {
        self.notes.push(Note {
            kind,
            setting: setting.to_string(),
            message: message.into(),
        });
    }

    fn unmapped(&mut self, setting: impl fmt::Display, why: impl Into<String>) {
        self.note(NoteKind::NotMapped, setting, why);
    }

    fn set(&mut self, path: &str, value: impl Into<Value>) {
        set_path(&mut self.out, path, value.into());
    }

    fn run(&mut self, opts: &Options) -> Result<()> {
        self.set("data_dir", opts.data_dir.display().to_string());
        self.listen()?;
        self.storage(opts)?;
        self.go_env_and_sums()?;
        self.download_rules()?;
        self.basic_auth()?;
        self.github_token()?;
        self.logging()?;
        self.timeouts_and_workers()?;
        self.single_flight()?;
        self.network_mode()?;
        for (path, vars, default, why) in UNMAPPED {
            let shown = self.raw(path, vars)?;
            if let Some(src) = shown.filter(|s| s.value != *default) {
                self.unmapped(src.from, *why);
            }
        }
        // The whole index section only matters with IndexType (reported above).
        self.athens.skip("Index");
        for key in self.athens.unread() {
            self.unmapped(key, "not an Athens setting (Athens ignores it too)");
        }
        let unknown: Vec<String> = self
            .athens
            .env
            .keys()
            .filter(|k| k.starts_with("ATHENS_") && !ATHENS_VARIABLES.contains(&k.as_str()))
            // The index databases are never mapped; their variables need no word.
            .filter(|k| !k.starts_with("ATHENS_INDEX_"))
            .cloned()
            .collect();
        for var in unknown {
            let why = if var == "ATHENS_GOPROXY" {
                "not an Athens variable: Athens' go command takes GOPROXY from GoBinaryEnvVars (ATHENS_GO_BINARY_ENV_VARS='GOPROXY=...')"
            } else {
                "not an Athens variable (Athens ignores it too)"
            };
            self.unmapped(var, why);
        }
        Ok(())
    }

    /// Any scalar as text, for comparing with a default.
    fn raw(&mut self, path: &str, vars: &[&str]) -> Result<Option<Src<String>>> {
        let file = self.athens.file_value(path);
        if let Some((var, v)) = self.athens.env_value(vars) {
            return Ok(Some(Src {
                value: v,
                from: Origin::Env(var),
            }));
        }
        Ok(file.map(|(key, v)| Src {
            value: match v {
                Value::String(s) => s,
                Value::Float(f) => format!("{f:?}"),
                other => other.to_string(),
            },
            from: Origin::File(key),
        }))
    }

    /// `Port` (`:3000`, `3000`, `host:3000`; `ATHENS_PORT` beats `PORT`) and the TLS files.
    fn listen(&mut self) -> Result<()> {
        let port = self.athens.text("Port", &["ATHENS_PORT", "PORT"])?;
        let (raw, from) = match &port {
            Some(p) => (p.value.clone(), p.from.to_string()),
            None => (DEFAULT_PORT.to_owned(), "Port".to_owned()),
        };
        let addr = listen_address(&raw).unwrap_or_else(|why| {
            self.unmapped(&from, format!("{why}; listening on 0.0.0.0:3000"));
            "0.0.0.0:3000".to_owned()
        });
        let cert = self.athens.text("TLSCertFile", &["ATHENS_TLSCERT_FILE"])?;
        let key = self.athens.text("TLSKeyFile", &["ATHENS_TLSKEY_FILE"])?;
        match (cert, key) {
            (Some(c), Some(k)) => {
                // Athens serves HTTPS only on its port when both files are set.
                self.set("listen", "");
                self.set("tls.listen", addr);
                self.set("tls.cert_file", c.value);
                self.set("tls.key_file", k.value);
            }
            (None, None) => self.set("listen", addr),
            (Some(one), None) | (None, Some(one)) => {
                self.unmapped(
                    one.from,
                    "Athens needs both TLSCertFile and TLSKeyFile for HTTPS; serving plain HTTP",
                );
                self.set("listen", addr);
            }
        }
        self.unix_socket()?;
        self.path_prefix()
    }

    /// `UnixSocket`: the plain listener becomes that socket (agora serves HTTPS on TCP only).
    fn unix_socket(&mut self) -> Result<()> {
        let Some(socket) = self
            .athens
            .text("UnixSocket", &["ATHENS_UNIX_SOCKET"])?
            .filter(|s| !s.value.is_empty())
        else {
            return Ok(());
        };
        let listen = format!("{}{}", agora_server::listen::UNIX_SCHEME, socket.value);
        if self.out.get("tls").is_some() {
            self.unmapped(
                socket.from,
                "agora serves HTTPS (TLSCertFile, TLSKeyFile) on TCP only, not on a Unix socket",
            );
        } else if let Err(e) = listen.parse::<agora_server::ListenAddr>() {
            self.unmapped(socket.from, format!("{e}; listening on TCP"));
        } else {
            self.set("listen", listen);
        }
        Ok(())
    }

    /// `PathPrefix` (`/athens`): the same in agora, without a trailing `/`.
    fn path_prefix(&mut self) -> Result<()> {
        let Some(prefix) = self
            .athens
            .text("PathPrefix", &["ATHENS_PATH_PREFIX"])?
            .filter(|p| !p.value.is_empty())
        else {
            return Ok(());
        };
        let trimmed = prefix.value.trim_end_matches('/');
        match agora_server::PathPrefix::new(trimmed) {
            Ok(p) => self.set("server.path_prefix", p.to_string()),
            Err(e) => self.unmapped(prefix.from, format!("{e}; serving at the root path")),
        }
        Ok(())
    }

    fn storage(&mut self, opts: &Options) -> Result<()> {
        let kind = self
            .athens
            .text("StorageType", &["ATHENS_STORAGE_TYPE"])?
            .map(|s| s.value)
            .unwrap_or_else(|| "memory".into());
        let backends = [
            "CDN",
            "Disk",
            "GCP",
            "Minio",
            "Mongo",
            "S3",
            "AzureBlob",
            "External",
        ];
        let selected = match kind.as_str() {
            "disk" => "Disk",
            "gcp" => "GCP",
            "minio" => "Minio",
            "mongo" => "Mongo",
            "s3" => "S3",
            "azureblob" => "AzureBlob",
            "external" => "External",
            _ => "",
        };
        for b in backends.iter().filter(|b| **b != selected) {
            self.athens.skip(&format!("Storage.{b}"));
        }
        match kind.as_str() {
            "memory" => self.set("storage.backend", "memory"),
            "disk" => {
                self.set("storage.backend", "local");
                let root = self
                    .athens
                    .text("Storage.Disk.RootPath", &["ATHENS_DISK_STORAGE_ROOT"])?;
                let root = root.map(|r| r.value).unwrap_or_default();
                self.note(
                    NoteKind::Action,
                    "Storage.Disk.RootPath",
                    format!(
                        "agora keeps its own layout in data_dir ({}); copy Athens' modules in with: agora import {} --config agora.toml",
                        opts.data_dir.display(),
                        if root.is_empty() { "ATHENS_DISK_ROOT" } else { &root }
                    ),
                );
            }
            "s3" => self.s3()?,
            "minio" => self.minio()?,
            "gcp" => self.gcp()?,
            "azureblob" => self.azure()?,
            other => {
                self.athens.skip(&format!("Storage.{selected}"));
                self.set("storage.backend", "local");
                let why = match other {
                    "mongo" => "agora cannot store modules in MongoDB".to_owned(),
                    "external" => "agora cannot use Athens' external storage protocol".to_owned(),
                    _ => format!("unknown Athens storage type {other:?}"),
                };
                self.unmapped(
                    "StorageType",
                    format!(
                        "{why}; agora stores modules in data_dir (local); warm it through agora or import a GOPROXY tree with agora import"
                    ),
                );
            }
        }
        Ok(())
    }

    fn s3(&mut self) -> Result<()> {
        self.set("storage.backend", "s3");
        let a = &mut self.athens;
        let bucket = a.text("Storage.S3.Bucket", &["ATHENS_S3_BUCKET_NAME"])?;
        let region = a.text("Storage.S3.Region", &["AWS_REGION"])?;
        let endpoint = a.text("Storage.S3.Endpoint", &["AWS_ENDPOINT"])?;
        let path_style = a.boolean("Storage.S3.ForcePathStyle", &["AWS_FORCE_PATH_STYLE"])?;
        let key = a.text("Storage.S3.Key", &["AWS_ACCESS_KEY_ID"])?;
        let secret = a.text("Storage.S3.Secret", &["AWS_SECRET_ACCESS_KEY"])?;
        let token = a.text("Storage.S3.Token", &["AWS_SESSION_TOKEN"])?;
        let default_chain = a.boolean("Storage.S3.UseDefaultConfiguration", &[])?;
        let creds_endpoint = a.text(
            "Storage.S3.CredentialsEndpoint",
            &["AWS_CREDENTIALS_ENDPOINT"],
        )?;
        let relative_uri = a.text(
            "Storage.S3.AwsContainerCredentialsRelativeURI",
            &["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"],
        )?;
        if let Some(b) = bucket {
            self.set("storage.s3.bucket", b.value);
        }
        if let Some(r) = region {
            self.set("storage.s3.region", r.value);
        }
        if let Some(e) = endpoint.filter(|e| !e.value.is_empty()) {
            let url = if e.value.contains("://") {
                e.value
            } else {
                format!("https://{}", e.value)
            };
            if url.starts_with("http://") {
                self.set("storage.s3.allow_http", true);
            }
            self.set("storage.s3.endpoint", url);
        }
        // The AWS SDK Athens uses asks for virtual-hosted-style unless told otherwise.
        let path_style = path_style.map(|p| p.value).unwrap_or(false);
        self.set("storage.s3.virtual_hosted_style", !path_style);
        let use_chain = default_chain.is_some_and(|d| d.value);
        match (key, secret) {
            // Without static keys agora uses the AWS chain, which reads the same variables.
            _ if use_chain => {}
            (Some(k), Some(s)) if !k.from.is_env() || !s.from.is_env() => {
                self.set("storage.s3.access_key_id", k.value);
                self.set("storage.s3.secret_access_key_env", "AWS_SECRET_ACCESS_KEY");
                if !s.from.is_env() {
                    self.note(
                        NoteKind::Action,
                        s.from,
                        "the secret is not copied: set AWS_SECRET_ACCESS_KEY in agora's environment",
                    );
                }
            }
            _ => {}
        }
        if let Some(t) = token.filter(|t| !t.value.is_empty() && !t.from.is_env()) {
            self.unmapped(
                t.from,
                "agora takes no static session token; leave the keys out and set AWS_SESSION_TOKEN with the AWS_* variables (the AWS credential chain)",
            );
        }
        for c in [creds_endpoint, relative_uri].into_iter().flatten() {
            if !c.value.is_empty() && !c.from.is_env() {
                self.unmapped(
                    c.from,
                    "set AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI in agora's environment; the AWS credential chain reads them",
                );
            }
        }
        Ok(())
    }

    fn minio(&mut self) -> Result<()> {
        self.set("storage.backend", "s3");
        let a = &mut self.athens;
        let endpoint = a.text("Storage.Minio.Endpoint", &["ATHENS_MINIO_ENDPOINT"])?;
        let key = a.text("Storage.Minio.Key", &["ATHENS_MINIO_ACCESS_KEY_ID"])?;
        let secret = a.text("Storage.Minio.Secret", &["ATHENS_MINIO_SECRET_ACCESS_KEY"])?;
        let ssl = a.boolean("Storage.Minio.EnableSSL", &["ATHENS_MINIO_USE_SSL"])?;
        let bucket = a.text("Storage.Minio.Bucket", &["ATHENS_MINIO_BUCKET_NAME"])?;
        let region = a.text("Storage.Minio.Region", &["ATHENS_MINIO_REGION"])?;
        let ssl = ssl.map(|s| s.value).unwrap_or(true);
        if let Some(e) = endpoint {
            let host = e
                .value
                .trim_start_matches("https://")
                .trim_start_matches("http://");
            let scheme = if ssl { "https" } else { "http" };
            self.set("storage.s3.endpoint", format!("{scheme}://{host}"));
        }
        if !ssl {
            self.set("storage.s3.allow_http", true);
        }
        self.set(
            "storage.s3.bucket",
            bucket.map(|b| b.value).unwrap_or_else(|| "gomods".into()),
        );
        if let Some(r) = region.filter(|r| !r.value.is_empty()) {
            self.set("storage.s3.region", r.value);
        }
        if let Some(k) = key {
            self.set("storage.s3.access_key_id", k.value);
        }
        if let Some(s) = secret {
            self.set(
                "storage.s3.secret_access_key_env",
                "ATHENS_MINIO_SECRET_ACCESS_KEY",
            );
            if !s.from.is_env() {
                self.note(
                    NoteKind::Action,
                    s.from,
                    "the secret is not copied: set ATHENS_MINIO_SECRET_ACCESS_KEY in agora's environment",
                );
            }
        }
        Ok(())
    }

    fn gcp(&mut self) -> Result<()> {
        self.set("storage.backend", "gcs");
        let a = &mut self.athens;
        let bucket = a.text("Storage.GCP.Bucket", &["ATHENS_STORAGE_GCP_BUCKET"])?;
        // Bucket names are global: the project is not needed to reach one.
        a.text("Storage.GCP.ProjectID", &["GOOGLE_CLOUD_PROJECT"])?;
        let json = a.text("Storage.GCP.JSONKey", &["ATHENS_STORAGE_GCP_JSON_KEY"])?;
        if let Some(b) = bucket {
            self.set("storage.gcs.bucket", b.value);
        }
        if let Some(j) = json.filter(|j| !j.value.is_empty()) {
            self.note(
                NoteKind::Action,
                j.from,
                "the key is not copied: base64-decode it into a file only agora can read and set storage.gcs.service_account_file (or use GOOGLE_APPLICATION_CREDENTIALS)",
            );
        }
        Ok(())
    }

    fn azure(&mut self) -> Result<()> {
        self.set("storage.backend", "azure");
        let a = &mut self.athens;
        let account = a.text(
            "Storage.AzureBlob.AccountName",
            &["ATHENS_AZURE_ACCOUNT_NAME"],
        )?;
        let key = a.text(
            "Storage.AzureBlob.AccountKey",
            &["ATHENS_AZURE_ACCOUNT_KEY"],
        )?;
        let container = a.text(
            "Storage.AzureBlob.ContainerName",
            &["ATHENS_AZURE_CONTAINER_NAME"],
        )?;
        let identity = a.text(
            "Storage.AzureBlob.ManagedIdentityResourceId",
            &["ATHENS_AZURE_MANAGED_IDENTITY_RESOURCE_ID"],
        )?;
        let scope = a.text(
            "Storage.AzureBlob.CredentialScope",
            &["ATHENS_AZURE_CREDENTIAL_SCOPE"],
        )?;
        if let Some(v) = account {
            self.set("storage.azure.account", v.value);
        }
        if let Some(v) = container {
            self.set("storage.azure.container", v.value);
        }
        if let Some(k) = key.filter(|k| !k.value.is_empty()) {
            self.set("storage.azure.access_key_env", "ATHENS_AZURE_ACCOUNT_KEY");
            if !k.from.is_env() {
                self.note(
                    NoteKind::Action,
                    k.from,
                    "the key is not copied: set ATHENS_AZURE_ACCOUNT_KEY in agora's environment",
                );
            }
        }
        if let Some(i) = identity.filter(|i| !i.value.is_empty()) {
            self.unmapped(
                i.from,
                "agora uses the Azure credential chain when no key is set; select the identity with AZURE_CLIENT_ID",
            );
        }
        if let Some(s) = scope.filter(|s| !s.value.is_empty()) {
            self.unmapped(s.from, "agora has no credential scope setting");
        }
        Ok(())
    }

    /// `GoBinaryEnvVars` (what Athens' go command ran with: GOPROXY, GOPRIVATE, ...),
    /// `NoSumPatterns` and `SumDBs`.
    fn go_env_and_sums(&mut self) -> Result<()> {
        let vars = self
            .athens
            .list("GoBinaryEnvVars", &["ATHENS_GO_BINARY_ENV_VARS"], ';')?;
        let (vars, from) = match vars {
            Some(v) => (v.value, v.from.to_string()),
            None => (
                vec!["GOPROXY=direct".to_owned()],
                "GoBinaryEnvVars".to_owned(),
            ),
        };
        let mut proxy = None;
        let mut nosumdb: Vec<String> = Vec::new();
        for var in &vars {
            let Some((name, value)) = var.split_once('=') else {
                bail!("{from}: {var:?} is not NAME=VALUE");
            };
            let (name, value) = (name.trim(), value.trim());
            let list = || -> Vec<Value> {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect()
            };
            match name {
                "GOPROXY" => proxy = Some(value.to_owned()),
                "GOPRIVATE" => self.set("routing.private", list()),
                "GONOPROXY" => self.set("routing.noproxy", list()),
                "GOINSECURE" => self.set("routing.insecure", list()),
                "GONOSUMDB" => nosumdb.extend(value.split(',').map(|s| s.trim().to_owned())),
                "GOSUMDB" => {
                    let mut f = value.split_whitespace();
                    self.set("sumdb.name", f.next().unwrap_or("off"));
                    if let Some(url) = f.next() {
                        self.set("sumdb.url", url);
                    }
                }
                // Harmless for agora: it runs no go command and fetches over its own client.
                "GOFLAGS" | "GO111MODULE" | "GOPATH" | "GOCACHE" | "CGO_ENABLED" => {}
                other => self.unmapped(
                    format!("{from} {other}"),
                    "agora runs no go command; this variable has no agora equivalent",
                ),
            }
        }
        // Athens' go command inherits no GOPROXY: without one it uses the go default.
        let proxy = proxy.unwrap_or_else(|| GO_DEFAULT_PROXY.to_owned());
        self.set("upstream.proxy", proxy);

        if let Some(p) = self
            .athens
            .list("NoSumPatterns", &["ATHENS_GONOSUM_PATTERNS"], ',')?
        {
            nosumdb.extend(p.value);
        }
        nosumdb.retain(|p| !p.is_empty());
        let mut seen = BTreeSet::new();
        nosumdb.retain(|p| seen.insert(p.clone()));
        if !nosumdb.is_empty() {
            self.set(
                "routing.nosumdb",
                nosumdb.into_iter().map(Value::String).collect::<Vec<_>>(),
            );
        }

        let sums = self.athens.list("SumDBs", &["ATHENS_SUM_DBS"], ',')?;
        if let Some(s) = sums {
            let mut dbs = s.value.into_iter();
            match dbs.next() {
                None => self.set("sumdb.name", "off"),
                Some(url) if url.trim_end_matches('/') == DEFAULT_SUMDB => {}
                Some(url) => self.sumdb(&s.from, &url),
            }
            for extra in dbs {
                self.unmapped(
                    &s.from,
                    format!("agora proxies one checksum database; {extra} is left out"),
                );
            }
        }
        Ok(())
    }

    /// One checksum database by URL: its host is its name, as in the go command's `GOSUMDB`.
    fn sumdb(&mut self, from: &Origin, url: &str) {
        let trimmed = url.trim_end_matches('/');
        let host = trimmed
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or(trimmed);
        let name = host.split('/').next().unwrap_or(host).to_owned();
        self.set("sumdb.name", name.as_str());
        let full = if trimmed.contains("://") {
            trimmed.to_owned()
        } else {
            format!("https://{trimmed}")
        };
        let probe = if full == format!("https://{name}") {
            name.clone()
        } else {
            self.set("sumdb.url", full.as_str());
            format!("{name} {full}")
        };
        // Athens only proxies; agora verifies too, which needs the database's key.
        if !matches!(agora_sumdb::Database::parse(&probe), Ok(Some(_))) {
            self.set("sumdb.verify", false);
            self.unmapped(
                from,
                format!(
                    "agora does not know the key of {name}: it proxies it without verifying; put its key in sumdb.name (name+hash+keydata) and remove sumdb.verify = false to verify"
                ),
            );
        }
    }

    /// `DownloadMode`/`DownloadURL` (or the download-mode file they point to), the filter file and
    /// `GlobalEndpoint`, together: their rules are ordered into agora's one first-match list.
    fn download_rules(&mut self) -> Result<()> {
        let mode = self
            .athens
            .text("DownloadMode", &["ATHENS_DOWNLOAD_MODE"])?;
        let url = self.athens.text("DownloadURL", &["ATHENS_DOWNLOAD_URL"])?;
        let (mode_text, mode_from) = match &mode {
            Some(m) => (m.value.clone(), m.from.to_string()),
            None => ("sync".to_owned(), "DownloadMode".to_owned()),
        };
        let mut file = if let Some(path) = mode_text.strip_prefix("file:") {
            let path = self.resolve(path);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "{mode_from}: reading the download mode file {}",
                    path.display()
                )
            })?;
            parse_download_file(&text)
                .with_context(|| format!("{mode_from}: download mode file {}", path.display()))?
        } else if let Some(b64) = mode_text.strip_prefix("custom:") {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| anyhow!("{mode_from}: custom: is not valid base64"))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| anyhow!("{mode_from}: custom: is not UTF-8 text"))?;
            parse_download_file(&text).with_context(|| format!("{mode_from}: custom: file"))?
        } else {
            DownloadFile {
                mode: mode_text.clone(),
                url: String::new(),
                blocks: Vec::new(),
            }
        };
        if file.url.is_empty() {
            if let Some(u) = &url {
                file.url = u.value.clone();
            }
        }

        let global = self
            .athens
            .text("GlobalEndpoint", &["ATHENS_GLOBAL_ENDPOINT"])?;
        let filter = self.athens.text("FilterFile", &["ATHENS_FILTER_FILE"])?;
        let mut rules: Vec<Table> = Vec::new();
        let mut uses_global = false;
        if let Some(f) = filter.filter(|f| !f.value.is_empty()) {
            let path = self.resolve(&f.value);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!("{}: reading the filter file {}", f.from, path.display())
            })?;
            let parsed = parse_filter_file(&text)
                .with_context(|| format!("{}: filter file {}", f.from, path.display()))?;
            let endpoint = global
                .as_ref()
                .map(|g| g.value.clone())
                .unwrap_or_else(|| DEFAULT_GLOBAL_ENDPOINT.to_owned());
            uses_global = parsed.uses_direct();
            self.filter(&parsed, &endpoint, &file, &mut rules)?;
        }
        if let Some(g) = global.filter(|g| !uses_global && g.value != DEFAULT_GLOBAL_ENDPOINT) {
            self.unmapped(
                g.from,
                "Athens sends only modules of `D` filter lines there, and the filter file has none",
            );
        }

        for block in &file.blocks {
            if let Some(rule) = self.download_rule(
                &block.pattern,
                &block.mode,
                &block.url,
                &file.url,
                &mode_from,
            ) {
                rules.push(rule);
            }
        }
        if file.mode != "sync" {
            if let Some(rule) = self.download_rule("*", &file.mode, "", &file.url, &mode_from) {
                rules.push(rule);
            }
        }
        if !rules.is_empty() {
            self.out.insert(
                "download".into(),
                Value::Array(rules.into_iter().map(Value::Table).collect()),
            );
        }
        Ok(())
    }

    /// One `[[download]]` rule from an Athens mode (`None` when it cannot be expressed).
    fn download_rule(
        &mut self,
        pattern: &str,
        mode: &str,
        url: &str,
        default_url: &str,
        from: &str,
    ) -> Option<Table> {
        let url = if url.is_empty() { default_url } else { url };
        let shown = if pattern == "*" {
            from.to_owned()
        } else {
            format!("{from} download {pattern:?}")
        };
        let mode = match mode {
            "sync" | "async" | "none" => mode,
            "redirect" | "async_redirect" if url.is_empty() => {
                self.unmapped(
                    shown,
                    "redirect without a downloadURL; Athens could not redirect either",
                );
                return None;
            }
            "redirect" => "redirect",
            "async_redirect" => {
                self.unmapped(
                    &shown,
                    "async_redirect: agora redirects but does not also fetch in the background (mapped to redirect)",
                );
                "redirect"
            }
            other => {
                self.unmapped(shown, format!("unknown download mode {other:?}"));
                return None;
            }
        };
        let mut rule = Table::new();
        rule.insert("pattern".into(), pattern.into());
        rule.insert("mode".into(), mode.into());
        if mode == "redirect" {
            rule.insert("url".into(), url.into());
        }
        Some(rule)
    }

    /// The filter file: `-` lines become deny rules, `+` allow rules, `D` allow rules plus a
    /// redirect to `GlobalEndpoint` (what Athens answers for them: 303 to the endpoint, nothing
    /// stored). Athens picks the deepest matching path; agora the first matching rule, so rules
    /// are written deepest first.
    fn filter(
        &mut self,
        parsed: &FilterFile,
        endpoint: &str,
        modes: &DownloadFile,
        downloads: &mut Vec<Table>,
    ) -> Result<()> {
        let mut lines: Vec<&FilterLine> =
            parsed.lines.iter().filter(|l| !l.path.is_empty()).collect();
        // Stable: lines of one depth keep their order.
        lines.sort_by_key(|l| std::cmp::Reverse(l.depth()));
        let mut rules = Vec::new();
        for line in &lines {
            let action = if line.sign == '-' { "deny" } else { "allow" };
            let reason = format!("Athens filter file, line {}: {}", line.number, line.text);
            if line.versions.is_empty() {
                rules.push(filter_rule(&line.path, "", action, &reason));
            } else {
                for q in &line.versions {
                    match qualifier_constraint(q) {
                        Some(c) => rules.push(filter_rule(&line.path, &c, action, &reason)),
                        None => self.unmapped(
                            format!("FilterFile line {}", line.number),
                            format!(
                                "version qualifier {q:?} is not one Athens understands; left out"
                            ),
                        ),
                    }
                }
            }
            // Download rules: `D` redirects; a deeper `+`/`-` under a `D` line must not inherit
            // the redirect, so it gets the mode the download-mode file gives it.
            if line.sign == 'D' {
                if !line.versions.is_empty() {
                    self.unmapped(
                        format!("FilterFile line {}", line.number),
                        "agora redirects whole modules, not versions: every version of it goes to GlobalEndpoint",
                    );
                }
                let mut rule = Table::new();
                rule.insert("pattern".into(), line.path.clone().into());
                rule.insert("mode".into(), "redirect".into());
                rule.insert("url".into(), endpoint.into());
                downloads.push(rule);
            } else if line.sign == '+' && parsed.under_direct(&line.path) {
                let (mode, url) = modes.mode_for(&line.path);
                if let Some(rule) =
                    self.download_rule(&line.path, &mode, &url, &modes.url, "FilterFile")
                {
                    downloads.push(rule);
                }
            }
        }
        match parsed.root {
            Some('-') => self.set("filter.default", "deny"),
            Some('D') => {
                let mut rule = Table::new();
                rule.insert("pattern".into(), "*".into());
                rule.insert("mode".into(), "redirect".into());
                rule.insert("url".into(), endpoint.into());
                downloads.push(rule);
            }
            _ => {}
        }
        if !rules.is_empty() {
            set_path(
                &mut self.out,
                "filter.rules",
                Value::Array(rules.into_iter().map(Value::Table).collect()),
            );
        }
        Ok(())
    }

    /// Athens' basic auth becomes a token whose secret is the password (the go command sends it
    /// as the password of basic auth, which agora takes as the token), and every module needs it.
    fn basic_auth(&mut self) -> Result<()> {
        let user = self.athens.text("BasicAuthUser", &["BASIC_AUTH_USER"])?;
        let pass = self.athens.text("BasicAuthPass", &["BASIC_AUTH_PASS"])?;
        let (Some(user), Some(pass)) = (
            user.filter(|u| !u.value.is_empty()),
            pass.filter(|p| !p.value.is_empty()),
        ) else {
            // Athens turns basic auth on only when both are set.
            return Ok(());
        };
        let name = if agora_name_ok(&user.value) {
            user.value.clone()
        } else {
            "athens-basic-auth".to_owned()
        };
        let mut token = Table::new();
        token.insert("name".into(), name.into());
        token.insert(
            "hash".into(),
            agora_access::token::hash_secret(&pass.value).into(),
        );
        set_path(
            &mut self.out,
            "auth.tokens",
            Value::Array(vec![Value::Table(token)]),
        );
        self.set("access.default", vec![Value::from("authenticated")]);
        self.note(
            NoteKind::Action,
            pass.from,
            "kept as a token hash (clients' .netrc keeps working; agora ignores the login); a password is weaker than agora's tokens: issue tokens with `agora token add` and remove this one",
        );
        Ok(())
    }

    /// Athens turns a GitHub token into a `.netrc` entry for github.com; agora hands per-host
    /// credentials to git itself, read from the same variable.
    fn github_token(&mut self) -> Result<()> {
        let Some(t) = self
            .athens
            .text("GithubToken", &["ATHENS_GITHUB_TOKEN"])?
            .filter(|t| !t.value.is_empty())
        else {
            return Ok(());
        };
        let mut cred = Table::new();
        cred.insert("host".into(), "github.com".into());
        cred.insert("username".into(), "x-access-token".into());
        cred.insert("password_env".into(), "ATHENS_GITHUB_TOKEN".into());
        set_path(
            &mut self.out,
            "git.credentials",
            Value::Array(vec![Value::Table(cred)]),
        );
        if !t.from.is_env() {
            self.note(
                NoteKind::Action,
                t.from,
                "the token is not copied: set ATHENS_GITHUB_TOKEN in agora's environment",
            );
        }
        Ok(())
    }

    fn logging(&mut self) -> Result<()> {
        if let Some(l) = self.athens.text("LogLevel", &["ATHENS_LOG_LEVEL"])? {
            let level = match l.value.to_ascii_lowercase().as_str() {
                "debug" => None, // Athens' default; agora's is info.
                "trace" => Some("trace"),
                "info" => Some("info"),
                "warn" | "warning" => Some("warn"),
                "error" | "fatal" | "panic" => Some("error"),
                _ => {
                    self.unmapped(l.from, format!("unknown log level {:?}", l.value));
                    None
                }
            };
            if let Some(level) = level {
                self.set("log.level", level);
            }
        }
        if let Some(f) = self.athens.text("LogFormat", &["ATHENS_LOG_FORMAT"])? {
            match f.value.as_str() {
                "json" => self.set("log.format", "json"),
                "plain" | "" => {}
                other => self.unmapped(f.from, format!("unknown log format {other:?}")),
            }
        }
        Ok(())
    }

    fn timeouts_and_workers(&mut self) -> Result<()> {
        let seconds = |n: i64| format!("{n}s");
        if let Some(t) = self.athens.int("Timeout", &["ATHENS_TIMEOUT"])? {
            if t.value != 300 {
                check_positive(&t)?;
                self.set("upstream.timeout", seconds(t.value));
            }
        }
        if let Some(t) = self.athens.int("StashTimeout", &["ATHENS_STASH_TIMEOUT"])? {
            if t.value != 600 {
                check_positive(&t)?;
                self.set("upstream.zip_timeout", seconds(t.value));
            }
        }
        if let Some(t) = self
            .athens
            .int("ShutdownTimeout", &["ATHENS_SHUTDOWN_TIMEOUT"])?
        {
            if t.value != 60 {
                check_positive(&t)?;
                self.set("server.shutdown_timeout", seconds(t.value));
            }
        }
        if let Some(w) = self.athens.int("GoGetWorkers", &["ATHENS_GOGET_WORKERS"])? {
            if w.value != 10 {
                check_positive(&w)?;
                self.set("limits.git_fetches", w.value);
            }
        }
        Ok(())
    }

    fn single_flight(&mut self) -> Result<()> {
        let kind = self
            .athens
            .text("SingleFlightType", &["ATHENS_SINGLE_FLIGHT_TYPE"])?
            .map(|k| k.value)
            .unwrap_or_else(|| "memory".into());
        for s in ["Etcd", "RedisSentinel", "GCP"] {
            self.athens.skip(&format!("SingleFlight.{s}"));
        }
        match kind.as_str() {
            "memory" => self.athens.skip("SingleFlight.Redis"),
            "redis" => {
                let a = &mut self.athens;
                let endpoint = a.text("SingleFlight.Redis.Endpoint", &["ATHENS_REDIS_ENDPOINT"])?;
                let password = a.text("SingleFlight.Redis.Password", &["ATHENS_REDIS_PASSWORD"])?;
                let cluster = a.boolean("SingleFlight.Redis.Cluster", &["ATHENS_REDIS_CLUSTER"])?;
                // Athens' lock timings suit its 15-minute locks; agora's lock is renewed while
                // a fetch runs, so its short defaults stay.
                self.athens.skip("SingleFlight.Redis.LockConfig");
                let endpoint = endpoint
                    .map(|e| e.value)
                    .unwrap_or_else(|| "127.0.0.1:6379".into());
                let first = endpoint.split(',').next().unwrap_or_default().trim();
                let url = if first.contains("://") {
                    first.to_owned()
                } else {
                    format!("redis://{first}")
                };
                match url.split_once("://").and_then(|(scheme, rest)| {
                    rest.rsplit_once('@').map(|(_, host)| format!("{scheme}://{host}"))
                }) {
                    Some(without) => {
                        self.note(
                            NoteKind::Action,
                            "SingleFlight.Redis.Endpoint",
                            "the credentials in the endpoint are not copied: add them to redis.url (redis://:PASSWORD@host:port)",
                        );
                        self.set("redis.url", without);
                    }
                    None => self.set("redis.url", url),
                }
                if let Some(p) = password.filter(|p| !p.value.is_empty()) {
                    self.note(
                        NoteKind::Action,
                        p.from,
                        "the password is not copied: agora takes it in redis.url (redis://:PASSWORD@host:port)",
                    );
                }
                if let Some(c) = cluster.filter(|c| c.value) {
                    self.unmapped(c.from, "agora's lock needs one Redis, not a cluster");
                }
            }
            "gcp" | "azureblob" => self.note(
                NoteKind::NotMapped,
                "SingleFlightType",
                format!(
                    "{kind}: agora's stores are write-once everywhere; for one fetch per artifact across replicas add [redis]"
                ),
            ),
            other => self.unmapped(
                "SingleFlightType",
                format!("{other}: agora's shared lock is one Redis ([redis] url)"),
            ),
        }
        Ok(())
    }

    fn network_mode(&mut self) -> Result<()> {
        let Some(m) = self.athens.text("NetworkMode", &["ATHENS_NETWORK_MODE"])? else {
            return Ok(());
        };
        match m.value.as_str() {
            "strict" => {}
            // What agora does anyway: a list is served stale when upstream fails.
            "fallback" => {}
            "offline" => self.unmapped(
                m.from,
                "agora always asks upstream for lists (serving a stale one when it fails); to serve from storage only, add [[download]] pattern = \"*\" mode = \"none\"",
            ),
            other => bail!("{}: unknown network mode {other:?} (strict, offline, fallback)", m.from),
        }
        Ok(())
    }

    /// A file named in the Athens configuration: relative to the configuration's directory when
    /// it is not found where Athens was started.
    fn resolve(&self, path: &str) -> PathBuf {
        let p = PathBuf::from(path);
        if p.is_absolute() || p.exists() {
            p
        } else {
            self.base_dir.join(p)
        }
    }
}

fn check_positive(s: &Src<i64>) -> Result<()> {
    if s.value <= 0 {
        bail!("{}: must be a positive number", s.from);
    }
    Ok(())
}

fn agora_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'))
}

/// Athens' `Port` as a socket address agora can bind.
fn listen_address(port: &str) -> std::result::Result<String, String> {
    let port = port.trim();
    let (host, num) = match port.rsplit_once(':') {
        Some((h, n)) => (h.trim_start_matches('[').trim_end_matches(']'), n),
        None => ("", port),
    };
    let num: u16 = num
        .parse()
        .map_err(|_| format!("{port:?} is not a port or host:port"))?;
    let host = match host {
        "" => "0.0.0.0",
        "localhost" => "127.0.0.1",
        h if h.parse::<std::net::IpAddr>().is_ok() => h,
        h => {
            return Err(format!(
                "agora listens on an IP address, not the name {h:?}"
            ))
        }
    };
    let addr = if host.contains(':') {
        format!("[{host}]:{num}")
    } else {
        format!("{host}:{num}")
    };
    Ok(addr)
}

fn filter_rule(pattern: &str, versions: &str, action: &str, reason: &str) -> Table {
    let mut t = Table::new();
    t.insert("pattern".into(), pattern.into());
    if !versions.is_empty() {
        t.insert("versions".into(), versions.into());
    }
    t.insert("action".into(), action.into());
    t.insert("reason".into(), reason.into());
    t
}

/// An Athens version qualifier as an agora version constraint, following what Athens' matcher
/// does (not only what its comments say):
/// - `v1.2` / `v1.2.*` / `v1` match by prefix (`v1.2.` / `v1.`): the whole minor or major line;
/// - `v1.2.3` matches by prefix too; agora matches that release and its pre-releases;
/// - `~1.2.3`: `1.2.x` at least `1.2.3`;
/// - `^1.2.3`: Athens accepts any `1.y.z` with `y >= 2` (so `v1.2.0` too);
/// - `<1.2.3`: Athens includes `1.2.3` itself.
fn qualifier_constraint(q: &str) -> Option<String> {
    let q = q.trim().trim_end_matches('*');
    let num = |s: &str| s.parse::<u64>().ok();
    let parts =
        |s: &str| -> Option<Vec<u64>> { s.trim_end_matches('.').split('.').map(num).collect() };
    if let Some(rest) = q.strip_prefix('v') {
        let p = parts(rest)?;
        return match p.as_slice() {
            [maj] => Some(format!(">= v{maj}.0.0-0, < v{}.0.0-0", maj + 1)),
            [maj, min] => Some(format!(">= v{maj}.{min}.0-0, < v{maj}.{}.0-0", min + 1)),
            [maj, min, pat] => Some(format!(">= v{maj}.{min}.{pat}-0, <= v{maj}.{min}.{pat}")),
            _ => None,
        };
    }
    let (op, rest) = q.split_at(q.char_indices().nth(1)?.0);
    let [maj, min, pat] = parts(rest)?[..] else {
        return None;
    };
    match op {
        "~" => Some(format!(">= v{maj}.{min}.{pat}, < v{maj}.{}.0-0", min + 1)),
        "^" => Some(format!(">= v{maj}.{min}.0, < v{}.0.0-0", maj + 1)),
        "<" => Some(format!("<= v{maj}.{min}.{pat}")),
        _ => None,
    }
}

/// One line of an Athens filter file.
#[derive(Debug, PartialEq, Eq)]
struct FilterLine {
    number: usize,
    /// The line as written (for the rule's reason).
    text: String,
    sign: char,
    /// Module path prefix without surrounding slashes; empty for the whole-file default.
    path: String,
    versions: Vec<String>,
}

impl FilterLine {
    fn depth(&self) -> usize {
        self.path.split('/').count()
    }
}

#[derive(Debug, Default)]
struct FilterFile {
    /// A line with a sign alone: the default for every module.
    root: Option<char>,
    /// Path lines; a later line for the same path replaces an earlier one, as in Athens.
    lines: Vec<FilterLine>,
}

impl FilterFile {
    fn uses_direct(&self) -> bool {
        self.root == Some('D') || self.lines.iter().any(|l| l.sign == 'D')
    }

    /// Whether a shallower `D` line (or a `D` default) covers `path`.
    fn under_direct(&self, path: &str) -> bool {
        self.root == Some('D')
            || self.lines.iter().any(|l| {
                l.sign == 'D'
                    && l.path != path
                    && path.starts_with(&l.path)
                    && path.as_bytes().get(l.path.len()) == Some(&b'/')
            })
    }
}

/// Athens' filter file: `#` comments, blank lines, and `SIGN [PATH [VERSIONS]]` where SIGN is
/// `+`, `-` or `D` and VERSIONS a comma-separated list of qualifiers.
fn parse_filter_file(text: &str) -> Result<FilterFile> {
    let mut file = FilterFile::default();
    for (i, raw) in text.lines().enumerate() {
        let number = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let sign = match fields[0] {
            "+" => '+',
            "-" => '-',
            "D" => 'D',
            other => bail!("line {number}: {other:?} is not +, - or D"),
        };
        if fields.len() > 3 {
            bail!("line {number}: expected SIGN [PATH [VERSIONS]], found more fields");
        }
        let Some(path) = fields.get(1) else {
            file.root = Some(sign);
            continue;
        };
        let path = path.trim_matches('/').to_owned();
        if path.is_empty() {
            file.root = Some(sign);
            continue;
        }
        if path.contains(['*', '?', '[', '\\', ',']) {
            bail!("line {number}: {path:?} is not a module path prefix");
        }
        let versions = fields
            .get(2)
            .map(|v| {
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        file.lines.retain(|l| l.path != path);
        file.lines.push(FilterLine {
            number,
            text: line.to_owned(),
            sign,
            path,
            versions,
        });
    }
    Ok(file)
}

/// Athens' download-mode file.
#[derive(Debug, Default, PartialEq, Eq)]
struct DownloadFile {
    mode: String,
    url: String,
    blocks: Vec<DownloadBlock>,
}

#[derive(Debug, PartialEq, Eq)]
struct DownloadBlock {
    pattern: String,
    mode: String,
    url: String,
}

impl DownloadFile {
    /// The mode (and redirect URL) Athens gives a module path: the first matching block, else the
    /// file's own.
    fn mode_for(&self, module: &str) -> (String, String) {
        self.blocks
            .iter()
            .find(|b| agora_gomod::module::match_prefix_patterns(&b.pattern, module))
            .map(|b| (b.mode.clone(), b.url.clone()))
            .unwrap_or_else(|| (self.mode.clone(), String::new()))
    }
}

/// The HCL subset Athens' download-mode files use: `name = "string"` attributes and
/// `download "pattern" { ... }` blocks, with `#`, `//` and `/* */` comments.
fn parse_download_file(text: &str) -> Result<DownloadFile> {
    let tokens = hcl_tokens(text)?;
    let mut file = DownloadFile::default();
    let mut i = 0;
    let mut have_mode = false;
    while i < tokens.len() {
        let (line, tok) = &tokens[i];
        let Tok::Ident(name) = tok else {
            bail!("line {line}: expected an attribute or a download block");
        };
        match tokens.get(i + 1).map(|t| &t.1) {
            Some(Tok::Eq) => {
                let value = string_at(&tokens, i + 2)?;
                match name.as_str() {
                    "mode" => {
                        file.mode = value;
                        have_mode = true;
                    }
                    "downloadURL" => file.url = value,
                    other => bail!("line {line}: unknown attribute {other:?} (mode, downloadURL)"),
                }
                i += 3;
            }
            Some(Tok::Str(pattern)) if name == "download" => {
                if !matches!(tokens.get(i + 2).map(|t| &t.1), Some(Tok::Open)) {
                    bail!("line {line}: expected {{ after download {pattern:?}");
                }
                let mut block = DownloadBlock {
                    pattern: pattern.clone(),
                    mode: String::new(),
                    url: String::new(),
                };
                i += 3;
                loop {
                    match tokens.get(i) {
                        Some((_, Tok::Close)) => {
                            i += 1;
                            break;
                        }
                        Some((l, Tok::Ident(attr))) => {
                            if !matches!(tokens.get(i + 1).map(|t| &t.1), Some(Tok::Eq)) {
                                bail!("line {l}: expected = after {attr}");
                            }
                            let value = string_at(&tokens, i + 2)?;
                            match attr.as_str() {
                                "mode" => block.mode = value,
                                "downloadURL" => block.url = value,
                                other => bail!(
                                    "line {l}: unknown attribute {other:?} in download {:?}",
                                    block.pattern
                                ),
                            }
                            i += 3;
                        }
                        Some((l, _)) => bail!("line {l}: expected an attribute or }}"),
                        None => bail!("download {:?}: missing }}", block.pattern),
                    }
                }
                if block.mode.is_empty() {
                    bail!("download {:?}: mode is required", block.pattern);
                }
                file.blocks.push(block);
            }
            _ => bail!("line {line}: expected = or a download block after {name}"),
        }
    }
    if !have_mode {
        bail!("mode is required (sync, async, redirect, async_redirect, none)");
    }
    Ok(file)
}

fn string_at(tokens: &[(usize, Tok)], i: usize) -> Result<String> {
    match tokens.get(i) {
        Some((_, Tok::Str(s))) => Ok(s.clone()),
        Some((l, _)) => bail!("line {l}: expected a quoted string"),
        None => bail!("unexpected end of file: expected a quoted string"),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    Eq,
    Open,
    Close,
}

fn hcl_tokens(text: &str) -> Result<Vec<(usize, Tok)>> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let start = line;
                let mut prev = ' ';
                loop {
                    match chars.next() {
                        Some('/') if prev == '*' => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            prev = c;
                        }
                        None => bail!("line {start}: unterminated /* comment"),
                    }
                }
            }
            '=' => out.push((line, Tok::Eq)),
            '{' => out.push((line, Tok::Open)),
            '}' => out.push((line, Tok::Close)),
            '"' => {
                let start = line;
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(c @ ('"' | '\\')) => s.push(c),
                            _ => bail!("line {line}: unsupported escape in a string"),
                        },
                        Some('\n') | None => bail!("line {start}: unterminated string"),
                        Some(c) => s.push(c),
                    }
                }
                out.push((start, Tok::Str(s)));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut s = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_ascii_alphanumeric() || n == '_' || n == '-' {
                        s.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push((line, Tok::Ident(s)));
            }
            other => bail!("line {line}: unexpected {other:?}"),
        }
    }
    Ok(out)
}

fn set_path(root: &mut Table, path: &str, value: Value) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().expect("a path has a last part");
    let mut table = root;
    for part in parts {
        table = table
            .entry(part.to_owned())
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .expect("intermediate keys are tables");
    }
    table.insert(last.to_owned(), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DownloadModeConfig;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/athens")
            .join(name)
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn opts() -> Options {
        Options {
            data_dir: PathBuf::from("/var/lib/agora"),
        }
    }

    /// Translates, prints what a user would see (for failing tests), and loads the result with
    /// agora's real loader.
    fn translate_and_load(
        path: &Path,
        env: &BTreeMap<String, String>,
    ) -> (Translation, crate::config::Config) {
        let t = translate(path, env, &opts()).unwrap();
        eprintln!("{}", t.toml);
        for n in &t.notes {
            eprintln!("{n}");
        }
        let c = check_loads(&t.toml).unwrap_or_else(|e| panic!("{e:#}\n{}", t.toml));
        (t, c)
    }

    #[test]
    fn athens_dev_defaults_translate_without_a_loss() {
        let (t, c) = translate_and_load(&fixture("config.dev.toml"), &env(&[]));
        assert_eq!(
            t.notes,
            vec![],
            "every dev setting is mappable or at its default"
        );
        assert_eq!(c.storage.backend, agora_storage::BackendKind::Memory);
        assert_eq!(c.listen.as_deref(), Some("0.0.0.0:3000"));
        assert_eq!(
            c.upstream.proxy, "direct",
            "Athens' go command runs with GOPROXY=direct"
        );
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/agora"));
        assert!(c.download.is_empty() && c.filter.rules.is_empty());
        assert!(c.auth.tokens.is_empty());
        assert_eq!(c.access.default, vec!["anyone"]);
        let db = c.sumdb_endpoint().unwrap().unwrap();
        assert_eq!(db.url, "https://sum.golang.org");
        // Athens' defaults are not agora's: the log level and timeouts stay agora's.
        let agora = crate::config::Config::default();
        assert_eq!(c.log.level, agora.log.level);
        assert_eq!(c.upstream.timeout, agora.upstream.timeout);
        assert_eq!(c.limits.git_fetches, agora.limits.git_fetches);
    }

    #[test]
    fn seed_scenario_disk_nosum_patterns_and_filter_file() {
        let (t, c) = translate_and_load(&fixture("seed.toml"), &env(&[]));
        assert_eq!(c.storage.backend, agora_storage::BackendKind::Local);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/agora"));
        assert_eq!(c.upstream.proxy, "https://proxy.golang.org,direct");
        assert_eq!(c.routing.private, vec!["gitlab.corp.example"]);
        assert_eq!(
            c.routing.nosumdb,
            vec!["gitlab.corp.example/*", "github.com/corp/*"]
        );
        assert_eq!(c.log.level, "info");
        assert_eq!(c.upstream.timeout, std::time::Duration::from_secs(120));

        // The filter behaves as Athens' did: the deepest path decides.
        let filter = c.filter.to_filter().unwrap();
        assert!(filter.check_version("github.com/evil/x", "v1.0.0").is_err());
        assert!(filter.check_version("github.com/evil", "v1.0.0").is_err());
        assert!(filter
            .check_version("github.com/evil/fixed", "v1.0.0")
            .is_ok());
        assert!(filter
            .check_version("github.com/evil/fixed/sub", "v1.0.0")
            .is_ok());
        assert!(filter
            .check_version("github.com/old/lib", "v1.4.1")
            .is_err());
        assert!(filter
            .check_version("github.com/old/lib", "v1.3.9")
            .is_err());
        assert!(filter.check_version("github.com/old/lib", "v1.4.2").is_ok());
        assert!(filter.check_version("github.com/other/x", "v0.1.0").is_ok());
        let denied = filter
            .check_version("github.com/evil/x", "v1.0.0")
            .unwrap_err();
        assert!(denied.0.contains("- github.com/evil"), "{denied}");

        // `D` sends the module to GlobalEndpoint, as Athens' 303 did.
        assert_eq!(c.download.len(), 1);
        assert_eq!(c.download[0].pattern, "golang.org/x/tools");
        assert_eq!(
            c.download[0].to_mode().unwrap(),
            agora_core::DownloadMode::Redirect("https://goproxy.cn".into())
        );

        // The disk storage is imported, not shared; nothing else needs a word.
        assert_eq!(t.notes.len(), 1, "{:?}", t.notes);
        assert_eq!(t.notes[0].kind, NoteKind::Action);
        assert!(
            t.notes[0].message.contains("agora import /var/lib/athens"),
            "{}",
            t.notes[0]
        );
    }

    #[test]
    fn environment_overrides_the_file_and_secrets_are_not_copied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("athens.toml");
        std::fs::write(
            &path,
            "StorageType = \"disk\"\nPort = \":3000\"\nBasicAuthUser = \"file-user\"\n\
             [Storage.Minio]\nSecret = \"file-minio-secret\"\n",
        )
        .unwrap();
        let hcl = "downloadURL = \"https://proxy.golang.org\"\nmode = \"async_redirect\"\n\
                   download \"gitlab.corp.example/*\" { mode = \"none\" }\n";
        use base64::Engine as _;
        let custom = format!(
            "custom:{}",
            base64::engine::general_purpose::STANDARD.encode(hcl)
        );
        let e = env(&[
            ("ATHENS_STORAGE_TYPE", "minio"),
            ("ATHENS_MINIO_ENDPOINT", "minio.corp.example:9000"),
            ("ATHENS_MINIO_ACCESS_KEY_ID", "athens"),
            ("ATHENS_MINIO_USE_SSL", "false"),
            ("ATHENS_MINIO_BUCKET_NAME", "modules"),
            ("BASIC_AUTH_USER", "ci"),
            ("BASIC_AUTH_PASS", "hunter2-athens"),
            (
                "ATHENS_GONOSUM_PATTERNS",
                "gitlab.corp.example,github.com/corp",
            ),
            ("ATHENS_DOWNLOAD_MODE", custom.as_str()),
            ("ATHENS_PORT", "8080"),
            ("PORT", "9000"),
            ("ATHENS_GITHUB_TOKEN", "ghp_not_to_be_copied"),
            ("ATHENS_SUM_DBS", "https://sum.golang.google.cn"),
        ]);
        let (t, c) = translate_and_load(&path, &e);
        let shown = format!(
            "{}{}",
            t.toml,
            t.notes.iter().map(|n| format!("{n}\n")).collect::<String>()
        );
        for secret in [
            "hunter2-athens",
            "file-minio-secret",
            "ghp_not_to_be_copied",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked:\n{shown}");
        }
        assert_eq!(
            c.listen.as_deref(),
            Some("0.0.0.0:8080"),
            "ATHENS_PORT beats PORT"
        );
        assert_eq!(c.storage.backend, agora_storage::BackendKind::S3);
        assert_eq!(c.storage.s3.endpoint, "http://minio.corp.example:9000");
        assert!(c.storage.s3.allow_http);
        assert_eq!(c.storage.s3.bucket, "modules");
        assert_eq!(c.storage.s3.access_key_id, "athens");
        assert_eq!(
            c.storage.s3.secret_access_key_env,
            "ATHENS_MINIO_SECRET_ACCESS_KEY"
        );
        assert_eq!(
            c.routing.nosumdb,
            vec!["gitlab.corp.example", "github.com/corp"]
        );
        assert_eq!(
            c.git.credentials[0].password_env.as_deref(),
            Some("ATHENS_GITHUB_TOKEN")
        );
        let db = c.sumdb_endpoint().unwrap().unwrap();
        assert_eq!(
            db.url, "https://sum.golang.google.cn",
            "the mirror of sum.golang.org"
        );
        assert!(db.key.is_some(), "agora knows its key and verifies");

        // The password still works, as a token sent by basic auth.
        assert_eq!(c.access.default, vec!["authenticated"]);
        let access = crate::app::access(&c).unwrap();
        let cred = agora_access::Credential::Basic {
            user: "ci".into(),
            password: "hunter2-athens".into(),
        };
        assert_eq!(access.tokens.authenticate(&cred).unwrap().name, "ci");

        // The custom download file: its block first, then the default for everything else.
        let modes: Vec<_> = c
            .download
            .iter()
            .map(|d| (d.pattern.as_str(), d.mode, d.url.as_deref()))
            .collect();
        assert_eq!(
            modes,
            vec![
                ("gitlab.corp.example/*", DownloadModeConfig::None, None),
                (
                    "*",
                    DownloadModeConfig::Redirect,
                    Some("https://proxy.golang.org")
                ),
            ]
        );
        let kinds: Vec<_> = t.notes.iter().map(|n| n.setting.as_str()).collect();
        assert!(
            kinds.contains(&"ATHENS_DOWNLOAD_MODE"),
            "async_redirect: {kinds:?}"
        );
        assert!(kinds.contains(&"BASIC_AUTH_PASS"), "{kinds:?}");
    }

    #[test]
    fn unix_socket_and_path_prefix_carry_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("athens.toml");
        std::fs::write(
            &path,
            "UnixSocket = \"/run/athens/athens.sock\"\nPathPrefix = \"/athens/\"\n",
        )
        .unwrap();
        let (t, c) = translate_and_load(&path, &env(&[]));
        assert_eq!(c.listen.as_deref(), Some("unix:/run/athens/athens.sock"));
        assert_eq!(c.server.path_prefix.as_deref(), Some("/athens"));
        assert!(t.notes.is_empty(), "{:?}", t.notes);

        std::fs::write(
            &path,
            "TLSCertFile = \"/c.pem\"\nTLSKeyFile = \"/k.pem\"\nUnixSocket = \"/run/a.sock\"\n",
        )
        .unwrap();
        let (t, c) = translate_and_load(&path, &env(&[("ATHENS_PATH_PREFIX", "/a//b")]));
        assert!(c.listen.is_none() && c.tls.listen.is_some());
        assert_eq!(c.server.path_prefix, None);
        let lines: Vec<String> = t.notes.iter().map(ToString::to_string).collect();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("UnixSocket: agora serves HTTPS")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("ATHENS_PATH_PREFIX: invalid path prefix")),
            "{lines:?}"
        );
    }

    #[test]
    fn unmappable_settings_are_named_one_line_each() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("athens.toml");
        std::fs::write(
            &path,
            "StorageType = \"mongo\"\nPathPrefix = \"athens\"\nValidatorHook = \"http://v\"\n\
             NetworkMode = \"offline\"\nColour = \"red\"\nSumDBs = [\"https://sum.corp.example\", \"https://b.example\"]\n\
             [Storage.Mongo]\nURL = \"mongodb://u:mongo-pw@db\"\n",
        )
        .unwrap();
        let (t, c) = translate_and_load(&path, &env(&[]));
        let lines: Vec<String> = t.notes.iter().map(ToString::to_string).collect();
        let has = |s: &str| lines.iter().any(|l| l.contains(s));
        for want in [
            "not mapped: StorageType: agora cannot store modules in MongoDB",
            "not mapped: PathPrefix: invalid path prefix",
            "not mapped: ValidatorHook:",
            "not mapped: NetworkMode:",
            "not mapped: Colour: not an Athens setting",
            "b.example is left out",
            "does not know the key of sum.corp.example",
        ] {
            assert!(has(want), "{want:?} missing from {lines:#?}");
        }
        assert!(lines.iter().all(|l| !l.contains('\n')));

        // Misspelt or invented variables are named; Athens would silently ignore them.
        let (t, _) = translate_and_load(
            &path,
            &env(&[
                ("ATHENS_GOPROXY", "https://goproxy.cn"),
                ("ATHENS_STORGE_TYPE", "disk"),
                ("ATHENS_INDEX_MYSQL_HOST", "db"),
            ]),
        );
        let lines: Vec<String> = t.notes.iter().map(ToString::to_string).collect();
        assert!(
            lines.iter().any(|l| l.contains("ATHENS_GOPROXY: not an Athens variable: Athens' go command takes GOPROXY from GoBinaryEnvVars")),
            "{lines:#?}"
        );
        assert!(lines
            .iter()
            .any(|l| l.contains("ATHENS_STORGE_TYPE: not an Athens variable")));
        assert!(!lines.iter().any(|l| l.contains("ATHENS_INDEX_MYSQL_HOST")));
        assert!(!t.toml.contains("mongo-pw") && !lines.iter().any(|l| l.contains("mongo-pw")));
        assert_eq!(c.storage.backend, agora_storage::BackendKind::Local);
        assert!(!c.sumdb.verify);
    }

    #[test]
    fn bad_input_is_an_error_naming_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("athens.toml");
        for (text, env_pairs, want) in [
            ("Timeout = \"soon\"\n", vec![], "Timeout"),
            ("", vec![("ATHENS_TIMEOUT", "soon")], "ATHENS_TIMEOUT"),
            ("NoSumPatterns = \"x\"\n", vec![], "NoSumPatterns"),
            ("FilterFile = \"missing.conf\"\n", vec![], "missing.conf"),
            ("DownloadMode = \"custom:%%%\"\n", vec![], "base64"),
            ("GoBinaryEnvVars = [\"GOPROXY\"]\n", vec![], "NAME=VALUE"),
            ("NetworkMode = \"sometimes\"\n", vec![], "NetworkMode"),
            ("this is not toml", vec![], "parsing"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = translate(&path, &env(&env_pairs), &opts()).unwrap_err();
            assert!(format!("{err:#}").contains(want), "{text}: {err:#}");
        }
        let err = translate(&dir.path().join("nope.toml"), &env(&[]), &opts()).unwrap_err();
        assert!(format!("{err:#}").contains("nope.toml"), "{err:#}");
    }

    #[test]
    fn qualifiers_follow_athens_matcher() {
        assert_eq!(
            qualifier_constraint("v1.2.*").unwrap(),
            ">= v1.2.0-0, < v1.3.0-0"
        );
        assert_eq!(
            qualifier_constraint("v1").unwrap(),
            ">= v1.0.0-0, < v2.0.0-0"
        );
        assert_eq!(
            qualifier_constraint("v1.2.3").unwrap(),
            ">= v1.2.3-0, <= v1.2.3"
        );
        assert_eq!(
            qualifier_constraint("~1.2.3").unwrap(),
            ">= v1.2.3, < v1.3.0-0"
        );
        assert_eq!(
            qualifier_constraint("^1.2.3").unwrap(),
            ">= v1.2.0, < v2.0.0-0"
        );
        assert_eq!(qualifier_constraint("<1.2.3").unwrap(), "<= v1.2.3");
        for bad in ["", "x1.2.3", "~1.2", "vx", "<1.a.3", "é"] {
            assert_eq!(qualifier_constraint(bad), None, "{bad}");
        }
        // Every constraint produced is one agora's filter accepts.
        for q in ["v1.2.*", "v1", "v1.2.3", "~1.2.3", "^1.2.3", "<1.2.3"] {
            let c = qualifier_constraint(q).unwrap();
            agora_core::VersionConstraint::parse(&c).unwrap();
        }
    }

    #[test]
    fn filter_file_lines_and_errors() {
        let f = parse_filter_file(
            "# comment\n\n-\n+ github.com/a v1.2,~2.0.1\nD golang.org/x/tools\n+ github.com/a\n",
        )
        .unwrap();
        assert_eq!(f.root, Some('-'));
        assert_eq!(
            f.lines.len(),
            2,
            "a later line for a path replaces the earlier one"
        );
        assert_eq!(f.lines[1].path, "github.com/a");
        assert!(f.lines[1].versions.is_empty());
        assert!(f.uses_direct());
        assert!(f.under_direct("golang.org/x/tools/gopls"));
        assert!(!f.under_direct("golang.org/x/toolsy"));
        for bad in ["? github.com/a", "+ a b c d", "+ github.com/*"] {
            assert!(parse_filter_file(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn download_file_subset_of_hcl() {
        let f = parse_download_file(
            r#"
            # top
            downloadURL = "https://proxy.golang.org"
            mode = "async_redirect"
            /* several
               lines */
            download "github.com/gomods/*" {
                mode = "sync"
            }
            download "golang.org/x/*" { mode = "none" } // trailing
            download "github.com/pkg/*" {
                mode = "redirect"
                downloadURL = "https://gocenter.example"
            }
            "#,
        )
        .unwrap();
        assert_eq!(f.mode, "async_redirect");
        assert_eq!(f.url, "https://proxy.golang.org");
        assert_eq!(f.blocks.len(), 3);
        assert_eq!(f.blocks[2].url, "https://gocenter.example");
        assert_eq!(f.mode_for("golang.org/x/tools").0, "none");
        assert_eq!(f.mode_for("example.com/m").0, "async_redirect");
        for bad in [
            "",
            "mode = sync",
            "mode = \"sync\"\ndownload \"x\" { }",
            "mode = \"sync\"\ndownload \"x\" { mode = \"a\"",
            "mode = \"sync\"\ncolour = \"red\"",
            "mode = \"unterminated",
            "mode = \"sync\" /* open",
        ] {
            assert!(parse_download_file(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ports_become_socket_addresses() {
        assert_eq!(listen_address(":3000").unwrap(), "0.0.0.0:3000");
        assert_eq!(listen_address("3000").unwrap(), "0.0.0.0:3000");
        assert_eq!(listen_address("127.0.0.1:8080").unwrap(), "127.0.0.1:8080");
        assert_eq!(listen_address("localhost:8080").unwrap(), "127.0.0.1:8080");
        assert_eq!(listen_address("[::1]:8080").unwrap(), "[::1]:8080");
        assert!(listen_address("proxy.example:80").is_err());
        assert!(listen_address(":http").is_err());
    }
}
