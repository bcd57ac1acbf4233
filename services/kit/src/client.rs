//! Who is on the other end of a request: the client's address — the connection's peer, or,
//! when that peer is a proxy this process trusts (or the call came from inside the process, from
//! the gateway), the address the proxy says it serves in `X-Forwarded-For` — and the request id
//! a client may choose, within bounds. Nothing a client sends is believed otherwise: behind an
//! ingress every client has an address of its own, and no client can pose as another.

use std::net::{IpAddr, SocketAddr};

/// The header a proxy (and civic's gateway) names the client's address in.
pub const FORWARDED_FOR: &str = "x-forwarded-for";

/// The longest request id accepted from a client.
pub const MAX_REQUEST_ID: usize = 128;

/// Address ranges whose connections are proxies this process believes (CIDRs, `10.0.0.0/8`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// The ranges of `cidrs` (an address alone is a range of one); the error names the bad one.
    pub fn parse(cidrs: &[String]) -> Result<Self, String> {
        cidrs
            .iter()
            .map(|text| {
                let (address, bits) = match text.split_once('/') {
                    Some((a, b)) => (a, Some(b)),
                    None => (text.as_str(), None),
                };
                let address: IpAddr =
                    address.trim().parse().map_err(|_| format!("{text:?} is not an address range"))?;
                let max = if address.is_ipv4() { 32 } else { 128 };
                let bits = match bits {
                    Some(b) => b
                        .trim()
                        .parse::<u8>()
                        .ok()
                        .filter(|b| *b <= max)
                        .ok_or_else(|| format!("{text:?} has a bad prefix length"))?,
                    None => max,
                };
                Ok((address, bits))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether `address` is in one of the ranges.
    pub fn contains(&self, address: IpAddr) -> bool {
        self.0.iter().any(|(network, bits)| match (network, address) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix(u128::from(u32::from(*n)), u128::from(u32::from(a)), *bits, 32),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix(u128::from(*n), u128::from(a), *bits, 128),
            _ => false,
        })
    }
}

fn prefix(network: u128, address: u128, bits: u8, width: u32) -> bool {
    let bits = u32::from(bits);
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (network >> shift) == (address >> shift)
}

/// The client's address: the peer's, unless the peer is trusted (`None`, a call from inside this
/// process, counts as trusted), in which case the nearest address in `X-Forwarded-For` that is
/// not itself a trusted proxy (or the farthest, when all are).
pub fn address(headers: &http::HeaderMap, peer: Option<SocketAddr>, trusted: &TrustedProxies) -> Option<IpAddr> {
    let peer = peer.map(|p| p.ip());
    if peer.is_some_and(|p| !trusted.contains(p)) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all(FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    forwarded.iter().rev().find(|a| !trusted.contains(**a)).or(forwarded.first()).copied().or(peer)
}

/// Whether a client's request id can be kept: 1 to 128 visible ASCII characters without spaces
/// (a UUID, a trace's id); any other is replaced by one of civic's own.
pub fn is_valid_request_id(value: &http::HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty() && bytes.len() <= MAX_REQUEST_ID && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// Drops a request id the client may not choose, so that one is made up instead.
pub fn drop_invalid_request_id(headers: &mut http::HeaderMap) {
    let valid = headers.get_all(crate::server::REQUEST_ID).iter().count() == 1
        && headers.get(crate::server::REQUEST_ID).is_some_and(is_valid_request_id);
    if !valid {
        headers.remove(crate::server::REQUEST_ID);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).expect("ranges")
    }

    #[test]
    fn ranges_match_by_prefix() {
        let trusted = ranges(&["10.0.0.0/8", "192.168.1.7", "fd00::/8"]);
        assert!(trusted.contains("10.1.2.3".parse().expect("ip")));
        assert!(!trusted.contains("11.0.0.1".parse().expect("ip")));
        assert!(trusted.contains("192.168.1.7".parse().expect("ip")));
        assert!(!trusted.contains("192.168.1.8".parse().expect("ip")));
        assert!(trusted.contains("fd12::1".parse().expect("ip")));
        assert!(!trusted.contains("::1".parse().expect("ip")));
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["ten".into()]).is_err());
    }

    #[test]
    fn forwarded_addresses_are_believed_from_trusted_proxies_only() {
        let trusted = ranges(&["10.0.0.0/8"]);
        let mut headers = http::HeaderMap::new();
        headers.insert(FORWARDED_FOR, "203.0.113.9, 198.51.100.4, 10.0.0.3".parse().expect("header"));
        let ingress: SocketAddr = "10.0.0.2:443".parse().expect("addr");
        let outsider: SocketAddr = "198.51.100.77:5000".parse().expect("addr");
        assert_eq!(address(&headers, Some(ingress), &trusted), Some("198.51.100.4".parse().expect("ip")));
        assert_eq!(address(&headers, Some(outsider), &trusted), Some(outsider.ip()), "an outsider's header is ignored");
        assert_eq!(address(&headers, None, &trusted), Some("198.51.100.4".parse().expect("ip")), "in-process");
        assert_eq!(address(&http::HeaderMap::new(), Some(ingress), &trusted), Some(ingress.ip()));
    }

    #[test]
    fn request_ids_are_bounded() {
        let mut headers = http::HeaderMap::new();
        headers.insert(crate::server::REQUEST_ID, "req-7f3a".parse().expect("header"));
        drop_invalid_request_id(&mut headers);
        assert!(headers.contains_key(crate::server::REQUEST_ID));
        headers.insert(crate::server::REQUEST_ID, "x".repeat(129).parse().expect("header"));
        drop_invalid_request_id(&mut headers);
        assert!(!headers.contains_key(crate::server::REQUEST_ID));
        headers.insert(crate::server::REQUEST_ID, "a b".parse().expect("header"));
        drop_invalid_request_id(&mut headers);
        assert!(!headers.contains_key(crate::server::REQUEST_ID));
    }
}
