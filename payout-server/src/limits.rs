//! Per-client rate limits for webhooks and admin mutations: `governor`'s GCRA keyed by the client's IP
//! address, which is the socket peer unless the peer is one of the configured trusted proxies.
//!
//! A refused request is answered 429 with `Retry-After` (whole seconds, rounded up) and the JSON error.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;

use crate::AppState;
use crate::error::ApiError;

/// Clients remembered before the limiter forgets those whose bucket is full again.
const FORGET_ABOVE: usize = 10_000;
/// How often (in checks) the limiter looks at its size.
const SIZE_CHECK_EVERY: u32 = 1024;

/// The proxies whose `X-Forwarded-For` is believed: addresses and CIDR blocks.
///
/// Parsed from a comma-separated list such as `10.0.0.0/8, 192.168.1.7, ::1`. Empty by default: then
/// the client is always the socket peer and `X-Forwarded-For` is ignored, since anyone can send it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// No proxy is trusted.
    pub fn none() -> Self {
        TrustedProxies(Vec::new())
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request from `peer` carrying `headers`.
    ///
    /// When `peer` is a trusted proxy, the `X-Forwarded-For` entries are read from the right, skipping
    /// trusted proxies, and the first untrusted address is the client. Right-most, because each proxy
    /// appends the address it was connected from: everything left of what our own proxies wrote came
    /// from the client and may be forged, so the left-most entry (what many frameworks take) lets any
    /// client pick its own bucket. An entry that is not an address ends the walk at the last trusted
    /// hop; when every entry is trusted, the left-most one is the client.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        let mut client = peer;
        for entry in forwarded.into_iter().rev() {
            let Some(ip) = parse_forwarded(entry) else { break };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry: an address, optionally with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(canonical)
}

/// IPv4 clients of a dual-stack socket arrive as `::ffff:a.b.c.d`; they are the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// An entry of a trusted-proxy list that is neither an address nor a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("trusted proxy {0:?} is neither an IP address nor a CIDR block such as 10.0.0.0/8")]
pub struct InvalidProxy(String);

impl FromStr for TrustedProxies {
    type Err = InvalidProxy;
    fn from_str(list: &str) -> Result<Self, InvalidProxy> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| InvalidProxy(s.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&list.join(","))
    }
}

/// The client address of a request as the server sees it: the socket peer (from axum's
/// [`ConnectInfo`]), resolved through `X-Forwarded-For` when the peer is a trusted proxy. Without
/// `ConnectInfo` (a router called in-process) every request is the one client `::`.
pub fn client_ip(trusted: &TrustedProxies, parts: &Parts) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |ci| ci.0.ip());
    trusted.client_ip(peer, &parts.headers)
}

/// Who a bucket belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Client {
    Address(IpAddr),
    Named(String),
}

/// A GCRA limit per client: `rate` requests a second, bursts up to twice that.
///
/// Memory stays bounded: past 10,000 clients, those whose bucket has filled up again (and so
/// are indistinguishable from a new client) are forgotten.
pub struct RateLimiter {
    limiter: Option<DefaultKeyedRateLimiter<Client>>,
    checks: AtomicU32,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("enabled", &self.limiter.is_some())
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter allowing `rate` requests a second per client; `None` allows everything.
    pub fn new(rate: Option<u32>) -> Self {
        let limiter = rate.map(|rate| {
            let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
            let burst = rate.saturating_mul(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN));
            governor::RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        RateLimiter {
            limiter,
            checks: AtomicU32::new(0),
        }
    }

    /// Takes one request for the client at `ip`; `Err` holds how long it must wait.
    pub fn check_address(&self, ip: IpAddr) -> Result<(), Duration> {
        self.check(&Client::Address(ip))
    }

    /// Takes one request for a client known by name (such as a signed-in user); false when it must wait.
    pub fn allow(&self, name: &str) -> bool {
        self.check(&Client::Named(name.to_string())).is_ok()
    }

    fn check(&self, client: &Client) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SIZE_CHECK_EVERY == 0 && limiter.len() > FORGET_ABOVE {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        limiter
            .check_key(client)
            .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }

    /// Clients remembered now.
    pub fn len(&self) -> usize {
        self.limiter.as_ref().map_or(0, |l| l.len())
    }

    /// Whether no client is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

async fn limit(state: &AppState, limiter: &RateLimiter, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let ip = client_ip(&state.config.trusted_proxies, &parts);
    if let Err(wait) = limiter.check_address(ip) {
        return ApiError::RateLimited { retry_after: wait }.into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

/// Middleware: the webhook limit.
pub async fn limit_webhooks(State(state): State<AppState>, req: Request, next: Next) -> Response {
    limit(&state, &state.webhook_limiter, req, next).await
}

/// Middleware: the admin mutation limit.
pub async fn limit_mutations(State(state): State<AppState>, req: Request, next: Next) -> Response {
    limit(&state, &state.mutation_limiter, req, next).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h
    }

    #[test]
    fn bursts_then_refuses_with_a_wait() {
        let l = RateLimiter::new(Some(5));
        let allowed = (0..20).filter(|_| l.check_address(ip("10.0.0.1")).is_ok()).count();
        assert_eq!(allowed, 10);
        let wait = l.check_address(ip("10.0.0.1")).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(200), "{wait:?}");
        assert!(l.check_address(ip("10.0.0.2")).is_ok(), "per client");
        assert!(l.allow("dashboard:alice"), "named clients have their own buckets");
        assert!(RateLimiter::new(None).check_address(ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn forgets_full_buckets_past_the_bound() {
        let l = RateLimiter::new(Some(1_000_000));
        for n in 0..(FORGET_ABOVE as u32 + 2 * SIZE_CHECK_EVERY) {
            l.check_address(IpAddr::from(n.to_be_bytes())).unwrap();
        }
        // At a million a second every bucket is full again within microseconds, so each size check past
        // the bound forgets all of them.
        assert!(l.len() < FORGET_ABOVE, "{} clients remembered", l.len());
    }

    #[test]
    fn parses_addresses_and_blocks() {
        let t: TrustedProxies = " 10.0.0.0/8, 192.168.1.7 ,::1,".parse().unwrap();
        assert!(t.contains(ip("10.1.2.3")));
        assert!(
            t.contains(ip("::ffff:10.1.2.3")),
            "IPv4-mapped peers are their IPv4 address"
        );
        assert!(t.contains(ip("192.168.1.7")) && !t.contains(ip("192.168.1.8")));
        assert!(t.contains(ip("::1")));
        assert_eq!(t.to_string(), "10.0.0.0/8,192.168.1.7/32,::1/128");
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("proxy.example".parse::<TrustedProxies>().is_err());
        assert_eq!("".parse::<TrustedProxies>().unwrap(), TrustedProxies::none());
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let t: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        // An untrusted peer's header is ignored.
        assert_eq!(t.client_ip(ip("203.0.113.9"), &xff("1.1.1.1")), ip("203.0.113.9"));
        // Through our proxy: the forged left-hand entry is not taken.
        assert_eq!(
            t.client_ip(ip("10.0.0.1"), &xff("1.1.1.1, 198.51.100.4, 10.0.0.2")),
            ip("198.51.100.4")
        );
        assert_eq!(
            t.client_ip(ip("10.0.0.1"), &xff("[2001:db8::1]:443")),
            ip("2001:db8::1")
        );
        // Garbage ends the walk at the last trusted hop; all-trusted takes the left-most.
        assert_eq!(
            t.client_ip(ip("10.0.0.1"), &xff("198.51.100.4, junk, 10.0.0.3")),
            ip("10.0.0.3")
        );
        assert_eq!(t.client_ip(ip("10.0.0.1"), &xff("10.0.0.5, 10.0.0.3")), ip("10.0.0.5"));
        assert_eq!(t.client_ip(ip("10.0.0.1"), &HeaderMap::new()), ip("10.0.0.1"));
        // Several headers are one list, in order.
        let mut h = xff("1.1.1.1");
        h.append("x-forwarded-for", "198.51.100.7".parse().unwrap());
        assert_eq!(t.client_ip(ip("10.0.0.1"), &h), ip("198.51.100.7"));
    }
}
