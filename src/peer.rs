//! Who is on the other end of a connection: the peer's address, or behind a trusted proxy
//! (`CHAT_TRUSTED_PROXIES`) the client's address the proxy put in `X-Forwarded-For`.
//!
//! `X-Forwarded-For` is the client's word unless a proxy we trust wrote it, so it is read only
//! when the peer is a trusted proxy, and from the right: each trusted proxy appends the address
//! it saw, so the right-most address that is not a trusted proxy is the first one nobody we
//! trust could have been lied to about.

use std::net::IpAddr;

use ipnet::IpNet;

/// The networks whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// The address a request or a socket is recorded as coming from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl TrustedProxies {
    /// Comma-separated networks (`10.0.0.0/8`) or addresses (`127.0.0.1`).
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("{item:?} is neither a network (10.0.0.0/8) nor an address")
                    })
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|network| network.contains(&address))
    }

    /// The client's address: `peer`, unless `peer` is a trusted proxy, then the right-most
    /// address of the `X-Forwarded-For` values (in the order received) that is not a trusted
    /// proxy (the left-most when all are).
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl IntoIterator<Item = &'a str>,
    ) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let entries: Vec<&str> = forwarded_for
            .into_iter()
            .flat_map(|value| value.split(','))
            .collect();
        // Right to left, up to the first entry that is not an address: what lies left of it
        // came through something that does not write addresses.
        let from_the_right: Vec<IpAddr> = entries
            .iter()
            .rev()
            .map_while(|entry| entry.trim().parse::<IpAddr>().ok())
            .collect();
        from_the_right
            .iter()
            .find(|address| !self.trusts(**address))
            .or(from_the_right.last())
            .copied()
            .unwrap_or(peer)
            .to_canonical()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy_and_read_from_the_right() {
        let trusted = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8").unwrap();
        let nobody = TrustedProxies::default();

        assert_eq!(
            nobody.client(ip("127.0.0.1"), ["203.0.113.9"]),
            ip("127.0.0.1")
        );
        assert_eq!(
            trusted.client(ip("198.51.100.1"), ["203.0.113.9"]),
            ip("198.51.100.1")
        );
        assert_eq!(
            trusted.client(ip("127.0.0.1"), ["203.0.113.9"]),
            ip("203.0.113.9")
        );
        // A client's own "X-Forwarded-For: 1.2.3.4" stays on the left of what the proxy saw.
        assert_eq!(
            trusted.client(ip("127.0.0.1"), ["1.2.3.4, 203.0.113.9", "10.1.2.3"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            trusted.client(ip("127.0.0.1"), ["10.0.0.2"]),
            ip("10.0.0.2")
        );
        assert_eq!(
            trusted.client(ip("127.0.0.1"), std::iter::empty()),
            ip("127.0.0.1")
        );
        assert_eq!(
            trusted.client(ip("::ffff:127.0.0.1"), ["203.0.113.9"]),
            ip("203.0.113.9")
        );
        // Reading stops at garbage: what lies left of it is not read.
        assert_eq!(
            trusted.client(ip("127.0.0.1"), ["junk, 203.0.113.9"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            trusted.client(ip("127.0.0.1"), ["203.0.113.9, junk"]),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn a_malformed_network_is_refused_with_its_text() {
        let error = TrustedProxies::parse("10.0.0.0/8, tenfour").unwrap_err();
        assert!(error.contains("tenfour"), "{error}");
    }
}
