//! Who is the client: the address and scheme a request really came from, behind reverse proxies
//! or load balancers that are trusted to say so.
//!
//! Forwarding headers are set by whoever sends them, so they are believed only from peers listed
//! in [`TrustedProxies`] (IP addresses and CIDR blocks). From any other peer they are ignored
//! entirely: the client is the TCP peer and the scheme is the connection's own.
//!
//! From a trusted peer:
//! - `X-Forwarded-For` is walked from right to left (each proxy appends the address it received
//!   the request from), skipping trusted addresses; the first untrusted one is the client. If every
//!   address is trusted, the leftmost is. A malformed entry stops the walk and the last good
//!   address is kept: anything to its left could have been written by the client.
//! - `X-Forwarded-Proto`: its first value decides the scheme (`https` is secure, anything else
//!   is not); without it the connection's own scheme counts.
//! - `Forwarded` (RFC 7239) is read only when neither `X-Forwarded-For` nor `X-Forwarded-Proto`
//!   is present. Its elements are walked like `X-Forwarded-For` by their `for=` parameter (an
//!   element without `for=`, or with `unknown` or an obfuscated name, is malformed), and the scheme
//!   is the `proto=` of the element that named the client.
//!
//! Addresses are compared in canonical form: an IPv4-mapped IPv6 peer (`::ffff:10.0.0.1`, from a
//! dual-stack listener) matches `10.0.0.0/8`.
//!
//! [`ConnectInfo`] and [`Transport`] come from the connection loop ([`crate::serve`]);
//! [`ClientInfo::from_parts`] and the [`FromRequestParts`] extractor read them.

use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use http::header::{HeaderMap, HeaderName, FORWARDED};
use http::request::Parts;
use http::Extensions;
use ipnet::IpNet;

use crate::serve::Transport;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The peers whose forwarding headers are believed. Empty (the default) trusts nobody. Cheap to
/// clone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Arc<[IpNet]>,
}

/// A trusted-proxy entry that is neither an IP address nor a CIDR block.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid trusted proxy {entry:?}: expected an IP address or a CIDR block such as 10.0.0.0/8"
)]
pub struct TrustedProxyError {
    pub entry: String,
}

impl TrustedProxies {
    /// Parses entries such as `10.0.0.0/8`, `192.168.1.10`, `fd00::/8`, `::1`. Host bits in a
    /// CIDR are ignored (`10.1.2.3/8` is `10.0.0.0/8`).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<TrustedProxies, TrustedProxyError> {
        let nets = entries
            .iter()
            .map(|entry| {
                let s = entry.as_ref().trim();
                let net = if s.contains('/') {
                    s.parse::<IpNet>().ok().map(|n| n.trunc())
                } else {
                    s.parse::<IpAddr>().ok().map(IpNet::from)
                };
                net.ok_or_else(|| TrustedProxyError {
                    entry: entry.as_ref().to_owned(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies { nets: nets.into() })
    }

    /// Whether nobody is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.nets.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

/// The client as far as it can be trusted: its address and whether it used HTTPS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    pub ip: IpAddr,
    pub secure: bool,
}

impl ClientInfo {
    /// Decides who the client is from the TCP peer, the connection's scheme and, when the peer
    /// is trusted, its forwarding headers (see the module documentation).
    pub fn resolve(
        peer: SocketAddr,
        transport_secure: bool,
        headers: &HeaderMap,
        trusted: &TrustedProxies,
    ) -> ClientInfo {
        let peer_ip = peer.ip().to_canonical();
        let direct = ClientInfo {
            ip: peer_ip,
            secure: transport_secure,
        };
        if !trusted.contains(peer_ip) {
            return direct;
        }
        if headers.contains_key(X_FORWARDED_FOR) || headers.contains_key(X_FORWARDED_PROTO) {
            let hops = x_forwarded_for(headers).into_iter().rev();
            let ip = walk(hops, trusted).map_or(peer_ip, |hop| hop.ip);
            let secure = x_forwarded_proto(headers).unwrap_or(transport_secure);
            return ClientInfo { ip, secure };
        }
        if headers.contains_key(FORWARDED) {
            return match walk(forwarded(headers).into_iter().rev(), trusted) {
                Some(hop) => ClientInfo {
                    ip: hop.ip,
                    secure: hop.secure.unwrap_or(transport_secure),
                },
                None => direct,
            };
        }
        direct
    }

    /// [`resolve`](Self::resolve) with the peer and scheme the connection loop stored in the
    /// request's extensions. Without them (a router driven by `oneshot` in tests) the peer is
    /// `0.0.0.0:0` and the scheme plain HTTP.
    pub fn from_extensions(
        extensions: &Extensions,
        headers: &HeaderMap,
        trusted: &TrustedProxies,
    ) -> ClientInfo {
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), |c| c.0);
        let secure = extensions.get::<Transport>().is_some_and(|t| t.secure);
        ClientInfo::resolve(peer, secure, headers, trusted)
    }

    /// [`from_extensions`](Self::from_extensions) over a request's parts.
    pub fn from_parts(parts: &Parts, trusted: &TrustedProxies) -> ClientInfo {
        ClientInfo::from_extensions(&parts.extensions, &parts.headers, trusted)
    }

    /// `"https"` or `"http"`.
    pub fn scheme(&self) -> &'static str {
        if self.secure {
            "https"
        } else {
            "http"
        }
    }
}

/// A handler argument, for states that can hand out their [`TrustedProxies`]
/// (`impl FromRef<AppState> for TrustedProxies`).
impl<S> FromRequestParts<S> for ClientInfo
where
    TrustedProxies: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientInfo::from_parts(
            parts,
            &TrustedProxies::from_ref(state),
        ))
    }
}

/// One forwarding hop: the address it names and, for `Forwarded`, the scheme it reports.
#[derive(Clone, Copy)]
struct Hop {
    ip: IpAddr,
    secure: Option<bool>,
}

/// Walks hops from the nearest (rightmost) to the farthest; `None` items are malformed. Returns the
/// client's hop, or `None` when not even the nearest hop is usable (the peer is then the client).
fn walk(hops: impl Iterator<Item = Option<Hop>>, trusted: &TrustedProxies) -> Option<Hop> {
    let mut last_good = None;
    for hop in hops {
        let Some(hop) = hop else { break };
        last_good = Some(hop);
        if !trusted.contains(hop.ip) {
            break;
        }
    }
    last_good
}

/// Every `X-Forwarded-For` entry, left to right, across repeated header lines.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<Hop>> {
    let mut hops = Vec::new();
    for value in headers.get_all(X_FORWARDED_FOR) {
        match value.to_str() {
            Ok(s) => hops.extend(
                s.split(',')
                    .map(|entry| node_ip(entry.trim()).map(|ip| Hop { ip, secure: None })),
            ),
            Err(_) => hops.push(None),
        }
    }
    hops
}

/// The first `X-Forwarded-Proto` value: the scheme the first proxy saw.
fn x_forwarded_proto(headers: &HeaderMap) -> Option<bool> {
    let value = headers.get(X_FORWARDED_PROTO)?.to_str().ok()?;
    let first = value.split(',').next()?.trim();
    Some(first.eq_ignore_ascii_case("https"))
}

/// Every `Forwarded` element, left to right, across repeated header lines.
fn forwarded(headers: &HeaderMap) -> Vec<Option<Hop>> {
    let mut hops = Vec::new();
    for value in headers.get_all(FORWARDED) {
        match value.to_str() {
            Ok(s) => hops.extend(split_unquoted(s, ',').into_iter().map(forwarded_element)),
            Err(_) => hops.push(None),
        }
    }
    hops
}

/// `for=192.0.2.60;proto=https;by=203.0.113.43`; `None` without a usable `for=`.
fn forwarded_element(element: &str) -> Option<Hop> {
    let mut ip = None;
    let mut secure = None;
    for pair in split_unquoted(element, ';') {
        let (name, value) = pair.split_once('=')?;
        let value = unquote(value.trim());
        match name.trim().to_ascii_lowercase().as_str() {
            "for" => ip = Some(node_ip(&value)?),
            "proto" => secure = Some(value.eq_ignore_ascii_case("https")),
            _ => {}
        }
    }
    Some(Hop { ip: ip?, secure })
}

/// Splits on `sep` outside double quotes.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Removes the quotes and escapes of an RFC 7230 quoted string; other values are returned as is.
fn unquote(value: &str) -> String {
    let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return value.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().unwrap_or(c)
        } else {
            c
        });
    }
    out
}

/// An address as proxies write it: `192.0.2.1`, `2001:db8::1`, with a port (`192.0.2.1:443`,
/// `[2001:db8::1]:443`) or in brackets (`[2001:db8::1]`). `unknown` and obfuscated names are not.
fn node_ip(s: &str) -> Option<IpAddr> {
    let ip = if let Ok(ip) = s.parse::<IpAddr>() {
        ip
    } else if let Ok(addr) = s.parse::<SocketAddr>() {
        addr.ip()
    } else {
        let inner = s.strip_prefix('[')?.strip_suffix(']')?;
        IpAddr::V6(inner.parse::<Ipv6Addr>().ok()?)
    };
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    type Pairs<'a> = &'a [(&'a str, &'a str)];

    fn trusted() -> TrustedProxies {
        TrustedProxies::parse(&["10.0.0.0/8", "192.168.1.10", "fd00::/8"]).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn resolve(peer: &str, tls: bool, pairs: &[(&str, &str)]) -> (String, bool) {
        let peer = match peer.parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => SocketAddr::new(peer.parse().unwrap(), 40000),
        };
        let info = ClientInfo::resolve(peer, tls, &headers(pairs), &trusted());
        (info.ip.to_string(), info.secure)
    }

    #[test]
    fn parse_accepts_addresses_and_cidrs() {
        let t = TrustedProxies::parse(&[
            "10.0.0.0/8".to_string(),
            " 127.0.0.1 ".to_string(),
            "2001:db8::/32".to_string(),
            "::1".to_string(),
            "172.16.5.4/12".to_string(),
        ])
        .unwrap();
        assert_eq!(
            t.to_string(),
            "10.0.0.0/8, 127.0.0.1/32, 2001:db8::/32, ::1/128, 172.16.0.0/12"
        );
        assert!(t.contains("10.200.3.4".parse().unwrap()));
        assert!(t.contains("172.31.255.255".parse().unwrap()));
        assert!(!t.contains("172.32.0.1".parse().unwrap()));
        assert!(t.contains("2001:db8:1::5".parse().unwrap()));
        // A dual-stack listener reports IPv4 peers as mapped IPv6 addresses.
        assert!(t.contains("::ffff:10.1.1.1".parse().unwrap()));
        assert!(TrustedProxies::parse::<String>(&[]).unwrap().is_empty());
    }

    #[test]
    fn parse_names_the_bad_entry() {
        for bad in [
            "10.0.0.0/33",
            "example.com",
            "",
            "10.0.0.1/",
            "fd00::/129",
            "1.2.3",
        ] {
            let err = TrustedProxies::parse(&["127.0.0.1", bad]).unwrap_err();
            assert_eq!(err.entry, bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let spoofed = [
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=5.6.7.8;proto=https"),
        ];
        assert_eq!(
            resolve("203.0.113.9", false, &spoofed),
            ("203.0.113.9".into(), false)
        );
        assert_eq!(
            resolve("203.0.113.9", true, &[("x-forwarded-proto", "http")]),
            ("203.0.113.9".into(), true)
        );
        // Nobody trusted: even a loopback or private peer is taken at its word only.
        let none = TrustedProxies::default();
        let info = ClientInfo::resolve(
            "10.0.0.1:1".parse().unwrap(),
            false,
            &headers(&spoofed),
            &none,
        );
        assert_eq!(info.ip.to_string(), "10.0.0.1");
        assert!(!info.secure);
    }

    #[test]
    fn trusted_peer_reports_scheme() {
        let cases: &[(Pairs, bool, bool)] = &[
            (&[("x-forwarded-proto", "https")], false, true),
            (&[("x-forwarded-proto", "HTTPS")], false, true),
            (&[("x-forwarded-proto", "https, http")], false, true),
            (&[("x-forwarded-proto", "http, https")], false, false),
            (&[("x-forwarded-proto", "http")], true, false),
            // No scheme header: the connection's own.
            (&[("x-forwarded-for", "1.2.3.4")], true, true),
            (&[], true, true),
            (&[], false, false),
        ];
        for (pairs, tls, want) in cases {
            assert_eq!(
                resolve("10.1.2.3", *tls, pairs).1,
                *want,
                "{pairs:?} tls={tls}"
            );
        }
    }

    #[test]
    fn x_forwarded_for_chains() {
        let cases: &[(&str, &[&str], &str)] = &[
            // No header: the peer.
            ("10.0.0.1", &[], "10.0.0.1"),
            ("10.0.0.1", &["198.51.100.7"], "198.51.100.7"),
            // Several trusted hops are skipped, right to left.
            (
                "10.0.0.1",
                &["198.51.100.7, 10.9.9.9, 192.168.1.10"],
                "198.51.100.7",
            ),
            // Whatever the client wrote to the left of its own address is not believed.
            (
                "10.0.0.1",
                &["6.6.6.6, 198.51.100.7, 10.9.9.9"],
                "198.51.100.7",
            ),
            // Repeated header lines form one list, in order.
            (
                "10.0.0.1",
                &["6.6.6.6, 198.51.100.7", "10.2.2.2"],
                "198.51.100.7",
            ),
            // All trusted: the leftmost.
            ("10.0.0.1", &["10.3.3.3, 10.2.2.2"], "10.3.3.3"),
            // Ports and brackets, as some proxies write them.
            (
                "10.0.0.1",
                &["198.51.100.7:5555, 10.2.2.2:80"],
                "198.51.100.7",
            ),
            ("10.0.0.1", &["[2001:db8::7]:443"], "2001:db8::7"),
            // IPv6 proxies and clients.
            ("[fd00::1]:8080", &["2001:db8::7, fd12::3"], "2001:db8::7"),
            ("[fd00::1]:8080", &["[2001:db8::8]"], "2001:db8::8"),
            // Mapped addresses are shown in their IPv4 form.
            (
                "[::ffff:10.0.0.1]:8080",
                &["::ffff:198.51.100.7"],
                "198.51.100.7",
            ),
            // Malformed entries stop the walk at the last good address.
            ("10.0.0.1", &["198.51.100.7, garbage, 10.2.2.2"], "10.2.2.2"),
            ("10.0.0.1", &["198.51.100.7, unknown"], "10.0.0.1"),
            ("10.0.0.1", &["198.51.100.7,,10.2.2.2"], "10.2.2.2"),
            ("10.0.0.1", &[""], "10.0.0.1"),
            // A malformed entry to the left of the client does not matter.
            ("10.0.0.1", &["garbage, 198.51.100.7"], "198.51.100.7"),
        ];
        for (peer, values, want) in cases {
            let pairs: Vec<_> = values.iter().map(|v| ("x-forwarded-for", *v)).collect();
            assert_eq!(resolve(peer, false, &pairs).0, *want, "{peer} {values:?}");
        }
    }

    #[test]
    fn non_ascii_x_forwarded_for_is_malformed() {
        let mut map = HeaderMap::new();
        map.append(X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.7"));
        map.append(X_FORWARDED_FOR, HeaderValue::from_bytes(b"\xff").unwrap());
        let info = ClientInfo::resolve("10.0.0.1:1".parse().unwrap(), false, &map, &trusted());
        assert_eq!(info.ip.to_string(), "10.0.0.1");
    }

    #[test]
    fn forwarded_header() {
        let cases: &[(Pairs, &str, bool)] = &[
            (
                &[("forwarded", "for=198.51.100.7;proto=https")],
                "198.51.100.7",
                true,
            ),
            (
                &[(
                    "forwarded",
                    r#"for=198.51.100.7;proto=https, for="[fd00::5]:80";proto=http"#,
                )],
                "198.51.100.7",
                true,
            ),
            (
                &[("forwarded", r#"For="[2001:db8:cafe::17]:4711""#)],
                "2001:db8:cafe::17",
                false,
            ),
            // A quoted comma does not split elements.
            (
                &[("forwarded", r#"for=198.51.100.7;ext="a,b";proto=https"#)],
                "198.51.100.7",
                true,
            ),
            // Unknown and obfuscated nodes stop the walk.
            (
                &[("forwarded", "for=198.51.100.7, for=unknown")],
                "10.0.0.1",
                false,
            ),
            (
                &[("forwarded", "for=_hidden, for=10.4.4.4;proto=https")],
                "10.4.4.4",
                true,
            ),
            (&[("forwarded", "proto=https")], "10.0.0.1", false),
            // X-Forwarded-* wins when both are present.
            (
                &[
                    ("forwarded", "for=198.51.100.7;proto=https"),
                    ("x-forwarded-for", "203.0.113.1"),
                ],
                "203.0.113.1",
                false,
            ),
        ];
        for (pairs, ip, secure) in cases {
            assert_eq!(
                resolve("10.0.0.1", false, pairs),
                (ip.to_string(), *secure),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn from_parts_reads_the_connection_extensions() {
        let (mut parts, ()) = http::Request::builder()
            .header("x-forwarded-for", "198.51.100.7")
            .header("x-forwarded-proto", "https")
            .body(())
            .unwrap()
            .into_parts();
        // Outside the connection loop: unknown peer, plain HTTP, headers not believed.
        let info = ClientInfo::from_parts(&parts, &trusted());
        assert_eq!(
            (info.ip.to_string(), info.secure),
            ("0.0.0.0".into(), false)
        );

        parts
            .extensions
            .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 1234))));
        parts.extensions.insert(Transport { secure: false });
        let info = ClientInfo::from_parts(&parts, &trusted());
        assert_eq!(
            (info.ip.to_string(), info.scheme()),
            ("198.51.100.7".into(), "https")
        );

        parts
            .extensions
            .insert(ConnectInfo(SocketAddr::from(([203, 0, 113, 9], 1234))));
        parts.extensions.insert(Transport { secure: true });
        let info = ClientInfo::from_parts(&parts, &trusted());
        assert_eq!(
            (info.ip.to_string(), info.scheme()),
            ("203.0.113.9".into(), "https")
        );
    }
}
