//! Client tokens: generating secrets, storing them hashed, the tokens file that `agora token`
//! manages, and [`TokenStore`], the lookup every authenticated request goes through.
//!
//! # Why plain SHA-256
//! A stored token is `sha256:` + hex(SHA-256(secret)), not an argon2 or bcrypt hash. Slow,
//! salted hashes exist to protect *guessable* secrets (passwords) from offline brute force. Our
//! secrets are 256 bits from the operating system's CSPRNG: nobody can enumerate that space, fast
//! hash or not, so a leaked tokens file reveals no usable token. And a fast hash is what we need:
//! every proxy request is authenticated, so verification must take microseconds, not the tens
//! of milliseconds a password hash is tuned to cost. Being unsalted also lets the store find a
//! token with one hash-map lookup keyed by the digest, instead of trying each record in turn.
//!
//! The lookup is not constant-time, and need not be: timing could at best reveal bits of the
//! *digest* of a stored token, and a SHA-256 preimage is as out of reach as the secret itself.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::credential::Credential;
use crate::error::AccessError;

/// Every secret starts with this, so a leaked one is recognisable (secret scanners, log review).
pub const SECRET_PREFIX: &str = "agora_";
const HASH_PREFIX: &str = "sha256:";
/// Hex digits of the hash that make up a token's id.
const ID_LEN: usize = 12;
/// Longest token or group name: they appear in every audit line.
const MAX_NAME_LEN: usize = 64;
/// What errors about tokens written in the main configuration say they are about.
const INLINE_ORIGIN: &str = "inline tokens in the configuration";

const FILE_HEADER: &str =
    "# Managed by `agora token`. Secrets are never stored, only their SHA-256.\n\n";

/// A new token secret: [`SECRET_PREFIX`] + 32 random bytes in URL-safe base64 without padding
/// (43 characters).
pub fn generate_secret() -> Result<String, AccessError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(AccessError::Random)?;
    Ok(format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The stored form of a secret: `sha256:` + 64 lowercase hex digits. For a token written inline
/// in the configuration, the same value is `printf %s "$TOKEN" | sha256sum`.
pub fn hash_secret(secret: &str) -> String {
    format!("{HASH_PREFIX}{}", hex(&digest(secret.as_bytes())))
}

/// A token's public id: the first 12 hex digits of its hash, safe to show and log (it reveals
/// nothing usable) and short enough to type into `agora token revoke`.
pub fn id_of_hash(hash: &str) -> String {
    let hex = hash.strip_prefix(HASH_PREFIX).unwrap_or(hash);
    hex.chars().take(ID_LEN).collect()
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Parses `sha256:` + 64 hex digits (either case) into the digest.
fn parse_hash(hash: &str) -> Option<[u8; 32]> {
    let hex = hash.strip_prefix(HASH_PREFIX)?.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let digit = |c: u8| (c as char).to_digit(16);
        *byte = u8::try_from(digit(pair[0])? << 4 | digit(pair[1])?).ok()?;
    }
    Some(out)
}

fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the name is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("the name is longer than 64 characters");
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-');
    if !name.chars().all(ok) {
        return Err("a name may contain only letters, digits, '.', '_', '@' and '-'");
    }
    Ok(())
}

/// Whether `group` can be a group name: `[A-Za-z0-9._-]+`, at most 64 characters. Shared with the
/// access rules, so that a rule can never name a group no token could carry.
pub(crate) fn valid_group_name(group: &str) -> bool {
    !group.is_empty()
        && group.len() <= MAX_NAME_LEN
        && group
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The words access rules give a special meaning; a group by that name could never be granted.
pub(crate) const RESERVED_GROUPS: [&str; 2] = ["anyone", "authenticated"];

fn check_group(group: &str) -> Result<(), String> {
    if !valid_group_name(group) {
        return Err(format!(
            "invalid group name {group:?}: use only letters, digits, '.', '_' and '-'"
        ));
    }
    if RESERVED_GROUPS.contains(&group) {
        return Err(format!(
            "{group:?} is a reserved word in access rules, not a group name"
        ));
    }
    Ok(())
}

/// One token as stored: in the tokens file, or inline in the main configuration (where `id` and
/// `created` may be left out).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    /// The first 12 hex digits of `hash`; computed when empty.
    #[serde(default)]
    pub id: String,
    /// Who the token is for; this is what logs and the audit trail show.
    pub name: String,
    /// Groups the access rules can grant access to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// `sha256:` + 64 hex digits of the secret.
    pub hash: String,
    /// When it was issued, RFC 3339 UTC; informational.
    #[serde(default)]
    pub created: String,
}

/// Checks records from one source and normalises them (lowercase hash, computed id).
fn validate_records(records: &mut [TokenRecord], origin: &str) -> Result<(), AccessError> {
    let mut names = HashSet::new();
    let mut hashes = HashMap::new();
    for (i, rec) in records.iter_mut().enumerate() {
        let fail = |entry: String, reason: String| AccessError::InvalidToken {
            origin: origin.to_owned(),
            entry,
            reason,
        };
        if let Err(reason) = check_name(&rec.name) {
            return Err(fail(format!("token #{}", i + 1), reason.into()));
        }
        let entry = format!("token {:?}", rec.name);
        if !names.insert(rec.name.clone()) {
            return Err(fail(
                entry,
                "the name is used by more than one token".into(),
            ));
        }
        let Some(d) = parse_hash(&rec.hash) else {
            return Err(fail(
                entry,
                "hash must be \"sha256:\" followed by 64 hex digits".into(),
            ));
        };
        if let Some(other) = hashes.insert(d, rec.name.clone()) {
            return Err(fail(
                entry,
                format!("same secret as token {other:?}; issue a new one"),
            ));
        }
        rec.hash = format!("{HASH_PREFIX}{}", hex(&d));
        let id = id_of_hash(&rec.hash);
        if rec.id.is_empty() {
            rec.id = id;
        } else if !rec.id.eq_ignore_ascii_case(&id) {
            return Err(fail(
                entry,
                "id does not match the hash (it must be the hash's first 12 hex digits; or leave it out)"
                    .into(),
            ));
        } else {
            rec.id = id;
        }
        for group in &rec.groups {
            check_group(group).map_err(|reason| fail(entry.clone(), reason))?;
        }
        if !rec.created.is_empty() && humantime::parse_rfc3339_weak(&rec.created).is_err() {
            return Err(fail(
                entry,
                "created is not an RFC 3339 time like 2026-11-24T10:00:00Z".into(),
            ));
        }
    }
    Ok(())
}

/// The on-disk shape of the tokens file: an array of `[[token]]` tables.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensDoc {
    #[serde(default, rename = "token", skip_serializing_if = "Vec::is_empty")]
    tokens: Vec<TokenRecord>,
}

/// The tokens file, as `agora token` edits it. The path is the caller's choice.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenFile {
    tokens: Vec<TokenRecord>,
}

impl TokenFile {
    /// Reads and validates the file; a missing file is an empty one (no tokens issued yet).
    pub fn load(path: &Path) -> Result<TokenFile, AccessError> {
        TokenFile::parse(&read_or_empty(path)?, path)
    }

    /// Parses file contents; `path` is for error messages.
    fn parse(bytes: &[u8], path: &Path) -> Result<TokenFile, AccessError> {
        let parse_error = |line, message| AccessError::Parse {
            path: path.to_owned(),
            line,
            message,
        };
        let text = std::str::from_utf8(bytes).map_err(|_| parse_error(None, "not UTF-8".into()))?;
        let doc: TokensDoc = toml::from_str(text).map_err(|e| {
            // `e.message()`, not `e.to_string()`: the latter quotes the source line.
            let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
            parse_error(line, e.message().trim().to_owned())
        })?;
        let mut tokens = doc.tokens;
        validate_records(&mut tokens, &path.display().to_string())?;
        Ok(TokenFile { tokens })
    }

    /// Issues a token and returns its secret, which exists nowhere else afterwards: show it once.
    pub fn add(&mut self, name: &str, groups: &[String]) -> Result<String, AccessError> {
        let fail = |reason: String| AccessError::InvalidToken {
            origin: "new token".into(),
            entry: format!("name {name:?}"),
            reason,
        };
        check_name(name).map_err(|r| fail(r.into()))?;
        let mut unique: Vec<String> = Vec::with_capacity(groups.len());
        for group in groups {
            check_group(group).map_err(fail)?;
            if !unique.contains(group) {
                unique.push(group.clone());
            }
        }
        if self.tokens.iter().any(|t| t.name == name) {
            return Err(AccessError::TokenExists { name: name.into() });
        }
        let secret = generate_secret()?;
        let hash = hash_secret(&secret);
        self.tokens.push(TokenRecord {
            id: id_of_hash(&hash),
            name: name.into(),
            groups: unique,
            hash,
            created: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        });
        Ok(secret)
    }

    /// Removes the token with this name or, if no name matches, with this id. Names win so that a
    /// name that happens to look like an id cannot revoke somebody else's token.
    pub fn revoke(&mut self, name_or_id: &str) -> bool {
        let before = self.tokens.len();
        if self.tokens.iter().any(|t| t.name == name_or_id) {
            self.tokens.retain(|t| t.name != name_or_id);
        } else if !name_or_id.is_empty() {
            self.tokens
                .retain(|t| !t.id.eq_ignore_ascii_case(name_or_id));
        }
        self.tokens.len() != before
    }

    pub fn list(&self) -> &[TokenRecord] {
        &self.tokens
    }

    /// Writes the file atomically: a temporary file in the same directory, fsync, rename, so a
    /// running server polling the file never reads half of it. Mode 0600 on unix (hashes are not
    /// secrets, but who holds which token and in which groups is nobody else's business).
    pub fn save(&self, path: &Path) -> Result<(), AccessError> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        create_private_dir(dir)?;
        let doc = TokensDoc {
            tokens: self.tokens.clone(),
        };
        let body = toml::to_string(&doc).expect("token records always serialize");
        let mut tmp = tempfile::Builder::new()
            .prefix(".agora-tokens-")
            .tempfile_in(dir)
            .map_err(AccessError::io(dir))?;
        let tmp_path = tmp.path().to_owned();
        set_private_mode(tmp.as_file()).map_err(AccessError::io(&tmp_path))?;
        tmp.write_all(FILE_HEADER.as_bytes())
            .and_then(|()| tmp.write_all(body.as_bytes()))
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(AccessError::io(&tmp_path))?;
        tmp.persist(path)
            .map_err(|e| AccessError::io(path)(e.error))?;
        // Make the rename itself durable.
        #[cfg(unix)]
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(AccessError::io(dir))?;
        Ok(())
    }
}

fn read_or_empty(path: &Path) -> Result<Vec<u8>, AccessError> {
    match fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(AccessError::io(path)(e)),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), AccessError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(AccessError::io(dir))
}

#[cfg(unix)]
pub(crate) fn set_private_mode(file: &fs::File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
pub(crate) fn set_private_mode(_file: &fs::File) -> io::Result<()> {
    Ok(())
}

/// Who a valid token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub groups: Vec<String>,
}

impl Identity {
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// Secret digest → identity.
type Table = HashMap<[u8; 32], Arc<Identity>>;

/// Builds the lookup table from both sources; a name or secret may appear only once overall,
/// because names are what the audit log records.
fn build_table(sources: [(&str, &[TokenRecord]); 2]) -> Result<Table, AccessError> {
    let mut table = Table::new();
    let mut names: HashMap<&str, &str> = HashMap::new();
    for (origin, records) in sources {
        for rec in records {
            let fail = |reason: String| AccessError::InvalidToken {
                origin: origin.to_owned(),
                entry: format!("token {:?}", rec.name),
                reason,
            };
            if let Some(other) = names.insert(&rec.name, origin) {
                return Err(fail(format!("the name is also used in {other}")));
            }
            let key = parse_hash(&rec.hash).expect("validated records have a valid hash");
            let identity = Arc::new(Identity {
                name: rec.name.clone(),
                groups: rec.groups.clone(),
            });
            if let Some(other) = table.insert(key, identity) {
                return Err(fail(format!(
                    "same secret as token {:?}; issue a new one",
                    other.name
                )));
            }
        }
    }
    Ok(table)
}

/// The tokens a running server accepts: those written inline in the configuration plus those in
/// the tokens file, which [`TokenStore::reload`] re-reads so that `agora token revoke` takes effect
/// without a restart.
pub struct TokenStore {
    inline: Vec<TokenRecord>,
    file: Option<PathBuf>,
    /// Read on every request, written only when the file changes: a plain `RwLock` is cheap
    /// enough (an uncontended read lock is an atomic increment).
    table: RwLock<Table>,
    /// Digest of the file's bytes when it was last read (successfully or not); also serialises
    /// reloads.
    seen: Mutex<[u8; 32]>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("file", &self.file)
            .field("tokens", &self.len())
            .finish_non_exhaustive()
    }
}

impl TokenStore {
    /// Validates `inline` and loads `file` (missing = no tokens yet). Errors are fatal at startup:
    /// a server must not come up with a token set other than the one configured.
    pub fn new(
        mut inline: Vec<TokenRecord>,
        file: Option<PathBuf>,
    ) -> Result<TokenStore, AccessError> {
        validate_records(&mut inline, INLINE_ORIGIN)?;
        let (from_file, bytes) = match &file {
            Some(path) => {
                let bytes = read_or_empty(path)?;
                (TokenFile::parse(&bytes, path)?.tokens, bytes)
            }
            None => (Vec::new(), Vec::new()),
        };
        let origin = file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let table = build_table([(INLINE_ORIGIN, &inline), (&origin, &from_file)])?;
        Ok(TokenStore {
            inline,
            file,
            table: RwLock::new(table),
            seen: Mutex::new(digest(&bytes)),
        })
    }

    /// The identity behind a credential, or `None` if no token has this secret.
    pub fn authenticate(&self, cred: &Credential) -> Option<Arc<Identity>> {
        let secret = cred.secret();
        if secret.is_empty() {
            return None;
        }
        let key = digest(secret.as_bytes());
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        table.get(&key).cloned()
    }

    /// Re-reads the tokens file. Returns `Ok(true)` if its bytes changed and the new tokens are in
    /// effect, `Ok(false)` if nothing changed (or there is no file). On an invalid file the
    /// previous tokens stay in effect and the error is returned once: the broken contents are
    /// remembered, so polling does not repeat the error until the file changes again.
    pub fn reload(&self) -> Result<bool, AccessError> {
        let Some(path) = &self.file else {
            return Ok(false);
        };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        // A deleted file reads as empty, like at startup: every file token is revoked.
        let bytes = read_or_empty(path)?;
        let now = digest(&bytes);
        if *seen == now {
            return Ok(false);
        }
        *seen = now;
        let from_file = TokenFile::parse(&bytes, path)?.tokens;
        let origin = path.display().to_string();
        let table = build_table([(INLINE_ORIGIN, &self.inline), (&origin, &from_file)])?;
        *self.table.write().unwrap_or_else(PoisonError::into_inner) = table;
        Ok(true)
    }

    /// Polls the tokens file every `interval` (at least 10 ms) on a tokio task, logging changes
    /// (info) and invalid files (warn). Does nothing without a tokens file. Abort the returned
    /// handle to stop.
    pub fn spawn_watch(self: Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let Some(path) = self.file.clone() else {
                return;
            };
            let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(10)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick fires at once; `new` has just read the file.
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let store = Arc::clone(&self);
                match tokio::task::spawn_blocking(move || store.reload()).await {
                    Ok(Ok(true)) => tracing::info!(
                        tokens.file = %path.display(),
                        tokens.count = self.len(),
                        "tokens file changed; new tokens in effect"
                    ),
                    Ok(Ok(false)) => {}
                    Ok(Err(error)) => tracing::warn!(
                        tokens.file = %path.display(),
                        %error,
                        "tokens file not reloaded; the previous tokens stay in effect"
                    ),
                    Err(error) => tracing::warn!(
                        tokens.file = %path.display(),
                        %error,
                        "tokens file reload task failed"
                    ),
                }
            }
        })
    }

    /// How many tokens are accepted (inline and file).
    pub fn len(&self) -> usize {
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(s: &str) -> Credential {
        Credential::Bearer(s.into())
    }

    #[test]
    fn secret_format_and_hash() {
        let s = generate_secret().unwrap();
        assert!(s.starts_with("agora_"));
        let body = &s["agora_".len()..];
        assert_eq!(body.len(), 43);
        assert!(body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);
        assert_ne!(s, generate_secret().unwrap());

        // printf %s abc | sha256sum
        let h = hash_secret("abc");
        assert_eq!(
            h,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(id_of_hash(&h), "ba7816bf8f01");
        assert_eq!(
            parse_hash(&h.to_uppercase().replace("SHA256", "sha256")),
            parse_hash(&h)
        );
        assert!(parse_hash("sha256:abc").is_none());
        assert!(parse_hash(&h.replace('a', "g")).is_none());
        assert!(parse_hash(&h["sha256:".len()..]).is_none());
    }

    #[test]
    fn file_round_trip_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/tokens.toml");
        let mut f = TokenFile::load(&path).unwrap();
        assert!(f.list().is_empty());
        let s1 = f
            .add("ci-payments", &["payments".into(), "payments".into()])
            .unwrap();
        let _s2 = f.add("alice@corp", &[]).unwrap();
        assert!(matches!(
            f.add("ci-payments", &[]),
            Err(AccessError::TokenExists { .. })
        ));
        assert!(f.add("bad name", &[]).is_err());
        assert!(f.add("x", &["a,b".into()]).is_err());
        assert!(f.add("x", &["anyone".into()]).is_err());
        f.save(&path).unwrap();

        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# Managed by `agora token`"));
        assert!(text.contains("[[token]]"));
        assert!(!text.contains(&s1), "the secret must never be stored");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let mut g = TokenFile::load(&path).unwrap();
        assert_eq!(g, f);
        let rec = &g.list()[0];
        assert_eq!(rec.name, "ci-payments");
        assert_eq!(rec.groups, ["payments"]);
        assert_eq!(rec.hash, hash_secret(&s1));
        assert_eq!(rec.id, id_of_hash(&rec.hash));
        assert!(rec.created.ends_with('Z'));

        let id = g.list()[1].id.clone();
        assert!(!g.revoke("nobody"));
        assert!(g.revoke(&id));
        assert!(g.revoke("ci-payments"));
        assert!(g.list().is_empty());
        g.save(&path).unwrap();
        assert!(TokenFile::load(&path).unwrap().list().is_empty());
        // Only the tokens file itself is left: no stray temporary files.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn load_rejects_bad_entries_without_printing_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let h = hash_secret("x");
        let cases = [
            (format!("[[token]]\nname = \"\"\nhash = \"{h}\"\n"), "token #1"),
            (format!("[[token]]\nname = \"a b\"\nhash = \"{h}\"\n"), "token #1"),
            ("[[token]]\nname = \"a\"\nhash = \"md5:00\"\n".to_string(), "token \"a\""),
            (
                format!("[[token]]\nname = \"a\"\nhash = \"{h}\"\ngroups = [\"p q\"]\n"),
                "token \"a\"",
            ),
            (
                format!(
                    "[[token]]\nname = \"a\"\nhash = \"{h}\"\n[[token]]\nname = \"a\"\nhash = \"{}\"\n",
                    hash_secret("y")
                ),
                "more than one",
            ),
            (
                format!(
                    "[[token]]\nname = \"a\"\nhash = \"{h}\"\n[[token]]\nname = \"b\"\nhash = \"{h}\"\n"
                ),
                "same secret",
            ),
            (
                format!("[[token]]\nid = \"000000000000\"\nname = \"a\"\nhash = \"{h}\"\n"),
                "id does not match",
            ),
            (format!("[[token]]\nname = \"a\"\nhash = \"{h}\"\nextra = 1\n"), ":4"),
            (format!("[[token]]\nname = \"a\"\nhash = {h}\n"), ":3"),
        ];
        for (text, expect) in cases {
            fs::write(&path, &text).unwrap();
            let err = TokenFile::load(&path).unwrap_err().to_string();
            assert!(err.contains(expect), "{err:?} lacks {expect:?}");
            assert!(
                err.contains("tokens.toml"),
                "{err:?} does not name the file"
            );
            assert!(!err.contains(&h[10..]), "{err:?} shows a hash");
        }
    }

    #[test]
    fn store_authenticates_inline_and_file_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let mut f = TokenFile::default();
        let secret = f.add("ci", &["payments".into()]).unwrap();
        f.save(&path).unwrap();
        let inline = vec![TokenRecord {
            id: String::new(),
            name: "ops".into(),
            groups: vec!["sre".into()],
            hash: hash_secret("agora_inline")
                .to_uppercase()
                .replace("SHA256", "sha256"),
            created: String::new(),
        }];
        let store = TokenStore::new(inline.clone(), Some(path.clone())).unwrap();
        assert_eq!(store.len(), 2);

        let who = store.authenticate(&bearer(&secret)).unwrap();
        assert_eq!(who.name, "ci");
        assert!(who.in_group("payments") && !who.in_group("sre"));
        let basic = Credential::Basic {
            user: "whatever".into(),
            password: "agora_inline".into(),
        };
        assert_eq!(store.authenticate(&basic).unwrap().name, "ops");
        assert!(store.authenticate(&bearer("agora_wrong")).is_none());
        assert!(store.authenticate(&bearer("")).is_none());

        // A name used inline and in the file is ambiguous in the audit log.
        let mut clash = inline;
        clash[0].name = "ci".into();
        let err = TokenStore::new(clash, Some(path)).unwrap_err().to_string();
        assert!(err.contains("also used"), "{err}");
    }

    #[test]
    fn reload_picks_up_revocation_and_survives_a_broken_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let mut f = TokenFile::default();
        let a = f.add("a", &[]).unwrap();
        let b = f.add("b", &[]).unwrap();
        f.save(&path).unwrap();
        let store = TokenStore::new(Vec::new(), Some(path.clone())).unwrap();
        assert!(!store.reload().unwrap(), "unchanged file");

        assert!(f.revoke("a"));
        f.save(&path).unwrap();
        assert!(store.reload().unwrap());
        assert!(store.authenticate(&bearer(&a)).is_none());
        assert!(store.authenticate(&bearer(&b)).is_some());

        fs::write(&path, "[[token]\nname = ").unwrap();
        assert!(store.reload().is_err());
        assert!(store.authenticate(&bearer(&b)).is_some(), "old map kept");
        assert!(!store.reload().unwrap(), "a broken file is reported once");

        let c = f.add("c", &[]).unwrap();
        f.save(&path).unwrap();
        assert!(store.reload().unwrap());
        assert!(store.authenticate(&bearer(&c)).is_some());

        fs::remove_file(&path).unwrap();
        assert!(store.reload().unwrap());
        assert!(store.is_empty(), "a deleted file revokes its tokens");
    }

    #[tokio::test]
    async fn watch_applies_revocation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let mut f = TokenFile::default();
        let a = f.add("a", &[]).unwrap();
        f.save(&path).unwrap();
        let store = Arc::new(TokenStore::new(Vec::new(), Some(path.clone())).unwrap());
        let task = Arc::clone(&store).spawn_watch(Duration::from_millis(10));
        f.revoke("a");
        f.save(&path).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while store.authenticate(&bearer(&a)).is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "revocation not seen"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        task.abort();
    }

    #[test]
    fn debug_shows_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let mut f = TokenFile::default();
        let s = f.add("a", &[]).unwrap();
        f.save(&path).unwrap();
        let store = TokenStore::new(Vec::new(), Some(path)).unwrap();
        let shown = format!("{store:?} {f:?} {:?}", bearer(&s));
        assert!(!shown.contains(&s), "{shown}");
    }
}
