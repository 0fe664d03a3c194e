//! The SSRF guard: webhook URLs must not reach loopback, private, link-local, shared,
//! multicast or cloud-metadata addresses unless the configured allowlist permits them.
//!
//! The guard checks a URL when a rule is created, and again at every send: the webhook
//! client resolves host names through [`GuardedResolver`], which refuses forbidden
//! addresses, so a name that changes its answer after creation (DNS rebinding) is still
//! refused; redirects are never followed and proxies from the environment are ignored.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsrfError {
    #[error("webhook url {0:?} is not a valid absolute URL")]
    Invalid(String),
    #[error("webhook url must use http or https, not {0:?}")]
    Scheme(String),
    #[error("webhook url must not carry user credentials")]
    Credentials,
    #[error("webhook host {host:?} resolves to {addr}, a {kind} address, which is not allowed")]
    Forbidden {
        host: String,
        addr: IpAddr,
        kind: &'static str,
    },
    #[error("webhook host {0:?} is not allowed")]
    ForbiddenHost(String),
    #[error("webhook host {host:?} cannot be resolved: {reason}")]
    Unresolvable { host: String, reason: String },
}

/// An allowlist entry: a network (`10.0.0.0/8`, `::1/128`, a bare address) or a host name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allow {
    Net { addr: IpAddr, prefix: u8 },
    Host(String),
}

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix.min(32)))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix.min(128)))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The kind of a forbidden address, `None` when it is a public one.
pub fn forbidden_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_kind(v4);
            }
            let seg0 = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                Some("metadata")
            } else if seg0 & 0xfe00 == 0xfc00 {
                Some("private")
            } else if seg0 & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if seg0 & 0xff00 == 0xff00 {
                Some("multicast")
            } else if seg0 == 0x64 && v6.segments()[1] == 0xff9b {
                // NAT64 can reach any IPv4 address, including forbidden ones
                Some("nat64")
            } else {
                None
            }
        }
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254)
        || ip == Ipv4Addr::new(168, 63, 129, 16)
        || ip == Ipv4Addr::new(100, 100, 100, 200)
    {
        Some("metadata")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if o[0] == 0 {
        Some("unspecified")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("shared")
    } else if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 {
        Some("reserved")
    } else {
        None
    }
}

/// Host names that name the local machine or a metadata service.
fn forbidden_host(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost"
        || h.ends_with(".localhost")
        || h == "metadata.google.internal"
        || h == "metadata"
        || h == "instance-data"
}

/// The guard, built from `alerts.ssrf_allowlist`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SsrfGuard {
    allow: Vec<Allow>,
}

impl SsrfGuard {
    /// Parses the allowlist; an entry that is neither a network nor a host name is an error.
    pub fn new(allowlist: &[String]) -> Result<Self, String> {
        let mut allow = Vec::new();
        for entry in allowlist {
            let e = entry.trim();
            if let Some((addr, prefix)) = e.split_once('/') {
                let addr: IpAddr = addr
                    .parse()
                    .map_err(|_| format!("allowlist entry {e:?}: {addr:?} is not an address"))?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
                let prefix: u8 = prefix
                    .parse()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| format!("allowlist entry {e:?}: bad prefix length"))?;
                allow.push(Allow::Net { addr, prefix });
            } else if let Ok(addr) = e.parse::<IpAddr>() {
                let prefix = if addr.is_ipv4() { 32 } else { 128 };
                allow.push(Allow::Net { addr, prefix });
            } else if !e.is_empty()
                && e.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            {
                allow.push(Allow::Host(e.to_ascii_lowercase()));
            } else {
                return Err(format!(
                    "allowlist entry {e:?} is neither a network nor a host name"
                ));
            }
        }
        Ok(SsrfGuard { allow })
    }

    fn host_allowed(&self, host: &str) -> bool {
        let h = host.trim_end_matches('.').to_ascii_lowercase();
        self.allow
            .iter()
            .any(|a| matches!(a, Allow::Host(x) if *x == h))
    }

    fn ip_allowed(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.allow
            .iter()
            .any(|a| matches!(a, Allow::Net { addr, prefix } if in_net(ip, *addr, *prefix)))
    }

    /// Checks one resolved address of `host`.
    pub fn check_addr(&self, host: &str, ip: IpAddr) -> Result<(), SsrfError> {
        if self.host_allowed(host) || self.ip_allowed(ip) {
            return Ok(());
        }
        match forbidden_kind(ip) {
            Some(kind) => Err(SsrfError::Forbidden {
                host: host.to_string(),
                addr: ip,
                kind,
            }),
            None => Ok(()),
        }
    }

    /// Checks the form of a URL and returns its host, port and whether the host is an IP
    /// literal (checked here) or a name (to be resolved).
    pub fn check_form(&self, url: &str) -> Result<(String, u16, Option<IpAddr>), SsrfError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| SsrfError::Invalid(url.to_string()))?;
        match parsed.scheme() {
            "http" | "https" => {}
            other => return Err(SsrfError::Scheme(other.to_string())),
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(SsrfError::Credentials);
        }
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| SsrfError::Invalid(url.to_string()))?;
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| SsrfError::Invalid(url.to_string()))?
            .to_string();
        let ip = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok();
        match ip {
            Some(ip) => self.check_addr(&host, ip)?,
            None => {
                if forbidden_host(&host) && !self.host_allowed(&host) {
                    return Err(SsrfError::ForbiddenHost(host));
                }
            }
        }
        Ok((host, port, ip))
    }

    /// Checks a URL completely, resolving its host name (every address must be allowed).
    pub async fn check_url(&self, url: &str) -> Result<(), SsrfError> {
        let (host, port, ip) = self.check_form(url)?;
        if ip.is_some() {
            return Ok(());
        }
        let addrs = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| SsrfError::Unresolvable {
                host: host.clone(),
                reason: e.to_string(),
            })?;
        let mut any = false;
        for a in addrs {
            any = true;
            self.check_addr(&host, a.ip())?;
        }
        if !any {
            return Err(SsrfError::Unresolvable {
                host,
                reason: "no addresses".into(),
            });
        }
        Ok(())
    }
}

/// A DNS resolver for the webhook client that refuses forbidden addresses.
pub struct GuardedResolver {
    pub guard: Arc<SsrfGuard>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = Arc::clone(&self.guard);
        let host = name.as_str().to_string();
        Box::pin(async move {
            if forbidden_host(&host) && !guard.host_allowed(&host) {
                return Err(Box::new(SsrfError::ForbiddenHost(host))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?
                .collect();
            for a in &addrs {
                guard
                    .check_addr(&host, a.ip())
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert!(forbidden_kind(ip).is_some(), "{ip} must be forbidden");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            let ip: IpAddr = ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert!(forbidden_kind(ip).is_none(), "{ip} is public");
        }
    }

    #[test]
    fn urls_are_checked_and_the_allowlist_opens_them() {
        let strict = SsrfGuard::default();
        assert!(strict.check_form("http://127.0.0.1:9000/hook").is_err());
        assert!(strict.check_form("http://[::1]/hook").is_err());
        assert!(strict.check_form("http://169.254.169.254/latest").is_err());
        assert!(strict.check_form("http://localhost/hook").is_err());
        assert!(strict.check_form("ftp://example.com/x").is_err());
        assert!(strict.check_form("http://user:pw@example.com/x").is_err());
        assert!(strict.check_form("not a url").is_err());
        assert!(strict.check_form("https://93.184.216.34/hook").is_ok());
        let open = SsrfGuard::new(&["127.0.0.0/8".into(), "localhost".into()]).unwrap_or_default();
        assert!(open.check_form("http://127.0.0.1:9000/hook").is_ok());
        assert!(open.check_form("http://localhost:9000/hook").is_ok());
        assert!(open.check_form("http://10.0.0.1/hook").is_err());
        assert!(SsrfGuard::new(&["10.0.0.0/40".into()]).is_err());
        assert!(SsrfGuard::new(&["bad host!".into()]).is_err());
    }
}
