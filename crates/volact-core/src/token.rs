//! PASETO v4.public tokens carrying JSON claims.
//!
//! Every volact document carries a `typ` claim naming what it is, so a token of one kind
//! (a host key, say) can never be passed off as another (a ticket) even though the same
//! vendor key signs several kinds. No footer and no implicit assertion are used, so any
//! PASETO v4 library verifies the tokens with the public key alone.

use crate::keys::{KeyPair, PublicKey};
use pasetors::Public;
use pasetors::token::UntrustedToken;
use pasetors::version4::{PublicToken, V4};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not a PASETO v4.public token at all.
    Malformed,
    /// The signature does not verify with the given key.
    BadSignature,
    /// It verifies but is another kind of document.
    WrongType {
        /// The kind expected.
        expected: String,
        /// The kind found.
        found: String,
    },
    /// It verifies but its claims do not parse.
    BadClaims(String),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Malformed => f.write_str("not a PASETO v4.public token"),
            TokenError::BadSignature => f.write_str("the signature does not verify"),
            TokenError::WrongType { expected, found } => {
                write!(
                    f,
                    "it is a `{found}` document where a `{expected}` was expected"
                )
            }
            TokenError::BadClaims(why) => write!(f, "its contents do not parse: {why}"),
        }
    }
}

/// A kind of signed document.
pub trait Document: Serialize + DeserializeOwned {
    /// The `typ` claim of this kind, e.g. `volact.ticket`.
    const TYPE: &'static str;
}

#[derive(Serialize)]
struct Envelope<'a, T> {
    typ: &'static str,
    #[serde(flatten)]
    claims: &'a T,
}

#[derive(Deserialize)]
struct TypeOnly {
    typ: String,
}

/// Signs a document.
pub fn sign<T: Document>(key: &KeyPair, claims: &T) -> Result<String, TokenError> {
    let unsigned = prepare(claims)?;
    sign_all(key, std::slice::from_ref(&unsigned))
        .pop()
        .ok_or_else(|| TokenError::BadClaims("nothing was signed".to_owned()))
}

/// A document encoded and ready for its signature: the token's payload and the message
/// its signature covers. Made with [`prepare`], signed with [`sign_all`].
#[derive(Debug, Clone)]
pub struct Unsigned {
    payload: Vec<u8>,
    message: Vec<u8>,
}

/// Encodes a document for signing, so the encoding can be done where it is convenient
/// (each request's own task) and the signatures made together (see [`sign_all`]).
pub fn prepare<T: Document>(claims: &T) -> Result<Unsigned, TokenError> {
    let payload = serde_json::to_vec(&Envelope {
        typ: T::TYPE,
        claims,
    })
    .map_err(|e| TokenError::BadClaims(e.to_string()))?;
    let message = pae(&[HEADER.as_bytes(), &payload, b"", b""]);
    Ok(Unsigned { payload, message })
}

/// Signs documents, in order, as v4.public tokens without footer or implicit assertion,
/// exactly as the PASETO specification (and pasetors, see the tests) does. Signing
/// several at once costs less per token than one at a time (see `ed25519`); the
/// signatures are the same.
pub fn sign_all(key: &KeyPair, documents: &[Unsigned]) -> Vec<String> {
    use base64::Engine as _;
    let messages: Vec<&[u8]> = documents.iter().map(|d| d.message.as_slice()).collect();
    let signatures = key.expanded().sign_all(&messages);
    documents
        .iter()
        .zip(signatures)
        .map(|(d, signature)| {
            let mut body = Vec::with_capacity(d.payload.len() + signature.len());
            body.extend_from_slice(&d.payload);
            body.extend_from_slice(&signature);
            let mut out = String::with_capacity(HEADER.len() + body.len().div_ceil(3) * 4);
            out.push_str(HEADER);
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(&body, &mut out);
            out
        })
        .collect()
}

/// The header of every token.
const HEADER: &str = "v4.public.";

/// PASETO's pre-authentication encoding: the number of pieces, then each piece's length
/// and bytes, lengths as 64-bit little-endian with the top bit clear.
fn pae(pieces: &[&[u8]]) -> Vec<u8> {
    let le64 = |n: usize| ((n as u64) & 0x7FFF_FFFF_FFFF_FFFF).to_le_bytes();
    let len = 8 + pieces.iter().map(|p| 8 + p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&le64(pieces.len()));
    for p in pieces {
        out.extend_from_slice(&le64(p.len()));
        out.extend_from_slice(p);
    }
    out
}

/// Verifies a token's signature and kind, and parses its claims.
pub fn verify<T: Document>(key: &PublicKey, token: &str) -> Result<T, TokenError> {
    let payload = verified_payload(key, token)?;
    let kind: TypeOnly =
        serde_json::from_slice(&payload).map_err(|e| TokenError::BadClaims(e.to_string()))?;
    if kind.typ != T::TYPE {
        return Err(TokenError::WrongType {
            expected: T::TYPE.to_string(),
            found: kind.typ,
        });
    }
    serde_json::from_slice(&payload).map_err(|e| TokenError::BadClaims(e.to_string()))
}

/// Reads a token's claims WITHOUT verifying it, for showing what a document says before
/// the key that signed it is known. Never trust the result.
pub fn peek<T: Document>(token: &str) -> Result<T, TokenError> {
    // An unverified read needs no constant-time decoding, which made pasetors' parser
    // most of what a fleet of simulated clients cost: the base64 crate reads the usual
    // token, and whatever it does not (a footer, bad base64, bad claims) goes through
    // pasetors, so the errors are its own.
    if let Some(claims) = peek_fast(token.trim()) {
        return Ok(claims);
    }
    let untrusted =
        UntrustedToken::<Public, V4>::try_from(token.trim()).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(untrusted.untrusted_payload())
        .map_err(|e| TokenError::BadClaims(e.to_string()))
}

/// A v4.public token without footer, its payload read as `T`, or `None`.
fn peek_fast<T: Document>(token: &str) -> Option<T> {
    use base64::Engine as _;
    const SIGNATURE: usize = 64;
    let body = token.strip_prefix(HEADER)?;
    if body.contains('.') {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .ok()?;
    let payload = bytes.get(..bytes.len().checked_sub(SIGNATURE)?)?;
    serde_json::from_slice(payload).ok()
}

fn verified_payload(key: &PublicKey, token: &str) -> Result<Vec<u8>, TokenError> {
    if let Some(verified) = verified_payload_fast(key, token.trim()) {
        return verified;
    }
    let untrusted =
        UntrustedToken::<Public, V4>::try_from(token.trim()).map_err(|_| TokenError::Malformed)?;
    let trusted = PublicToken::verify(key.pasetors(), &untrusted, None, None)
        .map_err(|_| TokenError::BadSignature)?;
    Ok(trusted.payload().as_bytes().to_vec())
}

/// A v4.public token without footer, verified with ed25519-dalek: the same check as
/// pasetors' (PAE of header, payload, empty footer and implicit assertion; Ed25519 over
/// it), about three times faster, which is what lets a client check its licence on every
/// start of its product. `None` for what it does not read (a footer, bad base64, a token
/// too short): pasetors decides those, so the errors stay its own.
fn verified_payload_fast(key: &PublicKey, token: &str) -> Option<Result<Vec<u8>, TokenError>> {
    use base64::Engine as _;
    const SIGNATURE: usize = 64;
    let body = token.strip_prefix(HEADER)?;
    if body.contains('.') {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .ok()?;
    let (payload, signature) = bytes.split_at(bytes.len().checked_sub(SIGNATURE)?);
    let signature = ed25519_dalek::Signature::from_slice(signature).ok()?;
    let Ok(verifying) = ed25519_dalek::VerifyingKey::from_bytes(key.as_bytes()) else {
        return Some(Err(TokenError::BadSignature));
    };
    let message = pae(&[HEADER.as_bytes(), payload, b"", b""]);
    Some(match verifying.verify_strict(&message, &signature) {
        Ok(()) => Ok(payload.to_vec()),
        Err(_) => Err(TokenError::BadSignature),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct A {
        x: u32,
    }
    impl Document for A {
        const TYPE: &'static str = "test.a";
    }
    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct B {
        x: u32,
    }
    impl Document for B {
        const TYPE: &'static str = "test.b";
    }

    #[test]
    fn the_fast_verification_agrees_with_pasetors() {
        let k = KeyPair::from_seed([5; 32]).unwrap();
        let other = KeyPair::from_seed([6; 32]).unwrap();
        let token = sign(&k, &A { x: 7 }).unwrap();
        let by_pasetors = |key: &KeyPair, t: &str| {
            let untrusted = UntrustedToken::<Public, V4>::try_from(t).ok()?;
            PublicToken::verify(key.public().pasetors(), &untrusted, None, None)
                .ok()
                .map(|v| v.payload().as_bytes().to_vec())
        };
        let fast = verified_payload_fast(k.public(), &token).unwrap().unwrap();
        assert_eq!(Some(fast), by_pasetors(&k, &token));
        assert!(matches!(
            verified_payload_fast(other.public(), &token),
            Some(Err(TokenError::BadSignature))
        ));
        assert_eq!(by_pasetors(&other, &token), None);
        // Every one-character change of the body is refused by both.
        let body = HEADER.len();
        for i in (body..token.len()).step_by(7) {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).unwrap();
            assert!(
                verify::<A>(k.public(), &changed).is_err(),
                "accepted at {i}"
            );
            assert_eq!(by_pasetors(&k, &changed), None);
        }
        // A footer is pasetors' to read.
        assert!(verified_payload_fast(k.public(), &format!("{token}.Zm9v")).is_none());
    }

    #[test]
    fn tokens_are_exactly_those_of_pasetors_alone_or_signed_together() {
        let k = KeyPair::from_seed([3; 32]).unwrap();
        let payload = br#"{"typ":"test.a","x":5}"#;
        let ours = sign(&k, &A { x: 5 }).unwrap();
        // Ed25519 signatures are deterministic, so both must produce the same bytes.
        let theirs = PublicToken::sign(k.pasetors_secret(), payload, None, None).unwrap();
        assert_eq!(ours, theirs);
        let untrusted = UntrustedToken::<Public, V4>::try_from(ours.as_str()).unwrap();
        let trusted = PublicToken::verify(k.public().pasetors(), &untrusted, None, None).unwrap();
        assert_eq!(trusted.payload().as_bytes(), payload);
        let documents: Vec<Unsigned> = (0..9).map(|x| prepare(&A { x }).unwrap()).collect();
        let together = sign_all(&k, &documents);
        assert_eq!(together.len(), 9);
        for (x, token) in together.iter().enumerate() {
            let payload = format!(r#"{{"typ":"test.a","x":{x}}}"#);
            let theirs =
                PublicToken::sign(k.pasetors_secret(), payload.as_bytes(), None, None).unwrap();
            assert_eq!(token, &theirs);
        }
        assert!(sign_all(&k, &[]).is_empty());
        assert_eq!(
            pae(&[b"", b"abc"]),
            [
                &2u64.to_le_bytes()[..],
                &0u64.to_le_bytes(),
                &3u64.to_le_bytes(),
                b"abc"
            ]
            .concat()
        );
    }

    #[test]
    fn sign_verify_and_type_confusion() {
        let k = KeyPair::from_seed([1; 32]).unwrap();
        let other = KeyPair::from_seed([2; 32]).unwrap();
        let t = sign(&k, &A { x: 5 }).unwrap();
        assert!(t.starts_with("v4.public."));
        assert_eq!(verify::<A>(k.public(), &t).unwrap(), A { x: 5 });
        assert!(matches!(
            verify::<B>(k.public(), &t),
            Err(TokenError::WrongType { .. })
        ));
        assert_eq!(
            verify::<A>(other.public(), &t),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify::<A>(k.public(), "v4.public.garbage"),
            Err(TokenError::Malformed)
        );
        assert_eq!(peek::<A>(&t).unwrap(), A { x: 5 });
        // What the fast path does not take goes to pasetors' parser, with its errors.
        assert_eq!(peek::<A>(&format!(" {t}\n")).unwrap(), A { x: 5 });
        assert_eq!(peek::<A>("v4.public.garbage"), Err(TokenError::Malformed));
        assert_eq!(peek::<A>("v4.public.a.b.c"), Err(TokenError::Malformed));
        // One flipped character anywhere in the body breaks the signature.
        let mut bad = t.clone().into_bytes();
        let i = bad.len() / 2;
        bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).unwrap();
        assert!(verify::<A>(k.public(), &bad).is_err());
    }
}
