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
    let payload = serde_json::to_vec(&Envelope {
        typ: T::TYPE,
        claims,
    })
    .map_err(|e| TokenError::BadClaims(e.to_string()))?;
    PublicToken::sign(key.pasetors_secret(), &payload, None, None)
        .map_err(|_| TokenError::Malformed)
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
    let untrusted =
        UntrustedToken::<Public, V4>::try_from(token.trim()).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(untrusted.untrusted_payload())
        .map_err(|e| TokenError::BadClaims(e.to_string()))
}

fn verified_payload(key: &PublicKey, token: &str) -> Result<Vec<u8>, TokenError> {
    let untrusted =
        UntrustedToken::<Public, V4>::try_from(token.trim()).map_err(|_| TokenError::Malformed)?;
    let trusted = PublicToken::verify(key.pasetors(), &untrusted, None, None)
        .map_err(|_| TokenError::BadSignature)?;
    Ok(trusted.payload().as_bytes().to_vec())
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
        // One flipped character anywhere in the body breaks the signature.
        let mut bad = t.clone().into_bytes();
        let i = bad.len() / 2;
        bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).unwrap();
        assert!(verify::<A>(k.public(), &bad).is_err());
    }
}
