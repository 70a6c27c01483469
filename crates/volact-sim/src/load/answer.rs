//! What an answer says: its result code for the tally, and, on a sample, whether it
//! really answers the request that was sent (signatures, client id and nonce).
//!
//! Classifying runs on every answer, so it recognises the host's usual answers from their
//! first bytes; verifying parses the whole answer and checks its signatures, which is why
//! only a sample goes through it.

use super::Plan;
use super::body::{client_id, nonce};
use serde::Deserialize;
use std::borrow::Cow;
use volact_core::ticket::{Expected, Ticket, verify_answer};
use volact_proto::{ActivationResponse, ActivationResult, ErrorCode};

#[derive(Deserialize)]
struct ResultOnly {
    result: ActivationResult,
}

#[derive(Deserialize)]
struct CodeOnly {
    code: ErrorCode,
}

/// The result code of an answer.
pub(super) fn classify(status: u16, bytes: &[u8]) -> Cow<'static, str> {
    if status != 200 {
        return match serde_json::from_slice::<CodeOnly>(bytes) {
            Ok(c) => Cow::Borrowed(c.code.as_str()),
            Err(_) => Cow::Owned(format!("http-{status}")),
        };
    }
    // The host writes `result` first; recognising that from the first bytes spares
    // scanning the whole answer (tickets and certificates) on every request. Anything
    // else goes through serde.
    if bytes.starts_with(br#"{"result":"activated""#) {
        return Cow::Borrowed("activated");
    }
    if bytes.starts_with(br#"{"result":"count-insufficient""#) {
        return Cow::Borrowed(ErrorCode::CountInsufficient.as_str());
    }
    match serde_json::from_slice::<ResultOnly>(bytes) {
        Ok(ResultOnly {
            result: ActivationResult::Activated,
        }) => Cow::Borrowed("activated"),
        Ok(ResultOnly {
            result: ActivationResult::CountInsufficient,
        }) => Cow::Borrowed(ErrorCode::CountInsufficient.as_str()),
        Err(_) => Cow::Borrowed("unreadable-answer"),
    }
}

/// Verifies a sampled answer to client `i`'s request number `seq` on connection `task`.
pub(super) fn verify(plan: &Plan, bytes: &[u8], i: u64, task: u32, seq: u64) -> bool {
    let Ok(answer) = serde_json::from_slice::<ActivationResponse>(bytes) else {
        return false;
    };
    let client_id = client_id(plan.template.seed, i);
    let nonce = nonce(task, seq);
    if let Some(root) = &plan.root {
        let expected = Expected {
            client_id: &client_id,
            product: &answer.product,
            nonce: &nonce,
            minimum: plan.template.minimum_count,
            now: jiff::Timestamp::now(),
            max_skew: volact_core::settings::Settings::default().max_clock_skew,
            catalog: None,
        };
        return verify_answer(root, &answer, expected).is_ok();
    }
    let Some(key) = &plan.host_key else {
        return false;
    };
    match (&answer.result, &answer.ticket) {
        (ActivationResult::Activated, Some(token)) => {
            volact_core::token::verify::<Ticket>(key, token)
                .is_ok_and(|t| t.sub == client_id && t.nonce == nonce)
        }
        (ActivationResult::CountInsufficient, _) => answer.not_yet.as_deref().is_some_and(|t| {
            volact_core::token::verify::<volact_core::ticket::NotYet>(key, t)
                .is_ok_and(|n| n.sub == client_id && n.nonce == nonce)
        }),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn result_codes() {
        assert_eq!(
            classify(200, br#"{"result":"activated","count":3}"#),
            "activated"
        );
        assert_eq!(
            classify(200, br#"{"result":"count-insufficient","count":1}"#),
            "count-insufficient"
        );
        assert_eq!(
            classify(200, br#"{"count":3, "result" : "activated"}"#),
            "activated"
        );
        assert_eq!(classify(200, b"nonsense"), "unreadable-answer");
        assert_eq!(classify(200, br#"{"result":"other"}"#), "unreadable-answer");
        assert_eq!(
            classify(429, br#"{"code":"rate-limited","message":"slow down"}"#),
            "rate-limited"
        );
        assert_eq!(classify(502, b"<html>"), "http-502");
    }
}
