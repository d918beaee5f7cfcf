//! What a client presents (the `Authorization` header) and who a request turns out to be.
//!
//! The go command sends credentials from `~/.netrc` (or a `GOAUTH` helper) as HTTP basic auth, so
//! for `Basic` the *password* is the token and the login is ignored: it is there for humans
//! (put the token's name in it to tell `.netrc` lines apart). Other clients (curl, CI scripts) may
//! send `Authorization: Bearer <token>` instead.
//!
//! Nothing here ever prints a secret: [`Credential`]'s `Debug` is written by hand, and error
//! messages do not quote the header.

use agora_secret::Secret;
use std::sync::Arc;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use crate::token::Identity;

/// Credentials from an `Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// `Authorization: Basic base64(user:password)`; the password is the token.
    Basic { user: String, password: Secret },
}

impl Credential {
    /// The token secret to look up.
    pub fn secret(&self) -> &str {
        match self {
            Credential::Bearer(token) => token.expose(),
            Credential::Basic { password, .. } => password.expose(),
        }
    }
}

/// Why an `Authorization` header was not understood. The server answers these with 401; the
/// messages never quote the header, which may hold a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    #[error("malformed Authorization header: expected \"<scheme> <credentials>\"")]
    Malformed,
    #[error("unsupported Authorization scheme: use Basic or Bearer")]
    UnknownScheme,
    #[error("Basic credentials are not valid base64")]
    Base64,
    #[error("credentials are not valid UTF-8")]
    NotUtf8,
    #[error("Basic credentials lack the ':' between login and password")]
    MissingColon,
}

/// Standard base64, padding optional: RFC 7617 says padded, but being strict here would only
/// turn a hand-built header into a confusing 401.
const BASIC: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Parses an `Authorization` header value: `Bearer <token>` or `Basic <base64(user:password)>`,
/// scheme case-insensitive (RFC 9110), the password split off at the first `:` (RFC 7617: a
/// login cannot contain one, a password can).
pub fn parse_authorization(header_value: &[u8]) -> Result<Credential, CredentialError> {
    let value = std::str::from_utf8(header_value).map_err(|_| CredentialError::NotUtf8)?;
    let (scheme, rest) = value
        .trim()
        .split_once(' ')
        .ok_or(CredentialError::Malformed)?;
    let rest = rest.trim_start_matches(' ');
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return Err(CredentialError::Malformed);
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        Ok(Credential::Bearer(rest.into()))
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = BASIC.decode(rest).map_err(|_| CredentialError::Base64)?;
        let decoded = String::from_utf8(decoded).map_err(|_| CredentialError::NotUtf8)?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or(CredentialError::MissingColon)?;
        Ok(Credential::Basic {
            user: user.to_owned(),
            password: password.into(),
        })
    } else {
        Err(CredentialError::UnknownScheme)
    }
}

/// Who a request is, as far as access rules and logs are concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// No credentials were presented.
    Anonymous,
    /// A valid token's holder.
    Token(Arc<Identity>),
}

impl Principal {
    /// For logs and the audit trail: "anonymous" or the token's name.
    pub fn name(&self) -> &str {
        match self {
            Principal::Anonymous => "anonymous",
            Principal::Token(identity) => &identity.name,
        }
    }

    pub fn identity(&self) -> Option<&Identity> {
        match self {
            Principal::Anonymous => None,
            Principal::Token(identity) => Some(identity),
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    fn basic(s: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(s)).into_bytes()
    }

    #[test]
    fn parses_bearer_and_basic() {
        assert_eq!(
            parse_authorization(b"Bearer agora_abc").unwrap(),
            Credential::Bearer("agora_abc".into())
        );
        assert_eq!(
            parse_authorization(b"  bEaReR   agora_abc ").unwrap(),
            Credential::Bearer("agora_abc".into())
        );
        let c = parse_authorization(&basic("ci-payments:agora_x:y")).unwrap();
        assert_eq!(
            c,
            Credential::Basic {
                user: "ci-payments".into(),
                password: "agora_x:y".into()
            }
        );
        assert_eq!(c.secret(), "agora_x:y");
        // Unpadded base64 too.
        let unpadded = format!("basic {}", STANDARD.encode("u:pw").trim_end_matches('='));
        assert_eq!(
            parse_authorization(unpadded.as_bytes()).unwrap().secret(),
            "pw"
        );
        assert_eq!(parse_authorization(&basic(":pw")).unwrap().secret(), "pw");
    }

    #[test]
    fn rejects_bad_headers() {
        use CredentialError::*;
        let cases: [(&[u8], CredentialError); 8] = [
            (b"agora_abc", Malformed),
            (b"Bearer ", Malformed),
            (b"Bearer a b", Malformed),
            (b"Digest abc", UnknownScheme),
            (b"Basic !!!", Base64),
            (b"Bearer \xff", NotUtf8),
            (b"Basic /w==", NotUtf8),
            (b"Basic YWJj", MissingColon),
        ];
        for (header, want) in cases {
            assert_eq!(parse_authorization(header), Err(want), "{header:?}");
        }
        assert!(!UnknownScheme.to_string().contains("Digest"));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let b = Credential::Bearer("agora_topsecret".into());
        let c = Credential::Basic {
            user: "ci".into(),
            password: "agora_topsecret".into(),
        };
        let shown = format!("{b:?} {c:?} {c:#?}");
        assert!(!shown.contains("topsecret"), "{shown}");
        assert!(shown.contains("Bearer(***)") && shown.contains("\"ci\""));
    }

    #[test]
    fn principal_names() {
        assert_eq!(Principal::Anonymous.name(), "anonymous");
        let p = Principal::Token(Arc::new(Identity {
            name: "ci".into(),
            groups: vec![],
        }));
        assert_eq!(p.name(), "ci");
        assert!(p.identity().is_some());
    }
}
