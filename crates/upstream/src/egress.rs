//! Where upstream requests may go. An upstream proxy is trusted for module bytes (which the
//! checksum database judges), not for where agora connects: a redirect must not turn agora into a
//! way to read internal pages (cloud metadata, an admin port on loopback) and store them as
//! module files.
//!
//! - A redirect keeps the scheme of the request it answers.
//! - A redirect to an IP address of an internal class (loopback, private, link-local, unique
//!   local, unspecified, shared address space) is followed only when the configured URL's host is
//!   an address of the same class.
//! - A host name resolves only to addresses outside those classes, unless the name is one the
//!   configuration names ([`ClientOptions::internal_hosts`](crate::ClientOptions)): a company's
//!   own Athens or checksum database may well live at 10.x. A name that resolves only to internal
//!   addresses (after a redirect, or by DNS rebinding) fails to connect.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect::{Attempt, Policy};
use reqwest::Url;

/// The classes of addresses that are not the public internet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrClass {
    Loopback,
    Private,
    LinkLocal,
    Unspecified,
    Public,
}

/// The class of `ip` (IPv4-mapped IPv6 addresses count as their IPv4 address).
pub fn class(ip: IpAddr) -> AddrClass {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                AddrClass::Loopback
            } else if v4.is_unspecified() || o[0] == 0 {
                AddrClass::Unspecified
            } else if v4.is_link_local() {
                AddrClass::LinkLocal
            } else if v4.is_private() || (o[0] == 100 && (64..128).contains(&o[1])) {
                // RFC 1918, and RFC 6598 shared address space (carrier-grade NAT, some clouds).
                AddrClass::Private
            } else {
                AddrClass::Public
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return class(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                AddrClass::Loopback
            } else if v6.is_unspecified() {
                AddrClass::Unspecified
            } else if first & 0xffc0 == 0xfe80 {
                AddrClass::LinkLocal
            } else if first & 0xfe00 == 0xfc00 {
                AddrClass::Private
            } else {
                AddrClass::Public
            }
        }
    }
}

fn host_class(url: &Url) -> Option<AddrClass> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(class(IpAddr::V4(ip))),
        url::Host::Ipv6(ip) => Some(class(IpAddr::V6(ip))),
        url::Host::Domain(_) => None,
    }
}

/// Whether a redirect from the chain that began at `first` (the configured URL) and last went to
/// `previous`, to `next`, may be followed; the reason when not.
pub fn check_redirect(first: &Url, previous: &Url, next: &Url) -> Result<(), String> {
    if next.scheme() != previous.scheme() {
        return Err(format!(
            "redirect from {} to {} changes the scheme",
            previous.scheme(),
            next.scheme()
        ));
    }
    match host_class(next) {
        None | Some(AddrClass::Public) => Ok(()),
        Some(c) if host_class(first) == Some(c) => Ok(()),
        Some(c) => Err(format!(
            "redirect to a {} address ({}) from an upstream that is not there",
            format!("{c:?}").to_ascii_lowercase(),
            next.host_str().unwrap_or_default()
        )),
    }
}

/// The redirect policy of the upstream client: at most 10 hops, each passing [`check_redirect`].
pub fn redirect_policy() -> Policy {
    Policy::custom(|attempt: Attempt<'_>| {
        let previous = attempt.previous();
        if previous.len() >= 10 {
            return attempt.error("too many redirects");
        }
        let (Some(first), Some(last)) = (previous.first(), previous.last()) else {
            return attempt.follow();
        };
        match check_redirect(first, last, attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(why) => attempt.error(why),
        }
    })
}

/// A resolver that keeps internal addresses only for the configured host names.
#[derive(Debug)]
pub struct GuardedResolver {
    internal_ok: Arc<Vec<String>>,
}

impl GuardedResolver {
    pub fn new(internal_hosts: &[String]) -> GuardedResolver {
        GuardedResolver {
            internal_ok: Arc::new(
                internal_hosts
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
            ),
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allowed = self.internal_ok.clone();
        Box::pin(async move {
            let host = name.as_str().to_ascii_lowercase();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if allowed.contains(&host) {
                return Ok(Box::new(addrs.into_iter()) as Addrs);
            }
            let public: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| class(a.ip()) == AddrClass::Public)
                .collect();
            if public.is_empty() {
                return Err(format!(
                    "{host} resolves only to internal addresses, and it is not a configured upstream"
                )
                .into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn address_classes() {
        for (ip, c) in [
            ("127.0.0.1", AddrClass::Loopback),
            ("127.9.9.9", AddrClass::Loopback),
            ("::1", AddrClass::Loopback),
            ("10.1.2.3", AddrClass::Private),
            ("172.16.0.1", AddrClass::Private),
            ("172.32.0.1", AddrClass::Public),
            ("192.168.1.1", AddrClass::Private),
            ("100.64.0.1", AddrClass::Private),
            ("169.254.169.254", AddrClass::LinkLocal),
            ("fe80::1", AddrClass::LinkLocal),
            ("fd00::1", AddrClass::Private),
            ("::ffff:10.0.0.1", AddrClass::Private),
            ("0.0.0.0", AddrClass::Unspecified),
            ("8.8.8.8", AddrClass::Public),
            ("2001:db8::1", AddrClass::Public),
        ] {
            assert_eq!(class(ip.parse().unwrap()), c, "{ip}");
        }
    }

    #[test]
    fn redirects() {
        let public = u("https://proxy.example/m/@v/list");
        assert!(check_redirect(&public, &public, &u("https://cdn.example/x")).is_ok());
        assert!(check_redirect(&public, &public, &u("http://cdn.example/x")).is_err());
        assert!(check_redirect(&public, &public, &u("https://169.254.169.254/latest")).is_err());
        assert!(check_redirect(&public, &public, &u("https://10.0.0.1/")).is_err());
        assert!(check_redirect(&public, &public, &u("https://[::1]/")).is_err());
        let local = u("http://127.0.0.1:3000/m/@v/list");
        assert!(check_redirect(&local, &local, &u("http://127.0.0.2:4000/x")).is_ok());
        assert!(check_redirect(&local, &local, &u("http://10.0.0.1/x")).is_err());
        let private = u("http://10.0.0.5/m");
        assert!(check_redirect(&private, &private, &u("http://10.9.9.9/x")).is_ok());
        assert!(check_redirect(&private, &private, &u("http://127.0.0.1/x")).is_err());
    }

    #[tokio::test]
    async fn names_resolving_to_internal_addresses_need_to_be_configured() {
        let guarded = GuardedResolver::new(&[]);
        let err = guarded
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("localhost is internal");
        assert!(err.to_string().contains("internal"), "{err}");
        let configured = GuardedResolver::new(&["LocalHost".into()]);
        let addrs: Vec<_> = configured
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }
}
