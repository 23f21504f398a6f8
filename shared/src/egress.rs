//! The outbound policy for every request to a URL a user supplied (Web Push endpoints and
//! webhook URLs): which URLs may be requested, which addresses may be connected to, and the
//! one HTTP client that enforces both.
//!
//! Guarantees:
//! - **one parser decides**: [`EgressPolicy::check_url`] parses with the `url` crate, the WHATWG
//!   parser `reqwest` itself uses, and hands back the parsed [`Url`] to send to. Decimal, hex,
//!   octal and short IPv4 forms (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`), percent-encoded
//!   hosts and `[::ffff:a.b.c.d]` are normalised there, so the check sees the address the client
//!   would connect to;
//! - **https only**; `http` only to a loopback host, and loopback hosts (`127.0.0.0/8`, `[::1]`,
//!   `localhost` and `*.localhost`, with or without a trailing dot) only when the deployment
//!   allows them (`PUSH_ALLOW_LOOPBACK`, `WEBHOOK_ALLOW_LOOPBACK`: devstack and the tests). No credentials in the URL;
//! - **only public addresses**: an IP literal is checked by [`reserved_range`]; a host name is
//!   resolved by the client's own resolver ([`EgressPolicy::client`]), which checks *every*
//!   address the name resolves to and refuses the name if any is not public. The connection goes
//!   to the addresses that were checked (the resolver's answer is the connector's only input), so
//!   there is no second lookup an attacker's DNS could answer differently;
//! - **no redirects**: the client never follows one, and no proxy from the environment is used
//!   (a proxy would resolve the name itself, unchecked). A caller treats a 3xx as a failed send.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
pub use url::Url;

use crate::limits;

/// Why a URL or an address is refused. The text completes "the endpoint …" in a 422 field error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("is longer than {} bytes", limits::URL_MAX_BYTES)]
    TooLong,
    #[error("is not an absolute URL")]
    NotAUrl,
    #[error("must not carry credentials")]
    Credentials,
    #[error("must be an https URL")]
    NotHttps,
    #[error("names a loopback host, which this deployment does not allow")]
    Loopback,
    #[error("names a {range} address ({ip}), which is not public")]
    Reserved { range: &'static str, ip: IpAddr },
    #[error("host {host} resolves to a {range} address ({ip}), which is not public")]
    ResolvesToReserved {
        host: String,
        range: &'static str,
        ip: IpAddr,
    },
}

/// Who may be requested. Copy it into every component that sends to user-supplied URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EgressPolicy {
    /// Loopback hosts and addresses are allowed (and `http` to them): devstack and tests only.
    pub allow_loopback: bool,
}

impl EgressPolicy {
    pub fn new(allow_loopback: bool) -> Self {
        EgressPolicy { allow_loopback }
    }

    /// Is `raw` a URL this policy lets a request go to, as far as the URL alone says? Returns the
    /// parsed URL: send to it, not to the string, so nothing parses it twice. Host names are
    /// checked again when the client resolves them.
    pub fn check_url(&self, raw: &str) -> Result<Url, Refused> {
        if raw.len() > limits::URL_MAX_BYTES {
            return Err(Refused::TooLong);
        }
        let url = Url::parse(raw).map_err(|_| Refused::NotAUrl)?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(Refused::NotHttps);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refused::Credentials);
        }
        let loopback = match url.host() {
            Some(url::Host::Domain(name)) => is_localhost_name(name),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => return Err(Refused::NotAUrl),
        };
        if loopback && !self.allow_loopback {
            return Err(Refused::Loopback);
        }
        if url.scheme() == "http" && !loopback {
            return Err(Refused::NotHttps);
        }
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
            self.check_ip(ip)?;
        }
        Ok(url)
    }

    /// May a connection go to `ip`?
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        match reserved_range(ip) {
            None => Ok(()),
            Some(LOOPBACK) if self.allow_loopback => Ok(()),
            Some(range) => Err(Refused::Reserved { range, ip }),
        }
    }

    /// Resolves `host` and checks every address; refuses the name if any address is refused.
    /// An `Err` of type [`Refused`] is the policy's; any other is the lookup's (transient).
    pub async fn resolve(
        &self,
        host: &str,
    ) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        if is_localhost_name(host) && !self.allow_loopback {
            return Err(Box::new(Refused::Loopback));
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
        for a in &addrs {
            if let Err(Refused::Reserved { range, ip }) = self.check_ip(a.ip()) {
                return Err(Box::new(Refused::ResolvesToReserved {
                    host: host.to_owned(),
                    range,
                    ip,
                }));
            }
        }
        Ok(addrs)
    }

    /// The HTTP client for user-supplied URLs: resolves through [`EgressPolicy::resolve`], never
    /// follows a redirect, ignores proxy settings. `builder` carries the caller's timeouts and
    /// pool settings; this sets the rest.
    pub fn client(&self, builder: reqwest::ClientBuilder) -> reqwest::Result<reqwest::Client> {
        builder
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(CheckedResolver { policy: *self }))
            .build()
    }
}

/// The policy's refusal somewhere in `error`'s source chain (a request the client's resolver
/// refused), if there is one.
pub fn refusal<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<Refused>() {
            return Some(r);
        }
        next = e.source();
    }
    None
}

/// `reqwest`'s resolver for the policy's client. `reqwest` does not call it for IP-literal hosts;
/// [`EgressPolicy::check_url`] has checked those.
struct CheckedResolver {
    policy: EgressPolicy,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = policy.resolve(&host).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// `localhost`, `*.localhost` (RFC 6761 §6.3), with or without the root's trailing dot.
fn is_localhost_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// The name [`reserved_range`] gives loopback addresses (allowed by `allow_loopback`).
pub const LOOPBACK: &str = "loopback";

/// The special-purpose range `ip` belongs to (IANA's IPv4 and IPv6 special-purpose registries),
/// or `None` for a public unicast address. IPv6 is public only inside 2000::/3 and outside its
/// special blocks; NAT64 (64:ff9b::/96) is judged by the IPv4 address it embeds, every other
/// IPv4-embedding form (IPv4-mapped, -compatible, 6to4, Teredo) is refused outright.
pub fn reserved_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => reserved_v4(v4),
        IpAddr::V6(v6) => reserved_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn reserved_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "this-network (unspecified)"),
        ([10, 0, 0, 0], 8, "private"),
        ([100, 64, 0, 0], 10, "carrier-grade NAT"),
        ([127, 0, 0, 0], 8, LOOPBACK),
        ([169, 254, 0, 0], 16, "link-local (cloud metadata)"),
        ([172, 16, 0, 0], 12, "private"),
        ([192, 0, 0, 0], 24, "IETF protocol assignment"),
        ([192, 0, 2, 0], 24, "documentation"),
        ([192, 31, 196, 0], 24, "AS112"),
        ([192, 52, 193, 0], 24, "AMT"),
        ([192, 88, 99, 0], 24, "6to4 relay"),
        ([192, 168, 0, 0], 16, "private"),
        ([192, 175, 48, 0], 24, "AS112"),
        ([198, 18, 0, 0], 15, "benchmarking"),
        ([198, 51, 100, 0], 24, "documentation"),
        ([203, 0, 113, 0], 24, "documentation"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([240, 0, 0, 0], 4, "reserved (or broadcast)"),
    ];
    RANGES
        .iter()
        .find(|(net, len, _)| in_v4(ip, *net, *len))
        .map(|(_, _, name)| *name)
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    (u128::from(ip) & mask) == (u128::from(Ipv6Addr::from(net)) & mask)
}

fn reserved_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_loopback() {
        return Some(LOOPBACK);
    }
    if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        // NAT64's well-known prefix: a DNS64 resolver synthesises these for IPv4-only hosts.
        let [.., a, b] = ip.segments();
        let v4 = Ipv4Addr::from((u32::from(a) << 16) | u32::from(b));
        return reserved_v4(v4).map(|_| "NAT64 of a non-public IPv4");
    }
    const RANGES: &[([u16; 8], u32, &str)] = &[
        ([0, 0, 0, 0, 0, 0xffff, 0, 0], 96, "IPv4-mapped"),
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "local-use NAT64"),
        (
            [0, 0, 0, 0, 0, 0, 0, 0],
            8,
            "reserved (unspecified, IPv4-compatible)",
        ),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only"),
        (
            [0x2001, 0, 0, 0, 0, 0, 0, 0],
            23,
            "IETF protocol assignment (Teredo, benchmarking)",
        ),
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation"),
        ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "6to4"),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation"),
        ([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, "segment routing"),
        (
            [0xfc00, 0, 0, 0, 0, 0, 0, 0],
            7,
            "unique local (cloud metadata)",
        ),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local"),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast"),
    ];
    if let Some((_, _, name)) = RANGES.iter().find(|(net, len, _)| in_v6(ip, *net, *len)) {
        return Some(name);
    }
    // Everything outside global unicast (2000::/3) is reserved or unassigned.
    (!in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3)).then_some("non-global IPv6")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn only_public_unicast_addresses_are_unreserved() {
        for public in [
            "8.8.8.8",
            "142.250.74.46",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "2a00:1450:4001:80b::200a",
            "2606:4700::6810:84e5",
            "64:ff9b::808:808",
        ] {
            assert_eq!(reserved_range(ip(public)), None, "{public}");
        }
        for (reserved, range) in [
            ("127.0.0.1", LOOPBACK),
            ("127.255.255.254", LOOPBACK),
            ("::1", LOOPBACK),
            ("0.0.0.0", "this-network (unspecified)"),
            ("10.0.3.7", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "carrier-grade NAT"),
            ("100.127.255.255", "carrier-grade NAT"),
            ("169.254.169.254", "link-local (cloud metadata)"),
            ("192.0.0.192", "IETF protocol assignment"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.1", "documentation"),
            ("203.0.113.1", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("192.88.99.1", "6to4 relay"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved (or broadcast)"),
            ("255.255.255.255", "reserved (or broadcast)"),
            ("::", "reserved (unspecified, IPv4-compatible)"),
            ("::a00:1", "reserved (unspecified, IPv4-compatible)"),
            ("::ffff:127.0.0.1", "IPv4-mapped"),
            ("::ffff:10.0.0.1", "IPv4-mapped"),
            ("::ffff:8.8.8.8", "IPv4-mapped"),
            ("64:ff9b::a00:1", "NAT64 of a non-public IPv4"),
            ("64:ff9b::7f00:1", "NAT64 of a non-public IPv4"),
            ("64:ff9b::a9fe:a9fe", "NAT64 of a non-public IPv4"),
            ("64:ff9b:1::1", "local-use NAT64"),
            ("2001::1", "IETF protocol assignment (Teredo, benchmarking)"),
            ("2001:db8::1", "documentation"),
            ("2002:a00:1::1", "6to4"),
            ("fd00:ec2::254", "unique local (cloud metadata)"),
            ("fc00::1", "unique local (cloud metadata)"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "non-global IPv6"),
            ("ff02::1", "multicast"),
            ("4000::1", "non-global IPv6"),
        ] {
            assert_eq!(reserved_range(ip(reserved)), Some(range), "{reserved}");
        }
    }

    /// Every host form the WHATWG parser normalises to a loopback, private or metadata address is
    /// refused, with loopback allowed or not (only the plain loopback forms pass when allowed).
    #[test]
    fn host_forms_are_judged_by_the_address_the_client_would_connect_to() {
        let strict = EgressPolicy::new(false);
        let lenient = EgressPolicy::new(true);
        for loopback in [
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://localhost./",
            "http://127.0.0.1./",
            "http://0x7f.0.0.1./",
            "http://LOCALHOST/",
            "http://api.localhost/",
            "http://%31%32%37.0.0.1/",
            "https://127.0.0.1:8443/x",
            "https://[::1]/",
            "https://2130706433/",
            "https://0x7f000001/",
        ] {
            assert_eq!(
                strict.check_url(loopback),
                Err(Refused::Loopback),
                "{loopback}"
            );
            assert!(lenient.check_url(loopback).is_ok(), "{loopback}");
        }
        for reserved in [
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://[::ffff:a9fe:a9fe]/",
            "https://169.254.169.254/latest/meta-data/",
            "https://0xa9fea9fe/",
            "https://2852039166/",
            "https://%31%36%39.254.169.254/",
            "https://100.64.0.1/",
            "https://10.1/",
            "https://012.0.0.1/",
            "https://[64:ff9b::a00:1]/",
            "https://[fe80::1]/",
            "https://[fd00:ec2::254]/",
            "https://0.0.0.0/",
            "https://255.255.255.255/",
        ] {
            for policy in [strict, lenient] {
                assert!(
                    matches!(policy.check_url(reserved), Err(Refused::Reserved { .. })),
                    "{reserved}: {:?}",
                    policy.check_url(reserved)
                );
            }
        }
        // What the checked URL says is what the client gets.
        let url = lenient
            .check_url("http://0x7f.1:8080/push")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/push");
    }

    #[test]
    fn only_https_without_credentials_except_http_to_an_allowed_loopback() {
        let strict = EgressPolicy::new(false);
        let lenient = EgressPolicy::new(true);
        assert!(strict
            .check_url("https://fcm.googleapis.com/fcm/send/abc")
            .is_ok());
        assert!(strict.check_url("https://push.example.com./x").is_ok());
        for (bad, why) in [
            ("http://push.example.com/x", Refused::NotHttps),
            ("ftp://push.example.com/x", Refused::NotHttps),
            ("file:///etc/passwd", Refused::NotHttps),
            ("https://user:pw@push.example.com/x", Refused::Credentials),
            ("https://user@push.example.com/x", Refused::Credentials),
            ("/relative", Refused::NotAUrl),
            ("not a url", Refused::NotAUrl),
            ("https://", Refused::NotAUrl),
        ] {
            assert_eq!(strict.check_url(bad), Err(why.clone()), "{bad}");
            assert_eq!(lenient.check_url(bad), Err(why), "{bad}");
        }
        let long = format!(
            "https://push.example.com/{}",
            "x".repeat(limits::URL_MAX_BYTES)
        );
        assert_eq!(strict.check_url(&long), Err(Refused::TooLong));
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_that_resolves_to_a_reserved_address() {
        let strict = EgressPolicy::new(false);
        let lenient = EgressPolicy::new(true);
        // `localhost` is refused by name, and a name resolving to loopback by its address:
        // `127.0.0.1` as a *name* goes through the resolver (getaddrinfo) like any other.
        let refused = strict.resolve("localhost").await.err();
        assert_eq!(
            refused.as_deref().and_then(|e| e.downcast_ref::<Refused>()),
            Some(&Refused::Loopback)
        );
        let refused = strict.resolve("127.0.0.1").await.err();
        assert!(
            matches!(
                refused.as_deref().and_then(|e| e.downcast_ref::<Refused>()),
                Some(Refused::ResolvesToReserved {
                    range: LOOPBACK,
                    ..
                })
            ),
            "{refused:?}"
        );
        let allowed = lenient.resolve("127.0.0.1").await.unwrap_or_default();
        assert_eq!(
            allowed.iter().map(|a| a.ip()).collect::<Vec<_>>(),
            [ip("127.0.0.1")]
        );
        let refused = lenient.resolve("10.0.0.1").await.err();
        assert!(
            matches!(
                refused.as_deref().and_then(|e| e.downcast_ref::<Refused>()),
                Some(Refused::ResolvesToReserved {
                    range: "private",
                    ..
                })
            ),
            "{refused:?}"
        );
    }

    /// Through the client: a name resolving to a listening loopback port is refused at connect
    /// time (the listener never sees a connection), and the refusal is found in the error.
    #[tokio::test]
    async fn the_client_refuses_at_connect_time_and_never_reaches_the_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let client = EgressPolicy::new(false)
            .client(reqwest::Client::builder())
            .unwrap_or_else(|e| panic!("{e}"));
        // check_url would refuse `localhost`; a request built directly shows the resolver holds
        // on its own.
        let err = client
            .get(format!("https://localhost:{port}/"))
            .send()
            .await
            .err()
            .unwrap_or_else(|| panic!("the request must fail"));
        assert_eq!(refusal(&err), Some(&Refused::Loopback), "{err:?}");
        let accepted =
            tokio::time::timeout(std::time::Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "the listener got a connection");
    }
}
