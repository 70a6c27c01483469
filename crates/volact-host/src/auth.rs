//! Admin authentication: the bearer token from the data directory, compared in constant
//! time, with wrong tokens slowed down — without ever locking out the right one.
//!
//! A back-off keyed by address alone lets anyone who shares an address with the
//! administrator (a NAT, a jump host, 127.0.0.1) lock them out with a few wrong guesses.
//! So the presented token is always compared first, and a right one is always accepted;
//! the back-off only decides how a *wrong* one is answered (`unauthorized` while an
//! address is within its free failures, `rate-limited` with a wait after that).
//!
//! That is safe because the admin token is 256 random bits: a guess that is compared
//! anyway gains nothing, and at any rate a host can answer, finding the token takes longer
//! than the universe has left. A short token (a hand-written metrics token, say) has no
//! such margin, so for it the strict back-off of before stays: while an address waits,
//! nothing it presents is compared, the right token included.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use volact_proto::{ApiError, ErrorCode};

/// Failures from one address allowed before slowing it down.
const FREE_FAILURES: u32 = 5;
/// Longest an address is made to wait.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Addresses remembered at most; the oldest are forgotten first.
const MAX_TRACKED: usize = 10_000;
/// Shortest token that is always compared, even from an address in back-off: 32
/// characters carry at least 128 bits when random (the generated admin token has 64 hex
/// digits, 256 bits).
pub const STRONG_TOKEN_CHARS: usize = 32;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    /// Until when an address with these failures must wait, if it must.
    fn ready_at(&self) -> Option<Instant> {
        let over = self.count.checked_sub(FREE_FAILURES)?;
        let wait = Duration::from_secs(1u64 << over.min(6)).min(MAX_BACKOFF);
        Some(self.last + wait)
    }
}

/// Checks admin credentials.
#[derive(Debug)]
pub struct AdminAuth {
    token: String,
    /// Where the token is kept, for the refusal's message.
    token_file: String,
    strong: bool,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

impl AdminAuth {
    /// Accepts `token`.
    pub fn new(token: String) -> AdminAuth {
        AdminAuth {
            strong: token.chars().count() >= STRONG_TOKEN_CHARS,
            token,
            token_file: "DATA/admin.token".to_owned(),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The same, naming `file` as where the token is kept (the vendor service's is in
    /// its directory, not a host's data directory).
    pub fn kept_in(mut self, file: impl Into<String>) -> AdminAuth {
        self.token_file = file.into();
        self
    }

    /// Whether `presented` is the admin token, for a request from `ip` at `now`.
    ///
    /// The right token is always accepted (for a strong token; see the module). After
    /// five wrong tokens an address is answered `rate-limited` for 1 s, then 2 s, 4 s …
    /// up to a minute after its latest wrong token (the wait in the details), and wrong
    /// tokens sent meanwhile extend the wait. A success does not clear the failures of
    /// its address: whoever else guesses from there keeps waiting.
    pub fn check(&self, ip: IpAddr, presented: Option<&str>, now: Instant) -> Result<(), ApiError> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let waiting = failures
            .get(&ip)
            .and_then(Failures::ready_at)
            .filter(|ready| now < *ready);
        // A weak token is not compared while its address waits, so guessing it stays
        // bounded by the back-off (the right one waits too).
        let compare = self.strong || waiting.is_none();
        if compare
            && let Some(p) = presented
            && volact_engine::secret_matches(p.trim(), &self.token)
        {
            return Ok(());
        }
        if failures.len() >= MAX_TRACKED
            && !failures.contains_key(&ip)
            && let Some(oldest) = failures
                .iter()
                .min_by_key(|(_, f)| f.last)
                .map(|(ip, _)| *ip)
        {
            failures.remove(&oldest);
        }
        let entry = failures.entry(ip).or_insert(Failures {
            count: 0,
            last: now,
        });
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        match (waiting, entry.ready_at()) {
            (Some(_), Some(ready)) => {
                let secs = ready.saturating_duration_since(now).as_secs().max(1);
                Err(ApiError::with_details(
                    ErrorCode::RateLimited,
                    format!(
                        "too many wrong admin tokens from {ip}; wait {secs} s before trying again"
                    ),
                    serde_json::json!({ "retry_after_secs": secs }),
                ))
            }
            _ => Err(ApiError::new(
                ErrorCode::Unauthorized,
                format!(
                    "missing or wrong admin token; send `Authorization: Bearer TOKEN` with the token from {}",
                    self.token_file
                ),
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const STRONG: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn wrong_tokens_are_slowed_down_but_the_right_one_always_passes() {
        let auth = AdminAuth::new(STRONG.into());
        let ip: IpAddr = [127, 0, 0, 1].into();
        let t = Instant::now();
        for _ in 0..5 {
            assert_eq!(
                auth.check(ip, Some("nope"), t).unwrap_err().code,
                ErrorCode::Unauthorized
            );
        }
        // The back-off begins: a wrong token waits, and keeps the wait going…
        for _ in 0..100 {
            assert_eq!(
                auth.check(ip, Some("nope"), t).unwrap_err().code,
                ErrorCode::RateLimited
            );
        }
        let e = auth.check(ip, None, t).unwrap_err();
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert!(e.details["retry_after_secs"].as_u64().unwrap() >= 1);
        // …but the right token from the same address passes at once, and does not end
        // the wait of whoever else guesses from there.
        assert!(auth.check(ip, Some(STRONG), t).is_ok());
        assert_eq!(
            auth.check(ip, Some("nope"), t).unwrap_err().code,
            ErrorCode::RateLimited
        );
        // Another address is not affected.
        assert_eq!(
            auth.check([127, 0, 0, 2].into(), Some("nope"), t)
                .unwrap_err()
                .code,
            ErrorCode::Unauthorized
        );
        // After the longest wait, wrong tokens are answered `unauthorized` again.
        let later = t + MAX_BACKOFF + Duration::from_secs(1);
        assert_eq!(
            auth.check(ip, Some("nope"), later).unwrap_err().code,
            ErrorCode::Unauthorized
        );
    }

    #[test]
    fn a_short_token_keeps_the_strict_back_off() {
        let auth = AdminAuth::new("secret".into());
        let ip: IpAddr = [127, 0, 0, 1].into();
        let t = Instant::now();
        assert!(auth.check(ip, Some("secret"), t).is_ok());
        for _ in 0..5 {
            assert_eq!(
                auth.check(ip, Some("nope"), t).unwrap_err().code,
                ErrorCode::Unauthorized
            );
        }
        // A short token could be guessed if every guess were compared: the right one
        // must wait too.
        assert_eq!(
            auth.check(ip, Some("secret"), t).unwrap_err().code,
            ErrorCode::RateLimited
        );
        assert!(auth.check([127, 0, 0, 2].into(), Some("secret"), t).is_ok());
        let later = t + Duration::from_secs(3);
        assert!(auth.check(ip, Some("secret"), later).is_ok());
    }
}
