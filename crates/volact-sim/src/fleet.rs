//! The simulated machines: who they are (client id, product, clock), when they join,
//! leave or go offline, and what each holds (its ticket, its license state).

use crate::scenario::{DAY, Scenario, signed_duration};
use volact_core::catalog::Catalog;
use volact_core::license::{LicenseInputs, LicenseState, license_state};
use volact_proto::ApiError;

/// A small, seeded random number generator (SplitMix64): the same seed gives the same
/// fleet on every platform, and no dependency is needed for it.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A random version-4 UUID.
    pub fn uuid(&mut self) -> uuid::Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

/// What the fleet needs of a product.
#[derive(Debug, Clone)]
pub struct ProductInfo {
    /// Product id.
    pub id: String,
    /// Its application.
    pub application: String,
    /// Its setup key.
    pub setup_key: String,
    /// Its minimum count.
    pub minimum: u32,
    /// Its initial grace in days.
    pub grace_days: u32,
}

/// One simulated machine.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Index of its group.
    pub group: usize,
    /// Index of its product in [`Fleet::products`].
    pub product: usize,
    /// Its client id, hyphenated (shared by clones).
    pub client_id: String,
    /// Its machine name.
    pub name: String,
    /// Its machine fingerprint: distinct for every machine, clones included.
    pub fingerprint: String,
    /// When it installs the setup key and first asks (host time, Unix seconds).
    pub join: i64,
    /// When it is retired, if it is.
    pub leave: Option<i64>,
    /// When it stops asking, and when it comes back (never, if `None`).
    pub offline: Option<(i64, Option<i64>)>,
    /// Its clock minus the host's, in seconds.
    pub offset: i64,
    /// The retry interval it uses after a failure: the host's once heard from.
    pub retry_secs: i64,
    /// The id of the ticket it holds.
    pub ticket_id: Option<String>,
    /// When that ticket ends (host clock).
    pub valid_until: Option<i64>,
    /// When it first received a ticket (host time).
    pub first_ticket: Option<i64>,
    /// When it first fell into notification (host time).
    pub notified_at: Option<i64>,
    /// Answers received so far (drives sampled verification).
    pub answers: u64,
    state: Option<(LicenseState, Option<i64>)>,
}

impl Machine {
    /// Whether it belongs to the fleet at `t`: installed and not retired.
    pub fn present(&self, t: i64) -> bool {
        self.join <= t && self.leave.is_none_or(|l| t < l)
    }

    /// Takes a new ticket.
    pub fn hold(&mut self, ticket_id: String, valid_until: i64, at: i64) {
        self.ticket_id = Some(ticket_id);
        self.valid_until = Some(valid_until);
        self.first_ticket.get_or_insert(at);
        self.state = None;
    }

    /// The license state at host time `t`, as the machine's own clock sees it. The pure
    /// rule is evaluated again only when the last answer's `until` has passed or the
    /// ticket changed, so sampling a large fleet every day stays cheap.
    pub fn state(&mut self, t: i64, grace_days: u32) -> LicenseState {
        let local = t + self.offset;
        if let Some((state, until)) = self.state
            && until.is_none_or(|u| local < u)
        {
            return state;
        }
        let ts = |s: i64| jiff::Timestamp::from_second(s).ok();
        let status = license_state(
            &LicenseInputs::plain(
                ts(self.join + self.offset),
                grace_days,
                self.valid_until.and_then(ts),
            ),
            ts(local).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        );
        if status.state == LicenseState::Notification && self.notified_at.is_none() {
            // It entered notification when the previous state ran out, if that is known.
            let since = match self.state {
                Some((_, Some(until))) => until - self.offset,
                _ => t,
            };
            self.notified_at = Some(since);
        }
        self.state = Some((status.state, status.until.map(|u| u.as_second())));
        status.state
    }
}

/// The machines of a scenario and what they install.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// Products, as the clients' catalog lists them.
    pub products: Vec<ProductInfo>,
    /// Machines, grouped in scenario order.
    pub machines: Vec<Machine>,
}

impl Fleet {
    /// Builds the machines of `scenario` from `seed`, with times relative to `start`.
    pub fn build(
        scenario: &Scenario,
        catalog: &Catalog,
        start: i64,
        seed: u64,
        default_retry: i64,
    ) -> Result<Fleet, ApiError> {
        let products: Vec<ProductInfo> = catalog
            .products
            .iter()
            .map(|p| ProductInfo {
                id: p.id.clone(),
                application: p.application.clone(),
                setup_key: p.setup_key.to_string(),
                minimum: p.minimum_count,
                grace_days: p.grace_days,
            })
            .collect();
        let mut rng = Rng::new(seed);
        let mut machines = Vec::new();
        let mut first_of_group = Vec::new();
        for (g, spec) in scenario.groups.iter().enumerate() {
            first_of_group.push(machines.len());
            let product = products
                .iter()
                .position(|p| p.id == spec.product)
                .unwrap_or(0);
            let spread = match &spec.join_spread {
                Some(s) => signed_duration(s)?.as_secs().max(0),
                None => 3600,
            };
            let offset = match &spec.clock_offset {
                Some(s) => signed_duration(s)?.as_secs(),
                None => 0,
            };
            let origin = spec.cloned_from.as_ref().and_then(|src| {
                let o = scenario.groups.iter().position(|x| &x.name == src)?;
                Some((
                    first_of_group.get(o).copied()?,
                    scenario.groups.get(o)?.count,
                ))
            });
            let join = start + spec.join_day.secs();
            let n = i64::from(spec.count);
            for i in 0..spec.count {
                let uuid = rng.uuid();
                let client_id = match origin {
                    Some((first, count)) => {
                        let k = first + (i % count) as usize;
                        machines
                            .get(k)
                            .map(|m: &Machine| m.client_id.clone())
                            .unwrap_or_default()
                    }
                    None => uuid.hyphenated().to_string(),
                };
                // Evenly spread, plus a seeded jitter of up to one step, so machines do
                // not arrive in lock-step yet the order is reproducible.
                let step = spread / n.max(1);
                let jitter = if step > 0 {
                    i64::try_from(rng.next_u64() % step.unsigned_abs()).unwrap_or(0)
                } else {
                    0
                };
                let offline = spec.offline_day.map(|d| {
                    let from = start + d.secs();
                    (from, spec.offline_days.map(|len| from + len.secs()))
                });
                let name = format!("{}-{:05}", spec.name, i + 1);
                machines.push(Machine {
                    group: g,
                    product,
                    client_id,
                    fingerprint: volact_core::util::machine_fingerprint(&format!("{seed}/{name}")),
                    name,
                    join: join + step * i64::from(i) + jitter,
                    leave: spec.leave_day.map(|d| start + d.secs()),
                    offline,
                    offset,
                    retry_secs: default_retry,
                    ticket_id: None,
                    valid_until: None,
                    first_ticket: None,
                    notified_at: None,
                    answers: 0,
                    state: None,
                });
            }
        }
        Ok(Fleet { products, machines })
    }
}

/// The first whole day at or after `t`, counted from `start`.
pub fn day_of(t: i64, start: i64) -> i64 {
    (t - start).div_euclid(DAY)
}
