//! Activation tickets and signed "not yet" answers. The client's check of an answer along
//! the whole chain (vendor root → host certificate → ticket) is in [`crate::verify`].

use crate::keys::KeyPair;
use crate::token::{self, Document};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use volact_proto::{ApiError, ErrorCode, HostIntervals};

/// An activation ticket's claims: the host activates one client for one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// Ticket id.
    pub jti: String,
    /// The client id.
    pub sub: String,
    /// The product.
    pub product: String,
    /// The product's application.
    pub application: String,
    /// The count the host saw.
    pub count: u32,
    /// The minimum the product needs.
    pub minimum: u32,
    /// Issued at.
    pub iat: Timestamp,
    /// Renew after this time.
    pub renew_after: Timestamp,
    /// Valid until this time.
    pub exp: Timestamp,
    /// The host id.
    pub iss: String,
    /// The request's nonce.
    pub nonce: String,
    /// The host's intervals, signed so no relay can change what the client does; absent
    /// from tickets of hosts older than this field (the client then keeps its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<HostIntervals>,
}

impl Document for Ticket {
    const TYPE: &'static str = "volact.ticket";
}

/// A signed "not yet": the count is short and the client should retry later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotYet {
    /// The client id.
    pub sub: String,
    /// The product.
    pub product: String,
    /// The product's application.
    pub application: String,
    /// The count the host saw.
    pub count: u32,
    /// The minimum the product needs.
    pub minimum: u32,
    /// Answered at.
    pub iat: Timestamp,
    /// Retry at this time.
    pub retry_after: Timestamp,
    /// The host id.
    pub iss: String,
    /// The request's nonce.
    pub nonce: String,
    /// The host's intervals, signed (see [`Ticket::intervals`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<HostIntervals>,
}

impl Document for NotYet {
    const TYPE: &'static str = "volact.not-yet";
}

/// A deterministic ticket id: the same inputs give the same id, so simulations are
/// reproducible, and no two requests (distinct nonces) share one.
pub fn ticket_id(client_id: &str, nonce: &str, iat: Timestamp) -> String {
    let mut h = Sha256::new();
    h.update(client_id.as_bytes());
    h.update([0]);
    h.update(nonce.as_bytes());
    h.update([0]);
    h.update(iat.as_second().to_be_bytes());
    let digest = h.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(2 + 24);
    id.push_str("t-");
    // Every answer's ticket gets an id: written without a String per byte.
    for b in digest.iter().take(12) {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    id
}

/// Signs a ticket with the host's key.
pub fn sign_ticket(host: &KeyPair, ticket: &Ticket) -> Result<String, ApiError> {
    token::sign(host, ticket).map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("could not sign the ticket: {e}"),
        )
    })
}

/// Signs a "not yet" with the host's key.
pub fn sign_not_yet(host: &KeyPair, not_yet: &NotYet) -> Result<String, ApiError> {
    token::sign(host, not_yet).map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("could not sign the answer: {e}"),
        )
    })
}

pub use crate::verify::{Expected, TrustedHost, VerifiedAnswer, verify_answer, verify_stored};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_id_is_t_and_the_first_12_bytes_of_the_digest_in_lowercase_hex() {
        let iat = Timestamp::from_second(1_767_225_600).unwrap_or(Timestamp::UNIX_EPOCH);
        let mut h = Sha256::new();
        h.update(b"c\0n\0");
        h.update(iat.as_second().to_be_bytes());
        let hex: String = h.finalize()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(ticket_id("c", "n", iat), format!("t-{hex}"));
    }
}
