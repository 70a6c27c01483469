//! Ed25519 signing (RFC 8032, the same signatures as ed25519-dalek's) several messages at
//! a time.
//!
//! Every signature encodes a point R = r·B, and encoding a point takes a field inversion:
//! about a fifth of what one signature costs. Signing a batch shares one inversion among
//! all of its points (Montgomery's trick, curve25519-dalek's `compress_batch_alloc`), so a
//! host signing the tickets of a whole write batch pays for one inversion instead of one
//! per ticket. Everything secret (the key, each nonce r) goes only through constant-time
//! operations, as in ed25519-dalek.

use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::{Scalar, clamp_integer};
use sha2::{Digest, Sha512};
use zeroize::Zeroize;

/// A signing key expanded for signing: the secret scalar, the nonce prefix and the public
/// key, computed once instead of per signature.
#[derive(Clone)]
pub(crate) struct Expanded {
    scalar: Scalar,
    prefix: [u8; 32],
    public: [u8; 32],
}

impl Drop for Expanded {
    fn drop(&mut self) {
        self.scalar.zeroize();
        self.prefix.zeroize();
    }
}

fn wide(hash: Sha512) -> Scalar {
    let mut bytes: [u8; 64] = hash.finalize().into();
    let scalar = Scalar::from_bytes_mod_order_wide(&bytes);
    bytes.zeroize();
    scalar
}

impl Expanded {
    /// Expands the 32-byte secret seed whose public key is `public` (RFC 8032 §5.1.5).
    pub(crate) fn new(seed: &[u8; 32], public: [u8; 32]) -> Expanded {
        let mut h: [u8; 64] = Sha512::digest(seed).into();
        let mut low = [0u8; 32];
        low.copy_from_slice(&h[..32]);
        let mut prefix = [0u8; 32];
        prefix.copy_from_slice(&h[32..]);
        let scalar = Scalar::from_bytes_mod_order(clamp_integer(low));
        h.zeroize();
        low.zeroize();
        Expanded {
            scalar,
            prefix,
            public,
        }
    }

    /// The signatures of `messages`, in order (RFC 8032 §5.1.6).
    pub(crate) fn sign_all(&self, messages: &[&[u8]]) -> Vec<[u8; 64]> {
        let mut nonces: Vec<Scalar> = messages
            .iter()
            .map(|m| wide(Sha512::new().chain_update(self.prefix).chain_update(m)))
            .collect();
        let points: Vec<EdwardsPoint> = nonces.iter().map(EdwardsPoint::mul_base).collect();
        let encoded = EdwardsPoint::compress_batch_alloc(&points);
        let signatures = messages
            .iter()
            .zip(&encoded)
            .zip(&nonces)
            .map(|((m, r_point), r)| {
                let k = wide(
                    Sha512::new()
                        .chain_update(r_point.as_bytes())
                        .chain_update(self.public)
                        .chain_update(m),
                );
                let s = k * self.scalar + r;
                let mut signature = [0u8; 64];
                signature[..32].copy_from_slice(r_point.as_bytes());
                signature[32..].copy_from_slice(s.as_bytes());
                signature
            })
            .collect();
        nonces.zeroize();
        signatures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey, Verifier as _};
    use proptest::prelude::*;

    fn pair(seed: [u8; 32]) -> (SigningKey, Expanded) {
        let dalek = SigningKey::from_bytes(&seed);
        let expanded = Expanded::new(&seed, dalek.verifying_key().to_bytes());
        (dalek, expanded)
    }

    #[test]
    fn rfc_8032_test_vector_2() {
        // RFC 8032 §7.1, TEST 2: a one-byte message.
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .filter_map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
                .collect()
        };
        let seed: [u8; 32] =
            hex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
                .try_into()
                .unwrap_or([0; 32]);
        let (_, key) = pair(seed);
        let signature = key.sign_all(&[&[0x72]]);
        assert_eq!(
            signature[0].to_vec(),
            hex(
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
                 085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
            )
        );
    }

    #[test]
    fn an_empty_batch_signs_nothing() {
        assert!(pair([7; 32]).1.sign_all(&[]).is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn a_batch_signs_exactly_as_ed25519_dalek_one_at_a_time(
            seed in any::<[u8; 32]>(),
            messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20),
        ) {
            let (dalek, key) = pair(seed);
            let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
            let batch = key.sign_all(&refs);
            prop_assert_eq!(batch.len(), messages.len());
            for (m, signature) in messages.iter().zip(&batch) {
                prop_assert_eq!(signature, &dalek.sign(m).to_bytes());
                let parsed = ed25519_dalek::Signature::from_bytes(signature);
                prop_assert!(dalek.verifying_key().verify(m, &parsed).is_ok());
            }
        }
    }
}
