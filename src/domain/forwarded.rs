//! Which forwarding headers to believe, and what a valid forwarded value is. Pure: the HTTP layer
//! passes the peer address and the header values in (`http::forwarded`).
//!
//! `X-Forwarded-For`, `-Host` and `-Proto` are written by whoever sends the request, so they
//! count only when the peer is a configured proxy (`[auth] trusted_proxies`). A value from a
//! trusted proxy must still be well formed, else it is ignored.

use std::net::{IpAddr, SocketAddr};

/// Longest host (with its port) taken from a header; DNS names are at most 253 characters.
pub const MAX_HOST_LEN: usize = 255;

/// An address or a CIDR block (`10.0.0.0/8`, `127.0.0.1`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    net: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// `addr` or `addr/prefix`; host bits beyond the prefix are ignored. IPv4-mapped IPv6
    /// addresses are taken as the IPv4 address they carry.
    pub fn parse(s: &str) -> Option<IpNet> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (a, Some(p.parse::<u8>().ok()?)),
            Some(_) => return None,
            None => (s, None),
        };
        let addr = addr.parse::<IpAddr>().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return None;
        }
        // `::ffff:10.0.0.0/104` is `10.0.0.0/8`.
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() && prefix >= 96 => {
                (IpAddr::V4(v6.to_ipv4_mapped().expect("checked")), prefix - 96)
            }
            a => (a, prefix),
        };
        Some(IpNet { net: mask(addr, prefix), prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.net.is_ipv4() && mask(ip, self.prefix) == self.net
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// Who may set forwarding headers: the listed proxies, or with the deprecated
/// `trust_forwarded_for = true` any peer.
#[derive(Debug, Clone, Copy)]
pub struct Trust<'a> {
    pub proxies: &'a [IpNet],
    pub any_peer: bool,
}

impl Trust<'_> {
    fn listed(&self, ip: IpAddr) -> bool {
        self.proxies.iter().any(|p| p.contains(ip))
    }

    /// May this peer set forwarding headers?
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.any_peer || self.listed(peer)
    }

    /// The client behind `peer`: `X-Forwarded-For` is read from the right (each proxy appends the
    /// address it was reached from), skipping listed proxies; the first other address is the
    /// client. An entry that is not an address ends the walk, so the client is then the last hop
    /// that could be read. `forwarded_for` yields the entries left to right.
    pub fn client_address<'h>(&self, peer: IpAddr, forwarded_for: impl DoubleEndedIterator<Item = &'h str>) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        for entry in forwarded_for.rev() {
            let Some(ip) = forwarded_ip(entry) else { break };
            client = ip;
            // With `any_peer` alone only the last entry (the one the peer added) is believed.
            if !self.listed(ip) {
                break;
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`, `[::1]:80`).
fn forwarded_ip(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    e.parse::<IpAddr>().or_else(|_| e.parse::<SocketAddr>().map(|s| s.ip())).ok().map(|ip| ip.to_canonical())
}

/// A forwarded scheme: `http` or `https` (any letter case), else nothing.
pub fn scheme(value: &str) -> Option<&'static str> {
    match value.trim() {
        v if v.eq_ignore_ascii_case("http") => Some("http"),
        v if v.eq_ignore_ascii_case("https") => Some("https"),
        _ => None,
    }
}

/// Is this a host with an optional port, as a URL may carry it: a registered name or IPv4
/// address of unreserved characters (letters, digits, `-._~`; no percent-encoding or
/// sub-delimiters, which no real host needs), or `[IPv6]`; port 0-65535; at most
/// [`MAX_HOST_LEN`] bytes.
pub fn valid_authority(value: &str) -> bool {
    if value.is_empty() || value.len() > MAX_HOST_LEN {
        return false;
    }
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else { return false };
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return false,
            },
        }
    } else {
        match value.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(value), None),
        }
    };
    let host_ok = host.is_none_or(|h| {
        !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    });
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| n <= 65535)
    });
    host_ok && port_ok
}

/// `scheme://host[:port]` of an http(s) origin or URL, lower-cased, without a default port
/// (`:80`, `:443`); `None` when it is not one (`null`, another scheme, no valid host).
fn normal_origin(url: &str) -> Option<(&'static str, String)> {
    let (s, rest) = url.trim().split_once("://")?;
    let s = scheme(s).filter(|_| s.bytes().all(|b| b.is_ascii_alphabetic()))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if !valid_authority(authority) {
        return None;
    }
    Some((s, without_default_port(s, &authority.to_ascii_lowercase())))
}

fn without_default_port(scheme: &str, authority: &str) -> String {
    let default = if scheme == "https" { ":443" } else { ":80" };
    authority.strip_suffix(default).unwrap_or(authority).to_owned()
}

/// Where a browser says a form comes from: the `Origin` header, else the origin of the
/// `Referer`, else nothing (not a browser, or one that keeps both to itself).
pub enum Claimed<'a> {
    Origin(&'a str),
    Referer(&'a str),
    Nothing,
}

/// May a browser form (the login) be taken from where it says it comes from? Yes from this
/// server's own pages (an http(s) origin whose host and port are `host`, the host the request
/// was sent to), from a configured CORS origin (`*` does not count: it allows no credentials),
/// and from clients that say nothing. Anything else, `null` and unreadable values included, is
/// another site.
pub fn form_allowed(claimed: Claimed<'_>, host: Option<&str>, cors_origins: &[String]) -> bool {
    let url = match claimed {
        Claimed::Nothing => return true,
        Claimed::Origin(o) => o,
        Claimed::Referer(r) => r,
    };
    let Some((s, authority)) = normal_origin(url) else { return false };
    let configured = cors_origins
        .iter()
        .filter(|o| o.as_str() != "*")
        .any(|o| normal_origin(o).is_some_and(|(cs, ca)| cs == s && ca == authority));
    let own = host.is_some_and(|h| valid_authority(h) && without_default_port(s, &h.to_ascii_lowercase()) == authority);
    configured || own
}

/// The value a proxy added to a list header (`a, b, c` → `c`): the nearest proxy appends.
pub fn last_value(value: &str) -> &str {
    value.rsplit(',').next().unwrap_or("").trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn nets_parse_and_match() {
        let n = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(n.contains(ip("10.200.1.2")) && !n.contains(ip("11.0.0.1")));
        assert!(n.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped peers count as IPv4");
        assert!(IpNet::parse("127.0.0.1").unwrap().contains(ip("127.0.0.1")));
        assert!(!IpNet::parse("127.0.0.1").unwrap().contains(ip("127.0.0.2")));
        assert!(IpNet::parse("192.168.1.77/24").unwrap().contains(ip("192.168.1.1")), "host bits ignored");
        assert!(IpNet::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(!IpNet::parse("0.0.0.0/0").unwrap().contains(ip("::1")));
        assert!(IpNet::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        assert!(IpNet::parse("::1").unwrap().contains(ip("::1")));
        assert!(IpNet::parse("::ffff:10.0.0.0/104").unwrap().contains(ip("10.9.9.9")));
        for bad in ["", "10.0.0.0/33", "::/129", "10.0.0/8", "10.0.0.0/", "10.0.0.0/x", "host.example", "1.2.3.4/-1"] {
            assert_eq!(IpNet::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_client_is_the_first_untrusted_hop_from_the_right() {
        let proxies = [IpNet::parse("10.0.0.0/8").unwrap()];
        let t = Trust { proxies: &proxies, any_peer: false };
        let xff = |s: &'static str| s.split(',');
        assert_eq!(t.client_address(ip("203.0.113.9"), xff("1.1.1.1")), ip("203.0.113.9"), "untrusted peer");
        assert_eq!(t.client_address(ip("10.0.0.1"), xff("6.6.6.6, 198.51.100.7")), ip("198.51.100.7"));
        assert_eq!(t.client_address(ip("10.0.0.1"), xff("6.6.6.6, 198.51.100.7, 10.0.0.2")), ip("198.51.100.7"));
        assert_eq!(t.client_address(ip("10.0.0.1"), xff("198.51.100.7:5555")), ip("198.51.100.7"));
        assert_eq!(t.client_address(ip("10.0.0.1"), xff("garbage, 10.0.0.3")), ip("10.0.0.3"));
        assert_eq!(t.client_address(ip("10.0.0.1"), xff("")), ip("10.0.0.1"));
        let any = Trust { proxies: &[], any_peer: true };
        assert_eq!(any.client_address(ip("203.0.113.9"), xff("6.6.6.6, 198.51.100.7")), ip("198.51.100.7"));
    }

    #[test]
    fn only_http_and_https_and_real_hosts_pass() {
        assert_eq!(scheme("https"), Some("https"));
        assert_eq!(scheme(" HTTP "), Some("http"));
        for bad in ["javascript", "ftp", "https:", "", "http://x"] {
            assert_eq!(scheme(bad), None, "{bad}");
        }
        for good in
            ["example.com", "api.example.com:8443", "127.0.0.1", "127.0.0.1:80", "[::1]", "[fd00::1]:443", "a_b~c"]
        {
            assert!(valid_authority(good), "{good}");
        }
        let long = "a".repeat(MAX_HOST_LEN + 1);
        for bad in [
            "",
            "evil.example/path",
            "evil.example@x",
            "a b",
            "x:65536",
            "x:",
            ":80",
            "[::1",
            "[zz]",
            "[::1]x",
            "x\"y",
            "x%2fy",
            "a:b:c",
            long.as_str(),
        ] {
            assert!(!valid_authority(bad), "{bad}");
        }
        assert_eq!(last_value("a, b ,c "), "c");
    }

    #[test]
    fn forms_are_taken_from_the_own_host_configured_origins_and_non_browsers() {
        use Claimed::*;
        let cors = ["https://app.example.com/".to_owned(), "*".to_owned()];
        let host = Some("batchd.example:8080");
        for yes in [
            Nothing,
            Origin("http://batchd.example:8080"),
            Origin("HTTPS://BATCHD.EXAMPLE:8080"),
            Origin("https://app.example.com"),
            Referer("http://batchd.example:8080/login?x=1"),
        ] {
            assert!(form_allowed(yes, host, &cors));
        }
        assert!(form_allowed(Origin("https://batchd.example"), Some("batchd.example:443"), &[]), "default port");
        assert!(form_allowed(Origin("http://batchd.example:80"), Some("batchd.example"), &[]), "default port");
        for no in [
            Origin("https://evil.example"),
            Origin("null"),
            Origin(""),
            Origin("http://batchd.example:8080.evil.example"),
            Origin("http://batchd.example:9090"),
            Origin("ftp://batchd.example:8080"),
            Origin("https://other.example.com"),
            Referer("https://evil.example/http://batchd.example:8080"),
            Referer("/relative"),
        ] {
            assert!(!form_allowed(no, host, &cors));
        }
        assert!(!form_allowed(Origin("http://anything"), None, &[]), "no host known: only configured origins");
        assert!(!form_allowed(Origin("https://evil.example"), host, &["*".to_owned()]), "* allows no credentials");
        assert_eq!(last_value("only"), "only");
    }
}
