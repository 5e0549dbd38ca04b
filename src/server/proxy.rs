//! Behind a reverse proxy: whose address a request is.
//!
//! Every connection from a proxy comes from the proxy's address, so per-address
//! budgets would lump all clients together and the audit log would name the proxy.
//! With `--trusted-proxy ADDR[/PREFIX]` (repeatable), a connection from a trusted
//! address is taken to be from the nearest untrusted hop of its `X-Forwarded-For`
//! header, read right to left: what the proxy itself appended first, then what
//! earlier trusted proxies did. Anything further left was written by the client and
//! is not believed. From any other address the header is ignored.

use axum::http::HeaderMap;
use std::net::{IpAddr, SocketAddr};

/// The addresses whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    nets: Vec<(IpAddr, u8)>,
}

/// The most `X-Forwarded-For` entries read (a chain of proxies is a few long).
const MAX_HOPS: usize = 32;

impl TrustedProxies {
    /// Parses `ADDR` or `ADDR/PREFIX` entries (IPv4 or IPv6).
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let nets = entries
            .iter()
            .map(|e| {
                let e = e.trim();
                let (addr, prefix) = match e.split_once('/') {
                    Some((a, p)) => (a, Some(p)),
                    None => (e, None),
                };
                let ip: IpAddr = addr
                    .parse()
                    .map_err(|_| format!("trusted proxy '{e}': expected an IP address or ADDRESS/PREFIX"))?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let prefix = match prefix {
                    None => max,
                    Some(p) => p
                        .parse::<u8>()
                        .ok()
                        .filter(|p| *p <= max)
                        .ok_or_else(|| format!("trusted proxy '{e}': the prefix must be 0–{max}"))?,
                };
                Ok((ip, prefix))
            })
            .collect::<Result<_, String>>()?;
        Ok(TrustedProxies { nets })
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|(net, prefix)| within(ip, canonical(*net), *prefix))
    }

    /// The client a request from `peer` is from (port 0 when it comes from the header).
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
        if !self.trusts(peer.ip()) {
            return peer;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut nearest = peer.ip();
        for hop in hops.iter().rev().take(MAX_HOPS) {
            // A hop that is not an address (`unknown`, garbage): nothing to its left
            // can be believed; the last address believed stands.
            let Some(ip) = parse_hop(hop) else { break };
            nearest = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        if nearest == peer.ip() {
            peer
        } else {
            SocketAddr::new(nearest, 0)
        }
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`,
/// `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    hop.parse::<SocketAddr>().ok().map(|s| s.ip())
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn within(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// How a client address is written in the audit log: without a port when it came
/// from a proxy's header (port 0).
pub fn remote_text(addr: SocketAddr) -> String {
    if addr.port() == 0 {
        addr.ip().to_string()
    } else {
        addr.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap_or_else(|_| unreachable!()));
        }
        h
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap_or_default()
    }

    const PROXY: &str = "10.0.0.2:40000";

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let p = proxies(&["10.0.0.0/24", "192.0.2.9"]);
        let peer: SocketAddr = PROXY.parse().unwrap_or_else(|_| unreachable!());
        let client = |xff: &[&str]| remote_text(p.client(peer, &headers(xff)));
        assert_eq!(client(&["203.0.113.7"]), "203.0.113.7");
        // What the client wrote itself (left of the first untrusted hop) is not believed.
        assert_eq!(client(&["198.51.100.1, 203.0.113.7"]), "203.0.113.7");
        // Trusted proxies along the way are skipped, in several headers too.
        assert_eq!(client(&["198.51.100.1, 203.0.113.7", "192.0.2.9, 10.0.0.5"]), "203.0.113.7");
        // Only trusted hops: the furthest one.
        assert_eq!(client(&["192.0.2.9"]), "192.0.2.9");
        // No header, or garbage: the proxy itself.
        assert_eq!(client(&[]), PROXY);
        assert_eq!(client(&["unknown"]), PROXY);
        assert_eq!(client(&["198.51.100.1, garbage, 10.0.0.7"]), "10.0.0.7");
        assert_eq!(client(&["[2001:db8::1]:443"]), "2001:db8::1");
    }

    #[test]
    fn the_header_is_ignored_from_anyone_else() {
        let p = proxies(&["10.0.0.0/24"]);
        let peer: SocketAddr = "10.0.1.2:5000".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(p.client(peer, &headers(&["203.0.113.7"])), peer);
        assert_eq!(TrustedProxies::default().client(peer, &headers(&["203.0.113.7"])), peer);
        // IPv4-mapped IPv6 peers are matched as IPv4.
        let mapped: SocketAddr = "[::ffff:10.0.0.3]:5000".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(remote_text(p.client(mapped, &headers(&["203.0.113.7"]))), "203.0.113.7");
    }

    #[test]
    fn entries_are_addresses_or_networks() {
        assert!(TrustedProxies::parse(&["10.0.0.1".into(), "fd00::/8".into(), "0.0.0.0/0".into()]).is_ok());
        for bad in ["nginx", "10.0.0.1/33", "fd00::/129", "10.0.0.1/x"] {
            assert!(TrustedProxies::parse(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
