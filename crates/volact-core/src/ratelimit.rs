//! Rate limits on new clients, as a pure function of the limiter's state, the source
//! address and `now`.
//!
//! The count is the product: one process making up client ids could otherwise lift any
//! application past its minimum in seconds. A host therefore admits *new* clients (ids
//! it has not counted) at a bounded rate per source address and per network prefix (/24
//! for IPv4, /64 for IPv6, what one site or one customer line usually holds). Renewals
//! of counted clients never reach the limiter.
//!
//! Each address and each prefix has a token bucket, kept as a GCRA "theoretical arrival
//! time": one `i64` per key, no timer. A bucket that has refilled is the same as no
//! bucket, so the table forgets it; when the table is full anyway, the least recently
//! used half goes. Memory is bounded by [`NewClientLimits::max_tracked`] per table.

use std::collections::HashMap;
use std::net::IpAddr;

/// One limit: `per_minute` new clients a minute on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rate {
    /// Sustained rate; 0 switches this limit off.
    pub per_minute: u32,
    /// Bucket size: how many may come at once after a quiet spell (at least 1).
    pub burst: u32,
}

/// The limits on new clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewClientLimits {
    /// Per source address.
    pub per_address: Rate,
    /// Per /24 (IPv4) or /64 (IPv6).
    pub per_prefix: Rate,
    /// Loopback (127.0.0.0/8, ::1) is not limited: the host's own machine runs the
    /// quickstart, the simulator and benchmarks, and anyone on it can reach the store.
    pub exempt_loopback: bool,
    /// Addresses, and separately prefixes, remembered at most.
    pub max_tracked: usize,
}

/// Default limits. A site's machines each send one new-client request in their life
/// (then they renew), so a limit is met only when a whole floor is installed at once:
/// 200 machines behind one address (a NAT) start together, then 100 a minute; a /24
/// holds at most 254 hosts, while a prefix shared by NATs (a /64 of a big office)
/// gets 2,000 at once and 1,000 a minute. One address making up ids gets 200 rows and
/// then 100 a minute instead of 14,000 a second.
pub const DEFAULT_LIMITS: NewClientLimits = NewClientLimits {
    per_address: Rate {
        per_minute: 100,
        burst: 200,
    },
    per_prefix: Rate {
        per_minute: 1_000,
        burst: 2_000,
    },
    exempt_loopback: true,
    max_tracked: 65_536,
};

impl Default for NewClientLimits {
    fn default() -> Self {
        DEFAULT_LIMITS
    }
}

/// Which limit refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The source address's.
    Address,
    /// The network prefix's.
    Prefix,
}

impl Scope {
    /// `address` or `prefix`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Address => "address",
            Scope::Prefix => "prefix",
        }
    }
}

/// A refused new client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The limit that refused.
    pub scope: Scope,
    /// The address, or the prefix in CIDR form.
    pub subject: String,
    /// Microseconds until one more new client would be admitted.
    pub retry_after_us: i64,
    /// Set at most once per [`REPORT_EVERY_US`] per subject: refusals of the subject
    /// since its last report (this one included), for the audit log.
    pub report: Option<u64>,
}

impl Refused {
    /// Whole seconds to wait, at least 1 (for `Retry-After`).
    pub fn retry_after_secs(&self) -> u64 {
        u64::try_from(self.retry_after_us.saturating_add(999_999) / 1_000_000)
            .unwrap_or(1)
            .max(1)
    }
}

/// What the limiter says about one new client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Loopback, exempt.
    Exempt,
    /// Within the limits; counted against them.
    Admitted,
    /// Over a limit.
    Refused(Refused),
}

/// A subject refused is reported to the audit log at most this often (10 minutes).
pub const REPORT_EVERY_US: i64 = 600 * 1_000_000;

/// A network prefix: /24 of IPv4, /64 of IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Prefix {
    V4([u8; 3]),
    V6(u64),
}

impl Prefix {
    fn of(ip: IpAddr) -> Prefix {
        match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                Prefix::V4([o[0], o[1], o[2]])
            }
            IpAddr::V6(v6) => Prefix::V6((u128::from(v6) >> 64) as u64),
        }
    }

    fn cidr(self) -> String {
        match self {
            Prefix::V4([a, b, c]) => format!("{a}.{b}.{c}.0/24"),
            Prefix::V6(high) => {
                format!("{}/64", std::net::Ipv6Addr::from(u128::from(high) << 64))
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// GCRA theoretical arrival time (µs): the bucket is full when it is not after now.
    tat: i64,
    /// Refusals since the last report.
    refused: u64,
    /// When it was last reported; `i64::MIN`: never.
    reported: i64,
    /// Last time it was touched, for eviction.
    used: i64,
}

/// Microseconds between two tokens, and the bucket's depth; `None` when switched off.
fn shape(rate: Rate) -> Option<(i64, i64)> {
    (rate.per_minute > 0).then(|| {
        (
            60_000_000 / i64::from(rate.per_minute),
            i64::from(rate.burst.max(1)),
        )
    })
}

/// The bucket's new arrival time if one more token fits at `now`, else the wait (µs).
fn take(tat: i64, now: i64, (interval, burst): (i64, i64)) -> Result<i64, i64> {
    let next = tat.max(now).saturating_add(interval);
    let allowed_at = next.saturating_sub(interval.saturating_mul(burst));
    if now >= allowed_at {
        Ok(next)
    } else {
        Err(allowed_at - now)
    }
}

#[derive(Debug, Clone)]
struct Table<K> {
    buckets: HashMap<K, Bucket>,
}

impl<K: std::hash::Hash + Eq + Copy> Table<K> {
    fn new() -> Self {
        Table {
            buckets: HashMap::new(),
        }
    }

    fn tat(&self, key: &K) -> i64 {
        self.buckets.get(key).map_or(i64::MIN, |b| b.tat)
    }

    /// Makes room for one more key: drops full buckets (they hold nothing a fresh one
    /// would not), and if that frees too little, the least recently used half. Each
    /// sweep frees at least a quarter of the table, so its cost spreads over the
    /// insertions that follow.
    fn make_room(&mut self, cap: usize, now: i64) {
        if self.buckets.len() < cap.max(1) {
            return;
        }
        self.buckets.retain(|_, b| b.tat > now);
        if self.buckets.len() > cap / 4 * 3 {
            let mut used: Vec<i64> = self.buckets.values().map(|b| b.used).collect();
            let half = used.len() / 2;
            used.select_nth_unstable(half);
            let cut = used[half];
            self.buckets.retain(|_, b| b.used > cut);
        }
    }

    fn entry(&mut self, key: K, cap: usize, now: i64) -> &mut Bucket {
        if !self.buckets.contains_key(&key) {
            self.make_room(cap, now);
        }
        let b = self.buckets.entry(key).or_insert(Bucket {
            tat: now,
            refused: 0,
            reported: i64::MIN,
            used: now,
        });
        b.used = now;
        b
    }

    /// Counts a refusal of `key`; returns the refusals to report, when due.
    fn refuse(&mut self, key: K, cap: usize, now: i64) -> Option<u64> {
        let b = self.entry(key, cap, now);
        b.refused += 1;
        let due = b.reported == i64::MIN || now.saturating_sub(b.reported) >= REPORT_EVERY_US;
        due.then(|| {
            b.reported = now;
            std::mem::take(&mut b.refused)
        })
    }

    fn len(&self) -> usize {
        self.buckets.len()
    }
}

/// The limiter's state: a bucket per recently seen address and prefix.
#[derive(Debug, Clone)]
pub struct NewClientLimiter {
    limits: NewClientLimits,
    addresses: Table<IpAddr>,
    prefixes: Table<Prefix>,
}

impl NewClientLimiter {
    /// An empty limiter.
    pub fn new(limits: NewClientLimits) -> Self {
        NewClientLimiter {
            limits,
            addresses: Table::new(),
            prefixes: Table::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &NewClientLimits {
        &self.limits
    }

    /// Addresses and prefixes remembered now.
    pub fn tracked(&self) -> (usize, usize) {
        (self.addresses.len(), self.prefixes.len())
    }

    /// Decides on one new client from `ip` at `now_us` (Unix microseconds) and updates
    /// the state: an admitted client takes a token from its address's and its prefix's
    /// buckets; a refused one takes none.
    pub fn check(&mut self, ip: IpAddr, now_us: i64) -> Decision {
        let ip = ip.to_canonical();
        if self.limits.exempt_loopback && ip.is_loopback() {
            return Decision::Exempt;
        }
        let cap = self.limits.max_tracked;
        let prefix = Prefix::of(ip);
        let address = shape(self.limits.per_address)
            .map(|s| take(self.addresses.tat(&ip), now_us, s))
            .transpose();
        let by_prefix = shape(self.limits.per_prefix)
            .map(|s| take(self.prefixes.tat(&prefix), now_us, s))
            .transpose();
        match (address, by_prefix) {
            (Ok(a), Ok(p)) => {
                if let Some(tat) = a {
                    self.addresses.entry(ip, cap, now_us).tat = tat;
                }
                if let Some(tat) = p {
                    self.prefixes.entry(prefix, cap, now_us).tat = tat;
                }
                Decision::Admitted
            }
            (Err(wait), _) => Decision::Refused(Refused {
                scope: Scope::Address,
                subject: ip.to_string(),
                retry_after_us: wait,
                report: self.addresses.refuse(ip, cap, now_us),
            }),
            (Ok(_), Err(wait)) => Decision::Refused(Refused {
                scope: Scope::Prefix,
                subject: prefix.cidr(),
                retry_after_us: wait,
                report: self.prefixes.refuse(prefix, cap, now_us),
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;

    fn limits(address: (u32, u32), prefix: (u32, u32)) -> NewClientLimits {
        NewClientLimits {
            per_address: Rate {
                per_minute: address.0,
                burst: address.1,
            },
            per_prefix: Rate {
                per_minute: prefix.0,
                burst: prefix.1,
            },
            exempt_loopback: true,
            max_tracked: 1_000,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn admitted(l: &mut NewClientLimiter, from: &str, now: i64, n: usize) -> usize {
        (0..n)
            .filter(|_| l.check(ip(from), now) == Decision::Admitted)
            .count()
    }

    #[test]
    fn an_address_gets_its_burst_then_its_rate() {
        let mut l = NewClientLimiter::new(limits((60, 10), (0, 0)));
        assert_eq!(admitted(&mut l, "192.0.2.7", 0, 25), 10);
        let Decision::Refused(r) = l.check(ip("192.0.2.7"), 0) else {
            panic!("past the burst")
        };
        assert_eq!(r.scope, Scope::Address);
        assert_eq!(r.retry_after_secs(), 1, "60 a minute: one a second");
        // One second later, exactly one more.
        assert_eq!(admitted(&mut l, "192.0.2.7", 1_000_000, 5), 1);
        // A full minute refills the whole burst, no more.
        assert_eq!(admitted(&mut l, "192.0.2.7", MIN + 2_000_000, 50), 10);
        // Another address is not affected.
        assert_eq!(admitted(&mut l, "192.0.2.8", 0, 10), 10);
    }

    #[test]
    fn a_prefix_limits_many_addresses_together() {
        let mut l = NewClientLimiter::new(limits((100, 5), (100, 12)));
        let mut n = 0;
        for host in 1..=10 {
            n += admitted(&mut l, &format!("198.51.100.{host}"), 0, 5);
        }
        assert_eq!(n, 12, "the /24's burst bounds its addresses' together");
        let Decision::Refused(r) = l.check(ip("198.51.100.200"), 0) else {
            panic!("the prefix is spent")
        };
        assert_eq!(
            (r.scope, r.subject.as_str()),
            (Scope::Prefix, "198.51.100.0/24")
        );
        // IPv6: one /64 shares a bucket, the next /64 does not.
        assert_eq!(admitted(&mut l, "2001:db8:0:1::1", 0, 5), 5);
        assert_eq!(admitted(&mut l, "2001:db8:0:1::2", 0, 10), 5);
        assert_eq!(admitted(&mut l, "2001:db8:0:1::3", 0, 10), 2);
        assert_eq!(admitted(&mut l, "2001:db8:0:2::1", 0, 10), 5);
    }

    #[test]
    fn loopback_is_exempt_unless_switched_off() {
        let mut l = NewClientLimiter::new(limits((1, 1), (1, 1)));
        for from in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(l.check(ip(from), 0), Decision::Exempt, "{from}");
        }
        let mut strict = limits((1, 1), (0, 0));
        strict.exempt_loopback = false;
        let mut l = NewClientLimiter::new(strict);
        assert_eq!(admitted(&mut l, "127.0.0.1", 0, 3), 1);
        // An IPv4-mapped address is the IPv4 address, not a separate bucket.
        assert_eq!(admitted(&mut l, "::ffff:127.0.0.1", 0, 3), 0);
    }

    #[test]
    fn reports_come_once_per_period_with_the_refusals_since() {
        let mut l = NewClientLimiter::new(limits((1, 1), (0, 0)));
        let mut reports = Vec::new();
        for i in 0..1_000 {
            // Ten minutes and a bit, a request every 0.7 s.
            if let Decision::Refused(r) = l.check(ip("203.0.113.5"), i * 700_000) {
                reports.extend(r.report);
            }
        }
        assert_eq!(reports.len(), 2, "{reports:?}");
        assert_eq!(reports[0], 1, "the first refusal is reported at once");
        // The second: the refusals of the ten minutes since, less the ten or so
        // admitted at one a minute.
        assert!((800..860).contains(&reports[1]), "{}", reports[1]);
    }

    #[test]
    fn memory_stays_bounded_and_attackers_stay_limited() {
        let mut l = NewClientLimiter::new(NewClientLimits {
            max_tracked: 64,
            ..limits((1, 2), (0, 0))
        });
        // A flood from many addresses, each with its bucket in debt.
        for i in 0..10_000u32 {
            let a = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
            l.check(a, i64::from(i));
        }
        let (addresses, _) = l.tracked();
        assert!(addresses <= 64, "{addresses}");
        // The busiest recent address is still remembered and limited.
        let last = IpAddr::from((0x0a00_0000u32 + 9_999).to_be_bytes());
        assert_eq!(l.check(last, 10_000), Decision::Admitted);
        assert!(matches!(l.check(last, 10_000), Decision::Refused(_)));
    }

    #[test]
    fn zero_switches_a_limit_off() {
        let mut l = NewClientLimiter::new(limits((0, 0), (0, 0)));
        assert_eq!(admitted(&mut l, "192.0.2.1", 0, 10_000), 10_000);
        assert_eq!(
            l.tracked(),
            (0, 0),
            "nothing remembered when nothing is limited"
        );
    }
}
