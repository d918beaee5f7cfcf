//! Which checksum database to use: `GOSUMDB` as the go command reads it
//! (`cmd/go/internal/modfetch/sumdb.go`, `dbDial`).
//!
//! - `off`: none;
//! - `sum.golang.org` (or another name with a built-in key): that database, with its key;
//! - `name+hash+keydata`: a database with the given verifier key (a company's own);
//! - any of these followed by a URL: reach the database there instead of `https://<name>`.
//!
//! `sum.golang.google.cn` is an alias: the `sum.golang.org` database (same name, same key) served
//! from `https://sum.golang.google.cn`.

use signed_note::{StandardVerifier, Verifier};

use crate::error::SumdbError;

/// Verifier keys the go command knows by name (`cmd/go/internal/modfetch/key.go`).
const KNOWN_KEYS: &[(&str, &str)] = &[(
    "sum.golang.org",
    "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8",
)];

/// A checksum database: its name, its verifier key, and where to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Database {
    /// The name clients use (`sum.golang.org`), the first field of the key.
    pub name: String,
    /// The verifier key, `name+hash+keydata`.
    pub key: String,
    /// Base URL, without a trailing slash.
    pub url: String,
}

impl Database {
    /// Parses a `GOSUMDB` value; `Ok(None)` for `off`.
    pub fn parse(gosumdb: &str) -> Result<Option<Database>, String> {
        let gosumdb = gosumdb.trim();
        let gosumdb = if gosumdb == "sum.golang.google.cn" {
            "sum.golang.org https://sum.golang.google.cn"
        } else {
            gosumdb
        };
        if gosumdb == "off" {
            return Ok(None);
        }
        let fields: Vec<&str> = gosumdb.split_whitespace().collect();
        let (key, url) = match fields.as_slice() {
            [] => return Err("missing GOSUMDB".into()),
            [key] => (*key, None),
            [key, url] => (*key, Some(*url)),
            _ => return Err("invalid GOSUMDB: too many fields".into()),
        };
        let key = KNOWN_KEYS
            .iter()
            .find(|(name, _)| *name == key)
            .map_or(key, |(_, k)| *k);
        let verifier = StandardVerifier::new(key).map_err(|e| {
            format!("invalid GOSUMDB: {e} (want a known name such as sum.golang.org or a verifier key name+hash+key)")
        })?;
        let name = verifier.name().to_owned();
        if !valid_name(&name) {
            return Err(format!("invalid sumdb name (must be host[/path]): {name}"));
        }
        let url = match url {
            Some(u) if u.starts_with("https://") || u.starts_with("http://") => {
                u.trim_end_matches('/').to_owned()
            }
            Some(u) => return Err(format!("invalid GOSUMDB URL {u:?}: want http(s)://...")),
            None => format!("https://{name}"),
        };
        Ok(Some(Database {
            name,
            key: key.to_owned(),
            url,
        }))
    }

    /// The key as a verifier.
    pub(crate) fn verifier(&self) -> Result<StandardVerifier, SumdbError> {
        StandardVerifier::new(&self.key).map_err(|e| SumdbError::Security {
            db: self.name.clone(),
            detail: format!("invalid verifier key: {e}"),
        })
    }
}

/// "No funny business in the database name": a host, optionally with a path, nothing that
/// would change the meaning of `https://<name>`.
fn valid_name(name: &str) -> bool {
    let (host, path) = name.split_once('/').unwrap_or((name, ""));
    !host.is_empty()
        && !name.ends_with('/')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
        && path.split('/').all(|e| {
            path.is_empty()
                || (!e.is_empty()
                    && e != "."
                    && e != ".."
                    && e.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~')
                    }))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GO_KEY: &str = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";

    #[test]
    fn gosumdb_forms() {
        assert_eq!(Database::parse("off").unwrap(), None);
        let db = Database::parse("sum.golang.org").unwrap().unwrap();
        assert_eq!(db.name, "sum.golang.org");
        assert_eq!(db.key, GO_KEY);
        assert_eq!(db.url, "https://sum.golang.org");
        let cn = Database::parse("sum.golang.google.cn").unwrap().unwrap();
        assert_eq!(cn.name, "sum.golang.org");
        assert_eq!(cn.key, GO_KEY);
        assert_eq!(cn.url, "https://sum.golang.google.cn");
        let own = Database::parse(&format!("{GO_KEY} http://127.0.0.1:9/db/"))
            .unwrap()
            .unwrap();
        assert_eq!(own.url, "http://127.0.0.1:9/db");
        let named = Database::parse("sum.golang.org https://mirror.example")
            .unwrap()
            .unwrap();
        assert_eq!(
            (named.key.as_str(), named.url.as_str()),
            (GO_KEY, "https://mirror.example")
        );
    }

    #[test]
    fn bad_gosumdb_values_are_refused() {
        for bad in [
            "",
            "unknown.example",
            "a b c",
            "sum.golang.org+033de0ae+AAAA",
            "sum.golang.org ftp://x",
        ] {
            assert!(Database::parse(bad).is_err(), "{bad:?}");
        }
        assert!(valid_name("sum.golang.org"));
        assert!(valid_name("sumdb.corp.example/go"));
        assert!(!valid_name("x/../y"));
        assert!(!valid_name("x/"));
        assert!(!valid_name("a b"));
    }
}
