//! The outbound request budget: how fast an adapter may call its provider, shared by every call
//! (sends, lookups, token requests, reconciliation) to the same account in one process.
//!
//! Each limit is a GCRA pacer (the generic cell rate algorithm, as `governor` implements it): a
//! request conforms at the theoretical arrival time less one second's burst, and reserving it moves
//! that time on by one interval, so concurrent callers queue in order without a lock held while
//! they wait. It is written here rather than taken from `governor` because the budget must change
//! while it runs, which `governor`'s fixed quotas do not do.
//!
//! **Back-off on 429** is AIMD, additive increase and multiplicative decrease, the rule TCP's
//! congestion control uses (RFC 5681) and the adaptive retry mode of the AWS SDKs builds on:
//! - a 429 is a *slowdown*: the rate halves (never below a sixteenth of the configured one), and
//!   nothing goes until `Retry-After` (or a second, Stripe sends none) has passed, and then with no
//!   burst;
//! - the places of callers already queued are void: each wakes, sees that the budget slowed down
//!   while it waited, and queues again behind the pause at the new rate, so a queue of callers does
//!   not go on at the old rate after the provider said no (the "thundering herd" after a 429);
//! - a 429 to a request let go *before* the last slowdown is the same congestion seen late: it
//!   keeps the pause as long as it says but does not halve the rate again (like TCP, one decrease
//!   per loss event, not per lost packet);
//! - every other answer to a request let go since the last slowdown wins back 1/32 of the
//!   configured rate, so after a throttled spell the rate climbs back over a few dozen answers
//!   rather than at once.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::time::Instant;

/// How many requests per second an adapter may send to its provider.
///
/// Every adapter has a default from its provider's documented limits (see each module's docs); a
/// limit set in its config (builder `rate_limit`, or `{PROVIDER}_RATE_LIMIT` requests per second)
/// replaces it. The budget is kept per provider account and API base in the process, so two
/// adapters configured alike share it.
///
/// ```
/// use payout_providers::RateLimit;
/// let stripe_test = RateLimit::per_second(25).with_per_endpoint(25);
/// assert_eq!(stripe_test.requests_per_second(), Some(25));
/// assert_eq!(RateLimit::unlimited().requests_per_second(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimit {
    per_second: Option<NonZeroU32>,
    per_endpoint: Option<NonZeroU32>,
}

impl RateLimit {
    /// At most `n` requests per second in all (0 means no limit).
    pub fn per_second(n: u32) -> Self {
        RateLimit {
            per_second: NonZeroU32::new(n),
            per_endpoint: None,
        }
    }

    /// At most `n` requests per second in all, in a `const` (`n` must not be 0).
    pub const fn per_second_const(n: u32) -> Self {
        RateLimit {
            per_second: NonZeroU32::new(n),
            per_endpoint: None,
        }
    }

    /// No limit (a local double, or a provider that rate-limits nothing).
    pub fn unlimited() -> Self {
        RateLimit::default()
    }

    /// Also at most `n` requests per second to any one endpoint (its method and path, ids left out).
    pub fn with_per_endpoint(mut self, n: u32) -> Self {
        self.per_endpoint = NonZeroU32::new(n);
        self
    }

    /// The limit in all, if there is one.
    pub fn requests_per_second(&self) -> Option<u32> {
        self.per_second.map(NonZeroU32::get)
    }

    /// The limit per endpoint, if there is one.
    pub fn requests_per_second_per_endpoint(&self) -> Option<u32> {
        self.per_endpoint.map(NonZeroU32::get)
    }
}

/// One paced rate.
#[derive(Debug)]
struct Pacer {
    max_rate: f64,
    state: Mutex<PacerState>,
}

#[derive(Debug)]
struct PacerState {
    /// The current rate (requests per second): `max_rate`, or less after a 429.
    rate: f64,
    /// The theoretical arrival time of the next request.
    tat: Instant,
    /// Nothing goes before this (the pause after the last 429).
    paused_until: Instant,
}

impl Pacer {
    fn new(rate: NonZeroU32) -> Self {
        let max_rate = f64::from(rate.get());
        Pacer {
            max_rate,
            state: Mutex::new(PacerState {
                rate: max_rate,
                tat: Instant::now(),
                paused_until: Instant::now(),
            }),
        }
    }

    /// One interval, and one second's burst less an interval, at `rate`.
    fn interval_and_tolerance(rate: f64) -> (Duration, Duration) {
        let interval = Duration::from_secs_f64(1.0 / rate);
        let burst = rate.floor().max(1.0);
        (interval, interval.mul_f64(burst - 1.0))
    }

    /// Reserves the next slot; returns when the request may go.
    fn reserve(&self, now: Instant) -> Instant {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (interval, tolerance) = Self::interval_and_tolerance(s.rate);
        let tat = s.tat.max(now);
        let at = tat.checked_sub(tolerance).unwrap_or(now).max(now);
        s.tat = tat.max(at) + interval;
        at
    }

    /// A slowdown (a 429 to a request let go at the current rate): half the rate, nothing before
    /// `now + pause`, and the places given out so far void (their callers queue again).
    fn throttled(&self, now: Instant, pause: Duration) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.rate = (s.rate / 2.0).max(self.min_rate());
        Self::pause(&mut s, now, pause);
    }

    /// A 429 to a request let go before the last slowdown: the pause lasts as long as it says, the
    /// rate stays, and the places given out since the slowdown stand (the next new place is after
    /// both them and the pause).
    fn extend_pause(&self, now: Instant, pause: Duration) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.paused_until = s.paused_until.max(now + pause);
        let (_, tolerance) = Self::interval_and_tolerance(s.rate);
        s.tat = s.tat.max(s.paused_until + tolerance);
    }

    /// Nothing before `now + pause` (or the pause already set, if longer), then one request per
    /// interval with no burst: the next place is at the pause's end, and every place given out
    /// before is void.
    fn pause(s: &mut PacerState, now: Instant, pause: Duration) {
        s.paused_until = s.paused_until.max(now + pause);
        let (_, tolerance) = Self::interval_and_tolerance(s.rate);
        s.tat = s.paused_until + tolerance;
    }

    /// Another limit slowed down: the places given out here are void (their callers queue again),
    /// so they are not held against the callers that take new ones.
    fn void_places(&self, now: Instant) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.tat = s.paused_until.max(now);
    }

    /// An answer that was not a 429: win back a little of the configured rate.
    fn succeeded(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.rate < self.max_rate {
            s.rate = (s.rate + self.max_rate / 32.0).min(self.max_rate);
        }
    }

    fn min_rate(&self) -> f64 {
        (self.max_rate / 16.0).max(0.5)
    }

    fn rate(&self) -> f64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).rate
    }
}

/// An adapter's budget: the limit in all, and one per endpoint.
#[derive(Debug)]
pub(crate) struct RequestBudget {
    limit: RateLimit,
    overall: Option<Pacer>,
    endpoints: Mutex<HashMap<String, Arc<Pacer>>>,
    /// How many times a 429 has slowed the budget down. Places are given out under this lock, so
    /// a place and the count it was given under always agree.
    slowdowns: Mutex<u64>,
}

/// What a request was let go under: the budget's slowdowns at the time. Handed back with the
/// answer ([`RequestBudget::answered`]), it tells a fresh 429 from one to a request that was
/// already on its way when the budget slowed down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    slowdowns: u64,
}

/// How long to pause after a 429 that says nothing about when to come back.
const PAUSE_WITHOUT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The longest `Retry-After` honoured (a longer one is a provider's outage, not a rate limit).
const LONGEST_PAUSE: Duration = Duration::from_secs(60);

impl RequestBudget {
    fn new(limit: RateLimit) -> Self {
        RequestBudget {
            limit,
            overall: limit.per_second.map(Pacer::new),
            endpoints: Mutex::new(HashMap::new()),
            slowdowns: Mutex::new(0),
        }
    }

    /// The budget of `key` (provider, API base and account) in this process, made with `limit` if
    /// there is none yet, or if the one there has another limit (a reconfigured adapter).
    pub fn shared(key: String, limit: RateLimit) -> Arc<RequestBudget> {
        static BUDGETS: OnceLock<Mutex<HashMap<String, Weak<RequestBudget>>>> = OnceLock::new();
        let mut all = BUDGETS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        all.retain(|_, b| b.strong_count() > 0);
        if let Some(b) = all.get(&key).and_then(Weak::upgrade).filter(|b| b.limit == limit) {
            return b;
        }
        let b = Arc::new(RequestBudget::new(limit));
        all.insert(key, Arc::downgrade(&b));
        b
    }

    fn endpoint(&self, endpoint: &str) -> Option<Arc<Pacer>> {
        let rate = self.limit.per_endpoint?;
        let mut all = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        Some(
            all.entry(endpoint.to_string())
                .or_insert_with(|| Arc::new(Pacer::new(rate)))
                .clone(),
        )
    }

    fn slowdowns(&self) -> std::sync::MutexGuard<'_, u64> {
        self.slowdowns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until a request to `endpoint` may go; the ticket goes back with its answer to
    /// [`answered`](Self::answered). A caller whose place was given out before a 429 slowed the
    /// budget down queues again when it wakes, behind the pause and at the new rate.
    pub async fn acquire(&self, endpoint: &str) -> Ticket {
        let own = self.endpoint(endpoint);
        loop {
            let (ticket, now, at) = {
                let slowdowns = self.slowdowns();
                let now = Instant::now();
                let overall = self.overall.as_ref().map(|p| p.reserve(now));
                let own = own.as_ref().map(|p| p.reserve(now));
                let ticket = Ticket { slowdowns: *slowdowns };
                (ticket, now, overall.into_iter().chain(own).max())
            };
            match at {
                Some(at) if at > now => tokio::time::sleep_until(at).await,
                _ => return ticket,
            }
            if *self.slowdowns() == ticket.slowdowns {
                return ticket;
            }
        }
    }

    /// What the provider answered a request to `endpoint` let go with `ticket`: a 429 slows every
    /// caller down and pauses them for `retry_after` (or a second), once per slowdown (see the
    /// module's docs); anything else wins a little of the rate back.
    pub fn answered(&self, endpoint: &str, ticket: Ticket, too_many: bool, retry_after: Option<Duration>) {
        let own = self.endpoint(endpoint);
        let pacers = self.overall.iter().chain(own.as_deref());
        if !too_many {
            // An answer to a request let go before the last slowdown says nothing about the new rate.
            if *self.slowdowns() == ticket.slowdowns {
                for p in pacers {
                    p.succeeded();
                }
            }
            return;
        }
        let pause = retry_after.unwrap_or(PAUSE_WITHOUT_RETRY_AFTER).min(LONGEST_PAUSE);
        let mut slowdowns = self.slowdowns();
        let now = Instant::now();
        let fresh = *slowdowns == ticket.slowdowns;
        if fresh {
            *slowdowns += 1;
            for p in pacers {
                p.throttled(now, pause);
            }
            let others = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
            for p in others
                .values()
                .filter(|p| own.as_ref().is_none_or(|own| !Arc::ptr_eq(p, own)))
            {
                p.void_places(now);
            }
        } else {
            for p in pacers {
                p.extend_pause(now, pause);
            }
        }
        drop(slowdowns);
        tracing::warn!(
            endpoint,
            ?pause,
            slowed_down = fresh,
            rate = self.overall.as_ref().map(Pacer::rate),
            "provider answered 429: slowing down"
        );
    }
}

/// The endpoint a request goes to, for its own limit: the method and the path with every segment
/// that looks like an id (a digit in a segment of more than three characters: `tr_1Ab2`,
/// `8AELMXH8UB2P8`) written `{id}`, so `GET /v1/transfers/tr_1` and `GET /v1/transfers/tr_2` share one.
pub(crate) fn endpoint_of(method: &reqwest::Method, path: &str) -> String {
    let path: Vec<&str> = path
        .split('/')
        .map(|s| {
            if s.len() > 3 && s.bytes().any(|b| b.is_ascii_digit()) {
                "{id}"
            } else {
                s
            }
        })
        .collect();
    format!("{method} {}", path.join("/"))
}

/// A `Retry-After` header's wait: whole seconds, or an HTTP date.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_leave_ids_out() {
        let get = reqwest::Method::GET;
        assert_eq!(endpoint_of(&get, "/v1/transfers/tr_1Ab2"), "GET /v1/transfers/{id}");
        assert_eq!(
            endpoint_of(&get, "/v1/payments/payouts-item/8AELMXH8UB2P8"),
            "GET /v1/payments/payouts-item/{id}"
        );
        assert_eq!(
            endpoint_of(&reqwest::Method::POST, "/mpesa/b2c/v3/paymentrequest"),
            "POST /mpesa/b2c/v3/paymentrequest"
        );
        assert_eq!(endpoint_of(&get, "/v1/transfers"), "GET /v1/transfers");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert(reqwest::header::RETRY_AFTER, later.parse().unwrap());
        let wait = retry_after(&h).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    /// At 20 per second, 60 requests take about two seconds after the first second's burst of 20;
    /// paused time is used, so the test measures the schedule, not the machine.
    #[tokio::test(start_paused = true)]
    async fn requests_are_paced_after_one_seconds_burst() {
        let budget = RequestBudget::new(RateLimit::per_second(20));
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..60 {
            budget.acquire("POST /x").await;
            at.push(Instant::now() - start);
        }
        assert_eq!(at[19], Duration::ZERO, "the first second's burst goes at once");
        assert!(at[20] >= Duration::from_millis(49), "{:?}", at[20]);
        let total = at[59];
        assert!(
            total >= Duration::from_millis(1990) && total <= Duration::from_millis(2010),
            "{total:?}"
        );
    }

    /// A 429 halves the rate and pauses every caller for `Retry-After`; successes win it back.
    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_and_halves_the_rate_then_successes_restore_it() {
        let budget = RequestBudget::new(RateLimit::per_second(10).with_per_endpoint(10));
        let ticket = budget.acquire("POST /x").await;
        budget.answered("POST /x", ticket, true, Some(Duration::from_secs(2)));
        assert_eq!(budget.overall.as_ref().unwrap().rate(), 5.0);
        let start = Instant::now();
        let ticket = budget.acquire("POST /x").await;
        assert!(
            Instant::now() - start >= Duration::from_secs(2),
            "paused for Retry-After"
        );
        for _ in 0..64 {
            budget.answered("POST /x", ticket, false, None);
        }
        assert_eq!(
            budget.overall.as_ref().unwrap().rate(),
            10.0,
            "back to the configured rate"
        );
        // Never below a sixteenth of it, however many 429s.
        for _ in 0..20 {
            let ticket = budget.acquire("POST /x").await;
            budget.answered("POST /x", ticket, true, None);
        }
        assert_eq!(budget.overall.as_ref().unwrap().rate(), 0.625);
    }

    /// Callers queued before a 429 do not go on at the old rate: each queues again behind the pause
    /// at the halved rate. At 10 per second, 30 callers at once: 10 go at once (the burst), and the
    /// first one's 429 comes back before the other 20 go; without the re-queueing they would go at
    /// 0.1 s, 0.2 s, ... 2.0 s. With it, none goes before the pause's second is over, and they go at
    /// 5 per second with no burst, the last at 1 s + 19 x 0.2 s.
    #[tokio::test(start_paused = true)]
    async fn callers_queued_before_a_429_queue_again_behind_the_pause() {
        let budget = Arc::new(RequestBudget::new(RateLimit::per_second(10)));
        let start = Instant::now();
        let mut burst = Vec::new();
        for _ in 0..10 {
            burst.push(budget.acquire("POST /x").await);
        }
        assert_eq!(Instant::now(), start, "the burst goes at once");
        let queued: Vec<_> = (0..20)
            .map(|_| {
                let budget = budget.clone();
                tokio::spawn(async move {
                    budget.acquire("POST /x").await;
                    Instant::now()
                })
            })
            .collect();
        tokio::task::yield_now().await;
        // The first request of the burst is answered 429 (no Retry-After), the others 200.
        budget.answered("POST /x", burst[0], true, None);
        for t in &burst[1..] {
            budget.answered("POST /x", *t, false, None);
        }
        let mut went = Vec::new();
        for q in queued {
            went.push(q.await.unwrap() - start);
        }
        went.sort();
        assert!(went[0] >= Duration::from_secs(1), "one went during the pause: {went:?}");
        assert!(
            went[19] >= Duration::from_millis(4790),
            "the queue went on faster than the halved rate: {went:?}"
        );
    }

    /// Two requests let go at the same rate, both answered 429: one slowdown, not two. A request
    /// let go after it, answered 429, slows down again.
    #[tokio::test(start_paused = true)]
    async fn one_slowdown_per_rate_not_per_429() {
        let budget = RequestBudget::new(RateLimit::per_second(16));
        let a = budget.acquire("POST /x").await;
        let b = budget.acquire("POST /x").await;
        budget.answered("POST /x", a, true, None);
        budget.answered("POST /x", b, true, Some(Duration::from_secs(3)));
        assert_eq!(budget.overall.as_ref().unwrap().rate(), 8.0, "halved once");
        let start = Instant::now();
        let c = budget.acquire("POST /x").await;
        assert!(
            Instant::now() - start >= Duration::from_secs(3),
            "the late 429's longer Retry-After is kept"
        );
        budget.answered("POST /x", c, true, None);
        assert_eq!(budget.overall.as_ref().unwrap().rate(), 4.0, "a fresh 429 halves again");
    }

    #[tokio::test(start_paused = true)]
    async fn each_endpoint_has_its_own_limit_within_the_overall_one() {
        let budget = RequestBudget::new(RateLimit::per_second(100).with_per_endpoint(10));
        let start = Instant::now();
        for _ in 0..30 {
            budget.acquire("POST /a").await;
        }
        let a = Instant::now() - start;
        assert!(a >= Duration::from_millis(1990), "POST /a at 10 per second: {a:?}");
        let start = Instant::now();
        for _ in 0..10 {
            budget.acquire("GET /b").await;
        }
        assert_eq!(
            Instant::now() - start,
            Duration::ZERO,
            "another endpoint's burst is its own"
        );
    }

    #[test]
    fn adapters_configured_alike_share_one_budget() {
        let a = RequestBudget::shared("stripe|http://x|acct".into(), RateLimit::per_second(25));
        let b = RequestBudget::shared("stripe|http://x|acct".into(), RateLimit::per_second(25));
        let other = RequestBudget::shared("stripe|http://x|other".into(), RateLimit::per_second(25));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &other));
    }
}
