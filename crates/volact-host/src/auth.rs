//! Admin authentication: the bearer token from the data directory, compared in constant
//! time, with failures from one address slowed down so the token cannot be guessed.

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

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Checks admin credentials.
#[derive(Debug)]
pub struct AdminAuth {
    token: String,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

impl AdminAuth {
    /// Accepts `token`.
    pub fn new(token: String) -> AdminAuth {
        AdminAuth {
            token,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `presented` is the admin token, for a request from `ip` at `now`. After
    /// five failures an address must wait 1 s, then 2 s, 4 s … up to a minute between
    /// attempts (`rate-limited`, with the wait in the details); a success clears it.
    pub fn check(&self, ip: IpAddr, presented: Option<&str>, now: Instant) -> Result<(), ApiError> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = failures.get(&ip)
            && f.count >= FREE_FAILURES
        {
            let shift = (f.count - FREE_FAILURES).min(6);
            let wait = Duration::from_secs(1u64 << shift).min(MAX_BACKOFF);
            let ready = f.last + wait;
            if now < ready {
                let secs = (ready - now).as_secs().max(1);
                return Err(ApiError::with_details(
                    ErrorCode::RateLimited,
                    format!(
                        "too many wrong admin tokens from {ip}; wait {secs} s before trying again"
                    ),
                    serde_json::json!({ "retry_after_secs": secs }),
                ));
            }
        }
        match presented {
            Some(p) if crate::secret_matches(p.trim(), &self.token) => {
                failures.remove(&ip);
                Ok(())
            }
            _ => {
                if failures.len() >= MAX_TRACKED
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
                entry.count += 1;
                entry.last = now;
                Err(ApiError::new(
                    ErrorCode::Unauthorized,
                    "missing or wrong admin token; send `Authorization: Bearer TOKEN` with the token from DATA/admin.token",
                ))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn wrong_tokens_are_slowed_down_and_a_right_one_clears() {
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
        // Even the right token must wait now.
        assert_eq!(
            auth.check(ip, Some("secret"), t).unwrap_err().code,
            ErrorCode::RateLimited
        );
        // Another address is not affected.
        assert!(auth.check([127, 0, 0, 2].into(), Some("secret"), t).is_ok());
        let later = t + Duration::from_secs(2);
        assert!(auth.check(ip, Some("secret"), later).is_ok());
        assert_eq!(
            auth.check(ip, None, later).unwrap_err().code,
            ErrorCode::Unauthorized
        );
    }
}
