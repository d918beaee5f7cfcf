//! Validators and the requests that use them: `ETag`/`Last-Modified` on every artifact, conditional
//! GET (`If-None-Match`, `If-Modified-Since` → 304) and byte ranges on zips (`Range`, `If-Range` →
//! 206/416). Pure functions over headers; the handlers in [`crate::routes`] decide what to serve.
//!
//! # Entity tags
//! - Bodies served from memory (info, mod, list, latest, checksum-database answers) are tagged with a
//!   hash of their bytes (SHA-256, first 128 bits), so the same content always has the same tag, on
//!   every replica and after a restart.
//! - Zips are streamed and never hashed per request; their tag is a hash of the storage metadata
//!   (the backend's own e-tag — inode/mtime/size on local disk, the object's e-tag on S3 — plus size
//!   and modification time). A stored zip never changes (write-once), so the tag only changes when the
//!   object is replaced, e.g. after the data directory was wiped and the zip fetched again.
//! - Text responses may be sent gzip- or brotli-encoded by the compression layer. A strong tag must
//!   differ between encodings (RFC 9110 §8.8.3), so text responses carry a *weak* tag (`W/"…"`),
//!   which is all conditional GET needs (`If-None-Match` compares weakly). Zips and binary tiles are
//!   never content-coded and carry strong tags, which `If-Range` requires.

use std::ops::Range;
use std::time::{Duration, SystemTime};

use agora_storage::ObjectInfo;
use axum::http::{header, HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

/// Content types the compression layer may encode (and whose tags are therefore weak).
pub fn is_compressible(content_type: &str) -> bool {
    content_type.starts_with("text/") || content_type.starts_with("application/json")
}

/// The validators of one representation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validators {
    /// The full header value, quotes (and `W/`) included.
    etag: String,
    last_modified: Option<SystemTime>,
}

impl Validators {
    /// Validators of a body held in memory: a hash of its bytes.
    pub fn of_bytes(body: &[u8], last_modified: Option<SystemTime>, content_type: &str) -> Self {
        let tag = short_hash(&[body]);
        let etag = if is_compressible(content_type) {
            format!("W/\"{tag}\"")
        } else {
            format!("\"{tag}\"")
        };
        Validators {
            etag,
            last_modified,
        }
    }

    /// Validators of a stored object streamed without being read: a hash of its metadata.
    pub fn of_object(info: &ObjectInfo) -> Self {
        let mtime = info
            .last_modified
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let tag = short_hash(&[
            info.e_tag.as_deref().unwrap_or("").as_bytes(),
            &info.size.to_be_bytes(),
            &mtime.to_be_bytes(),
        ]);
        Validators {
            etag: format!("\"{tag}\""),
            last_modified: Some(info.last_modified),
        }
    }

    pub fn etag(&self) -> &str {
        &self.etag
    }

    /// Sets `ETag` and (when known) `Last-Modified`.
    pub fn apply(&self, headers: &mut HeaderMap) {
        if let Ok(v) = HeaderValue::from_str(&self.etag) {
            headers.insert(header::ETAG, v);
        }
        if let Some(t) = self.last_modified {
            if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(t)) {
                headers.insert(header::LAST_MODIFIED, v);
            }
        }
    }

    /// Whether a GET/HEAD with these request headers is answered 304 Not Modified (RFC 9110
    /// §13.2.2: `If-None-Match` wins; `If-Modified-Since` only counts without it).
    pub fn not_modified(&self, req: &HeaderMap) -> bool {
        if let Some(inm) = req.get(header::IF_NONE_MATCH) {
            let Ok(inm) = inm.to_str() else {
                return false;
            };
            return inm.split(',').map(str::trim).any(|candidate| {
                candidate == "*" || opaque(candidate).is_some_and(|c| Some(c) == opaque(&self.etag))
            });
        }
        let (Some(ims), Some(lm)) = (
            req.get(header::IF_MODIFIED_SINCE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| httpdate::parse_http_date(v).ok()),
            self.last_modified,
        ) else {
            return false;
        };
        whole_seconds(lm) <= ims
    }

    /// What a `Range` request gets for a body of `len` bytes. Only single ranges are served;
    /// multi-range requests and malformed headers get the whole body (RFC 9110 §14.2 lets a server
    /// ignore `Range`), as do `If-Range` requests whose validator no longer matches.
    pub fn range(&self, req: &HeaderMap, len: u64) -> RangeAnswer {
        let Some(range) = req.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
            return RangeAnswer::Full;
        };
        if let Some(if_range) = req.get(header::IF_RANGE) {
            if !self.if_range_matches(if_range) {
                return RangeAnswer::Full;
            }
        }
        parse_range(range, len)
    }

    /// `If-Range` needs a strong match: an identical strong tag, or exactly the modification date.
    fn if_range_matches(&self, value: &HeaderValue) -> bool {
        let Ok(value) = value.to_str() else {
            return false;
        };
        let value = value.trim();
        if value.starts_with('"') || value.starts_with("W/") {
            return !value.starts_with("W/") && !self.etag.starts_with("W/") && value == self.etag;
        }
        match (httpdate::parse_http_date(value), self.last_modified) {
            (Ok(date), Some(lm)) => whole_seconds(lm) == date,
            _ => false,
        }
    }
}

/// The outcome of a `Range` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeAnswer {
    /// 200 with the whole body.
    Full,
    /// 206 with these bytes (`start..end`, end exclusive, never empty).
    Partial(Range<u64>),
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

impl RangeAnswer {
    /// `Content-Range` for a partial answer or an unsatisfiable request.
    pub fn content_range(&self, len: u64) -> Option<HeaderValue> {
        let text = match self {
            RangeAnswer::Full => return None,
            RangeAnswer::Partial(r) => format!("bytes {}-{}/{len}", r.start, r.end - 1),
            RangeAnswer::Unsatisfiable => format!("bytes */{len}"),
        };
        HeaderValue::from_str(&text).ok()
    }
}

fn parse_range(value: &str, len: u64) -> RangeAnswer {
    let Some((unit, spec)) = value.split_once('=') else {
        return RangeAnswer::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    match (number(first), number(last)) {
        // `bytes=-N`: the last N bytes.
        (None, Some(n)) if first.is_empty() => {
            if n == 0 || len == 0 {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Partial(len.saturating_sub(n)..len)
            }
        }
        // `bytes=A-`: from A to the end.
        (Some(a), None) if last.is_empty() => {
            if a >= len {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Partial(a..len)
            }
        }
        // `bytes=A-B`, inclusive; B past the end is clipped.
        (Some(a), Some(b)) if a <= b => {
            if a >= len {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Partial(a..b.min(len - 1) + 1)
            }
        }
        _ => RangeAnswer::Full,
    }
}

/// A decimal number of digits only (`u64::from_str` would accept a leading `+`).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The tag without `W/` and quotes, if it is a well-formed entity tag.
fn opaque(tag: &str) -> Option<&str> {
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    tag.strip_prefix('"')?.strip_suffix('"')
}

/// HTTP dates have one-second resolution: compare at that resolution.
fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn short_hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    // Hex by hand: this runs for every small answer, and a `format!` per byte was a visible
    // share of a warm request's time.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = h.finalize();
    let mut out = String::with_capacity(32);
    for b in &digest[..16] {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn zip_validators() -> Validators {
        Validators::of_object(&ObjectInfo {
            size: 1000,
            last_modified: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500),
            e_tag: Some("1a-2b-3c".into()),
        })
    }

    #[test]
    fn tags_are_content_hashes_weak_for_text_strong_otherwise() {
        let a = Validators::of_bytes(b"v1.0.0\n", None, "text/plain; charset=utf-8");
        let b = Validators::of_bytes(b"v1.0.0\n", None, "text/plain; charset=utf-8");
        let c = Validators::of_bytes(b"v1.0.1\n", None, "text/plain; charset=utf-8");
        assert_eq!(a, b);
        assert_ne!(a.etag(), c.etag());
        assert!(a.etag().starts_with("W/\"") && a.etag().ends_with('"'));
        let bin = Validators::of_bytes(b"\x00\x01", None, "application/octet-stream");
        assert!(bin.etag().starts_with('"'));
        assert!(zip_validators().etag().starts_with('"'));
        assert_eq!(zip_validators(), zip_validators());
    }

    #[test]
    fn if_none_match_takes_precedence_over_if_modified_since() {
        let v = zip_validators();
        let tag = v.etag().to_owned();
        assert!(v.not_modified(&headers(&[(header::IF_NONE_MATCH, &tag)])));
        assert!(v.not_modified(&headers(&[(header::IF_NONE_MATCH, "*")])));
        assert!(v.not_modified(&headers(&[(
            header::IF_NONE_MATCH,
            &format!("\"other\", W/{tag}")
        )])));
        assert!(!v.not_modified(&headers(&[(header::IF_NONE_MATCH, "\"other\"")])));
        let later = httpdate::fmt_http_date(SystemTime::now());
        assert!(v.not_modified(&headers(&[(header::IF_MODIFIED_SINCE, &later)])));
        // The exact second of the modification time counts as "not modified".
        let same =
            httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert!(v.not_modified(&headers(&[(header::IF_MODIFIED_SINCE, &same)])));
        let earlier =
            httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000));
        assert!(!v.not_modified(&headers(&[(header::IF_MODIFIED_SINCE, &earlier)])));
        // A mismatching tag wins over a matching date.
        assert!(!v.not_modified(&headers(&[
            (header::IF_NONE_MATCH, "\"other\""),
            (header::IF_MODIFIED_SINCE, &later)
        ])));
        assert!(!v.not_modified(&headers(&[(header::IF_MODIFIED_SINCE, "garbage")])));
        // Weak tags of text match weakly.
        let t = Validators::of_bytes(b"x", None, "application/json");
        let weak = t.etag().to_owned();
        assert!(t.not_modified(&headers(&[(header::IF_NONE_MATCH, &weak)])));
        assert!(t.not_modified(&headers(&[(
            header::IF_NONE_MATCH,
            weak.trim_start_matches("W/")
        )])));
    }

    #[test]
    fn ranges() {
        let r = |s: &str, len| parse_range(s, len);
        use RangeAnswer::*;
        assert_eq!(r("bytes=0-99", 1000), Partial(0..100));
        assert_eq!(r("bytes=990-2000", 1000), Partial(990..1000));
        assert_eq!(r("bytes=500-", 1000), Partial(500..1000));
        assert_eq!(r("bytes=-100", 1000), Partial(900..1000));
        assert_eq!(r("bytes=-5000", 1000), Partial(0..1000));
        assert_eq!(r("BYTES = 1-1", 1000), Partial(1..2));
        assert_eq!(r("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(r("bytes=1000-1001", 1000), Unsatisfiable);
        assert_eq!(r("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(r("bytes=0-", 0), Unsatisfiable);
        for ignored in [
            "bytes=5-1",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=+1-2",
            "bytes=a-b",
            "bytes=-",
            "bytes",
        ] {
            assert_eq!(r(ignored, 1000), Full, "{ignored}");
        }
        assert_eq!(
            Partial(0..100).content_range(1000).unwrap(),
            "bytes 0-99/1000"
        );
        assert_eq!(Unsatisfiable.content_range(1000).unwrap(), "bytes */1000");
    }

    #[test]
    fn if_range_needs_a_strong_match() {
        let v = zip_validators();
        let tag = v.etag().to_owned();
        let range = (header::RANGE, "bytes=0-9");
        assert_eq!(
            v.range(&headers(&[range.clone(), (header::IF_RANGE, &tag)]), 1000),
            RangeAnswer::Partial(0..10)
        );
        assert_eq!(
            v.range(
                &headers(&[range.clone(), (header::IF_RANGE, "\"old\"")]),
                1000
            ),
            RangeAnswer::Full
        );
        assert_eq!(
            v.range(
                &headers(&[range.clone(), (header::IF_RANGE, &format!("W/{tag}"))]),
                1000
            ),
            RangeAnswer::Full
        );
        let lm =
            httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert_eq!(
            v.range(&headers(&[range.clone(), (header::IF_RANGE, &lm)]), 1000),
            RangeAnswer::Partial(0..10)
        );
        assert_eq!(v.range(&headers(&[]), 1000), RangeAnswer::Full);
    }
}
