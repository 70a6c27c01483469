//! `GET /healthz`: whether the host can serve activations now — activated, certificate
//! in force, storage taking writes. Storage is judged by the last write that happened
//! (an activation batch, or the maintenance task's periodic probe), so a health check
//! never writes by itself and costs nothing.

use crate::engine::Engine;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use volact_proto::{ApiError, ErrorCode};

/// The outcome of the latest write to storage.
#[derive(Debug, Default)]
pub struct StorageHealth {
    failing: AtomicBool,
    error: Mutex<Option<String>>,
}

impl StorageHealth {
    /// Records a write's outcome. A success while healthy is a single atomic load, so
    /// every activation batch can report.
    pub fn record(&self, result: Result<(), &str>) {
        match result {
            Ok(()) => {
                if self.failing.load(Ordering::Relaxed) {
                    self.failing.store(false, Ordering::Relaxed);
                    *self.error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
            }
            Err(e) => {
                *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                self.failing.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Why the latest write failed, if it did.
    pub fn problem(&self) -> Option<String> {
        if !self.failing.load(Ordering::Relaxed) {
            return None;
        }
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Why the host cannot serve activations now, if it cannot.
pub fn readiness(engine: &Engine) -> Result<(), ApiError> {
    if let Some(e) = engine.not_ready(engine.now()) {
        return Err(e);
    }
    if let Some(problem) = engine.storage_health().problem() {
        return Err(ApiError::new(
            ErrorCode::StorageFailure,
            format!(
                "the host's storage does not accept writes ({problem}); check the disk and the database file, then restart the host if it does not recover"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_shows_until_the_next_success() {
        let h = StorageHealth::default();
        assert_eq!(h.problem(), None);
        h.record(Err("disk I/O error"));
        assert_eq!(h.problem().as_deref(), Some("disk I/O error"));
        h.record(Ok(()));
        assert_eq!(h.problem(), None);
    }
}
