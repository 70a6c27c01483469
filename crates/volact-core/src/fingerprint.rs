//! Certificate fingerprints: the SHA-256 of a certificate's DER, written as `openssl x509
//! -fingerprint -sha256` writes it (upper-case hex pairs joined by colons). Input is taken
//! with or without colons, in either case, so a fingerprint pasted from openssl, from
//! `volact host init` or typed without separators all match.

use sha2::{Digest, Sha256};
use volact_proto::{ApiError, ErrorCode};

/// The SHA-256 of `der`.
pub fn sha256(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// `digest` as `AB:CD:…`.
pub fn format(digest: &[u8; 32]) -> String {
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The fingerprint of the certificate `der`, as `AB:CD:…`.
pub fn of_certificate(der: &[u8]) -> String {
    format(&sha256(der))
}

/// Parses a SHA-256 fingerprint: 64 hex digits, optionally in colon-separated pairs, and
/// optionally prefixed `sha256:` or `SHA256 Fingerprint=` as openssl prints it.
pub fn parse(text: &str) -> Result<[u8; 32], ApiError> {
    let bad = |why: &str| {
        ApiError::with_details(
            ErrorCode::BadRequest,
            format!(
                "`{}` is not a SHA-256 fingerprint ({why}); give the 64 hex digits `volact host init` or `volact host status` printed, with or without colons",
                crate::util::printable(text.get(..120).unwrap_or(text))
            ),
            serde_json::json!({ "field": "tls_fingerprint" }),
        )
    };
    let mut t = text.trim();
    for prefix in ["sha256 fingerprint=", "sha256:", "sha256="] {
        if t.len() >= prefix.len()
            && t.is_char_boundary(prefix.len())
            && t[..prefix.len()].eq_ignore_ascii_case(prefix)
        {
            t = t[prefix.len()..].trim();
        }
    }
    let hex: String = t.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 {
        return Err(bad(&format!("{} hex digits, not 64", hex.len())));
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        let pair = hex.get(2 * i..2 * i + 2).ok_or_else(|| bad("not hex"))?;
        *slot = u8::from_str_radix(pair, 16).map_err(|_| bad("not hex"))?;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_openssl_and_parses_every_spelling() {
        let d = sha256(b"certificate");
        let text = format(&d);
        assert_eq!(text.len(), 95);
        assert_eq!(parse(&text).unwrap(), d);
        assert_eq!(parse(&text.replace(':', "").to_lowercase()).unwrap(), d);
        assert_eq!(parse(&format!("SHA256 Fingerprint={text}")).unwrap(), d);
        assert!(parse(&text[3..]).is_err());
        assert!(parse(&"zz".repeat(32)).is_err());
        assert!(parse("é".repeat(64).as_str()).is_err());
    }
}
