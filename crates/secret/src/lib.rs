//! Secrets (passwords, tokens) and what may be shown of them.
//!
//! Two rules for the whole workspace, so that no crate has a redaction of its own:
//! - a [`Secret`] prints as [`REDACTED`] (`Debug` and `Display`); its value is read only where it
//!   is handed on, with [`Secret::expose`], which makes those places easy to find;
//! - text that may hold URLs (a configured URL, git's messages) is shown through [`redact`],
//!   which replaces the user information of every `scheme://user[:password]@host` in it.

use std::fmt;

/// What is shown in place of a secret.
pub const REDACTED: &str = "***";

/// A password, token or other credential. Never printed; compared in constant time is not
/// needed here (secrets are matched by hash where that matters, in `agora-access`).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that hands it on (a header, git's environment).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// `text` with the user information of every `scheme://user[:password]@host` replaced by
/// [`REDACTED`] (`https://***@host/...`). The authority of a URL ends at the first `/`, white
/// space or quote, so URLs inside messages and quoted command lines are found too.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str(REDACTED);
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_themselves() {
        let s = Secret::from("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn user_information_of_every_url_is_redacted() {
        for (text, want) in [
            ("https://u:p@h.example/x", "https://***@h.example/x"),
            ("https://tok@h.example", "https://***@h.example"),
            (
                "redis://:pw@127.0.0.1:6379/0",
                "redis://***@127.0.0.1:6379/0",
            ),
            ("https://h.example/a@b", "https://h.example/a@b"),
            (
                "fatal: 'https://u:p@a/x' and \"ssh://git@b/y\" failed",
                "fatal: 'https://***@a/x' and \"ssh://***@b/y\" failed",
            ),
            ("no urls here", "no urls here"),
            ("http://a@b@c/x", "http://***@c/x"),
        ] {
            assert_eq!(redact(text), want, "{text}");
        }
    }
}
