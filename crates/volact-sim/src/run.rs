//! The simulation loop: an event queue of each machine's next contact, keyed by virtual
//! time, played against the real engine in batches, and a sample of the whole fleet at
//! the end of every day.

use crate::fleet::Fleet;
use crate::host::SimHost;
use crate::report::{DayRow, Report, Tally};
use crate::scenario::{DAY, Scenario, Verify};
use jiff::Timestamp;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::path::PathBuf;
use volact_core::keys::PublicKey;
use volact_core::license::LicenseState;
use volact_core::settings::{RANGES, Settings};
use volact_core::ticket::{Expected, Ticket, TrustedHost, VerifiedAnswer};
use volact_core::token;
use volact_proto::{ActivationRequest, ActivationResponse, ActivationResult, ApiError, ErrorCode};

/// How to run a scenario.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Overrides the scenario's seed.
    pub seed: Option<u64>,
    /// Send requests through the real HTTP server on 127.0.0.1.
    pub http: bool,
    /// Where the temporary host directory goes (default: `/dev/shm` when present, since
    /// durability is not what a simulation measures, else the system's temporary dir).
    pub work_dir: Option<PathBuf>,
    /// Overrides the scenario's verification setting.
    pub verify: Option<Verify>,
}

/// One in this many answers is verified under [`Verify::Sample`].
const SAMPLE_EVERY: u64 = 100;

fn ts(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn work_dir(options: &Options) -> Result<tempfile::TempDir, ApiError> {
    let base = options.work_dir.clone().unwrap_or_else(|| {
        let shm = PathBuf::from("/dev/shm");
        if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        }
    });
    tempfile::Builder::new()
        .prefix("volact-sim-")
        .tempdir_in(&base)
        .map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidState,
                format!("cannot create a directory in {}: {e}", base.display()),
            )
        })
}

/// What the loop keeps while it runs.
struct Sim {
    host: SimHost,
    trust: Trust,
    fleet: Fleet,
    verify: Verify,
    seed: u64,
    nonces: u64,
    /// Shortest time between two contacts of one machine: requests closer than this
    /// together cannot depend on each other's answers, so they go to the engine as one batch.
    window: i64,
    outages: Vec<(i64, i64)>,
    queue: BinaryHeap<Reverse<(i64, u32)>>,
    today: Tally,
    tally: Tally,
    groups: Vec<Tally>,
}

/// [`run`] on a runtime of its own with a single thread, for callers outside a runtime
/// (or on a blocking thread). One thread suits the simulation: its requests are started
/// one after another anyway, and keeping the engine, the writer and the loop on one
/// thread saves the cross-thread wake-ups that otherwise dominate a small batch.
pub fn run_blocking(
    scenario: &Scenario,
    options: &Options,
    progress: &mut dyn FnMut(u32, u32),
) -> Result<Report, ApiError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            ApiError::new(
                ErrorCode::Internal,
                format!("cannot start the simulation's runtime: {e}"),
            )
        })?;
    runtime.block_on(run(scenario, options, progress))
}

/// Runs a scenario and returns its timeline and summary. `progress` is told each day
/// done and the number of days.
pub async fn run(
    scenario: &Scenario,
    options: &Options,
    progress: &mut dyn FnMut(u32, u32),
) -> Result<Report, ApiError> {
    let seed = options.seed.unwrap_or(scenario.seed);
    let start = scenario.start_secs()?;
    let dir = work_dir(options)?;
    let host = SimHost::start(scenario, dir.path(), ts(start), options.http).await?;
    let settings = scenario.settings()?;
    let default_retry = volact_core::settings::Settings::default()
        .retry_interval
        .as_secs();
    let fleet = Fleet::build(scenario, &host.catalog, start, seed, default_retry)?;
    let window = settings
        .retry_interval
        .as_secs()
        .min(settings.renew_interval.as_secs())
        .clamp(60, DAY);
    let mut queue = BinaryHeap::with_capacity(fleet.machines.len());
    for (i, m) in fleet.machines.iter().enumerate() {
        queue.push(Reverse((m.join, u32::try_from(i).unwrap_or(u32::MAX))));
    }
    let mut sim = Sim {
        trust: Trust {
            root: host.root.clone(),
            host: None,
        },
        host,
        verify: options.verify.unwrap_or(scenario.verify),
        seed,
        nonces: 0,
        window,
        outages: scenario
            .outages
            .iter()
            .map(|o| (start + o.from_day.secs(), start + o.to_day.secs()))
            .collect(),
        queue,
        today: Tally::default(),
        tally: Tally::default(),
        groups: vec![Tally::default(); scenario.groups.len()],
        fleet,
    };
    let mut rows = Vec::with_capacity(scenario.days as usize);
    for day in 0..scenario.days {
        let day_end = start + (i64::from(day) + 1) * DAY;
        sim.play_until(day_end).await;
        rows.push(sim.sample(day, day_end)?);
        progress(day + 1, scenario.days);
    }
    let Sim {
        host,
        fleet,
        tally,
        groups,
        ..
    } = sim;
    let clone_flags = if scenario.groups.iter().any(|g| g.cloned_from.is_some()) {
        clone_flags(&host, start).await
    } else {
        0
    };
    let mut report = Report::new(scenario, seed, start, rows, &fleet, tally, groups, &host);
    report.clone_flags = clone_flags;
    host.stop().await?;
    drop(dir);
    Ok(report)
}

/// Client ids the host flagged as cloned images. Flags are stored by a background task
/// of the host, so this waits (briefly, in real time) until their number settles.
async fn clone_flags(host: &SimHost, start: i64) -> u64 {
    let mut last = None;
    let mut stable = 0;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let n = host
            .engine
            .store()
            .clones(start)
            .await
            .map(|c| c.len() as u64)
            .unwrap_or(0);
        if last == Some(n) && n > 0 {
            stable += 1;
            if stable >= 3 {
                break;
            }
        } else {
            stable = 0;
        }
        last = Some(n);
    }
    last.unwrap_or(0)
}

impl Sim {
    /// Plays every contact before `end`, in batches of at most one window.
    async fn play_until(&mut self, end: i64) {
        while let Some(&Reverse((first, _))) = self.queue.peek() {
            if first >= end {
                break;
            }
            let batch_end = (first + self.window).min(end);
            let mut due: Vec<(i64, u32)> = Vec::new();
            while let Some(&Reverse((t, i))) = self.queue.peek() {
                if t >= batch_end {
                    break;
                }
                self.queue.pop();
                due.push((t, i));
            }
            let mut requests = Vec::with_capacity(due.len());
            let mut sent = Vec::with_capacity(due.len());
            for (t, i) in due {
                if let Some(req) = self.contact(t, i) {
                    requests.push((ts(t), req));
                    // The request's nonce is its number: see `nonce`.
                    sent.push((t, i, self.nonces));
                }
            }
            if requests.is_empty() {
                continue;
            }
            let answers = self.host.send(requests).await;
            for ((t, i, n), answer) in sent.into_iter().zip(answers) {
                self.settle(t, i, answer, n);
            }
        }
    }

    /// What machine `i` does at `t`: a request, or nothing (retired, offline, the host
    /// down — then it is rescheduled as its agent would be).
    fn contact(&mut self, t: i64, i: u32) -> Option<ActivationRequest> {
        let m = self.fleet.machines.get(i as usize)?;
        if m.leave.is_some_and(|l| t >= l) {
            return None;
        }
        if let Some((from, until)) = m.offline
            && t >= from
            && until.is_none_or(|u| t < u)
        {
            if let Some(u) = until {
                self.queue.push(Reverse((u, i)));
            }
            return None;
        }
        if self.outages.iter().any(|&(a, b)| t >= a && t < b) {
            let group = m.group;
            let retry = m.retry_secs;
            self.count(group, Err(ErrorCode::HostUnreachable));
            self.reschedule(t, i, t + retry);
            return None;
        }
        let product = self.fleet.products.get(m.product)?;
        self.nonces += 1;
        Some(ActivationRequest {
            client_id: m.client_id.clone(),
            setup_key: product.setup_key.clone(),
            minimum_count: product.minimum,
            client_time: ts(t + m.offset),
            nonce: nonce(self.seed, self.nonces),
            machine_name: m.name.clone(),
            ticket_id: m.ticket_id.clone(),
            machine_fingerprint: None,
            previous_client_id: None,
        })
    }

    fn reschedule(&mut self, t: i64, i: u32, next: i64) {
        // Never sooner than one window: see `window`. The host's intervals are at least
        // 15 minutes, so only a clock far ahead of a short renewal interval is affected.
        self.queue.push(Reverse((next.max(t + self.window), i)));
    }

    fn count(&mut self, group: usize, result: Result<(), ErrorCode>) {
        self.today.add(result);
        self.tally.add(result);
        if let Some(g) = self.groups.get_mut(group) {
            g.add(result);
        }
    }

    /// Takes an answer as the client would: verifies it (all or a sample), keeps the
    /// ticket, and schedules the next contact.
    fn settle(
        &mut self,
        t: i64,
        i: u32,
        answer: Result<ActivationResponse, ApiError>,
        nonce_number: u64,
    ) {
        let Some(m) = self.fleet.machines.get_mut(i as usize) else {
            return;
        };
        m.answers += 1;
        let group = m.group;
        let offset = m.offset;
        let (product, minimum) = self
            .fleet
            .products
            .get(m.product)
            .map_or(("", 0), |p| (p.id.as_str(), p.minimum));
        let checked = match answer {
            Ok(resp) => {
                if let Ok(r) = i64::try_from(resp.intervals.retry_interval_secs) {
                    m.retry_secs = r.clamp(RANGES[1].min, RANGES[1].max);
                }
                let check = match self.verify {
                    Verify::All => true,
                    Verify::Sample => {
                        m.first_ticket.is_none() || m.answers.is_multiple_of(SAMPLE_EVERY)
                    }
                    Verify::None => false,
                };
                if check {
                    let nonce = nonce(self.seed, nonce_number);
                    let expected = Expected {
                        client_id: &m.client_id,
                        product,
                        nonce: &nonce,
                        minimum,
                        now: ts(t + offset),
                        max_skew: Settings::default().max_clock_skew,
                        catalog: None,
                    };
                    self.trust.verify(&resp, expected)
                } else {
                    read(&resp)
                }
            }
            Err(e) => Err(e),
        };
        let retry = m.retry_secs;
        match checked {
            Ok(Judged::Ticket(ticket)) => {
                let (renew, exp) = (ticket.renew_after.as_second(), ticket.exp.as_second());
                m.hold(ticket.jti, exp, t);
                self.count(group, Ok(()));
                self.reschedule(t, i, renew - offset);
            }
            Ok(Judged::NotYet(retry_after)) => {
                self.count(group, Err(ErrorCode::CountInsufficient));
                self.reschedule(t, i, retry_after.map_or(t + retry, |r| r - offset));
            }
            Err(e) => {
                // As the client does with a refusal it has not verified: its own retry
                // interval (a signed refusal of this host says the same interval).
                self.count(group, Err(e.code));
                self.reschedule(t, i, t + retry);
            }
        }
    }

    /// The fleet at the end of a day.
    fn sample(&mut self, day: u32, at: i64) -> Result<DayRow, ApiError> {
        self.host.clock.set(ts(at));
        let mut counts: BTreeMap<String, u32> = self
            .host
            .catalog
            .applications
            .iter()
            .map(|a| (a.id.clone(), 0))
            .collect();
        for (app, n) in self.host.engine.counts()? {
            counts.insert(app, n);
        }
        let mut states = [0u32; 4];
        for m in &mut self.fleet.machines {
            if !m.present(at) {
                continue;
            }
            let grace = self
                .fleet
                .products
                .get(m.product)
                .map_or(0, |p| p.grace_days);
            let k = match m.state(at, grace) {
                LicenseState::Licensed => 0,
                LicenseState::InitialGrace => 1,
                LicenseState::OutOfToleranceGrace => 2,
                // The simulator's clocks never go back and its states are never edited,
                // so the last two do not occur; they would count as not licensed.
                LicenseState::Notification
                | LicenseState::Unlicensed
                | LicenseState::ClockRollback
                | LicenseState::StateTampered => 3,
            };
            if let Some(s) = states.get_mut(k) {
                *s += 1;
            }
        }
        let today = std::mem::take(&mut self.today);
        Ok(DayRow {
            day,
            date: ts(at - DAY).strftime("%Y-%m-%d").to_string(),
            counts,
            licensed: states[0],
            initial_grace: states[1],
            out_of_tolerance_grace: states[2],
            notification: states[3],
            requests: today.requests,
            activated: today.activated,
            refusals: today.refusals,
            host_down: self.outages.iter().any(|&(a, b)| a < at && b > at - DAY),
        })
    }
}

/// An answer as the client takes it.
// Moved once per answer: boxing the ticket would cost an allocation for each instead.
#[allow(clippy::large_enum_variant)]
enum Judged {
    Ticket(Ticket),
    NotYet(Option<i64>),
}

/// The nonce of the `n`th request: numbered, so a request's nonce can be written out
/// again for the rare answer that is verified instead of kept for every request.
fn nonce(seed: u64, n: u64) -> String {
    format!("sim{seed:x}n{n:012x}")
}

/// What the simulated clients trust: the vendor root, and the host certificate last
/// verified against it.
struct Trust {
    root: PublicKey,
    /// The certificate's text and what it vouches for. Every answer carries the
    /// certificate, and verifying it costs as much as verifying the ticket, while it
    /// changes only if the host is given a new one; a different text is verified anew.
    host: Option<(String, TrustedHost)>,
}

impl Trust {
    /// Verifies an answer along the whole chain, as `verify_answer` does.
    fn verify(
        &mut self,
        resp: &ActivationResponse,
        expected: Expected<'_>,
    ) -> Result<Judged, ApiError> {
        let host = match self.host.take() {
            Some((text, host)) if text == resp.host_certificate => self.host.insert((text, host)),
            _ => {
                let host = TrustedHost::verify(&self.root, &resp.host_id, &resp.host_certificate)?;
                self.host.insert((resp.host_certificate.clone(), host))
            }
        };
        Ok(match host.1.verify_answer(resp, expected)? {
            VerifiedAnswer::Ticket { ticket, .. } => Judged::Ticket(ticket),
            VerifiedAnswer::NotYet { not_yet, .. } => {
                Judged::NotYet(Some(not_yet.retry_after.as_second()))
            }
        })
    }
}

/// Takes an answer without verifying it.
fn read(resp: &ActivationResponse) -> Result<Judged, ApiError> {
    match resp.result {
        ActivationResult::Activated => {
            let text = resp.ticket.as_deref().unwrap_or_default();
            let ticket = token::peek::<Ticket>(text).map_err(|e| {
                ApiError::new(ErrorCode::UntrustedHost, format!("unreadable ticket: {e}"))
            })?;
            Ok(Judged::Ticket(ticket))
        }
        ActivationResult::CountInsufficient => {
            Ok(Judged::NotYet(resp.retry_after.map(|r| r.as_second())))
        }
    }
}
