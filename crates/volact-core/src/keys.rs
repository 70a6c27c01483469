//! Ed25519 key pairs (ed25519-dalek) and their PASERK text forms, and host ids.

use ed25519_dalek::SigningKey;
use pasetors::keys::{AsymmetricPublicKey, AsymmetricSecretKey};
use pasetors::paserk::FormatAsPaserk;
use pasetors::version4::V4;
use sha2::{Digest, Sha256};
use std::fmt;
use volact_proto::{ApiError, ErrorCode};

/// An Ed25519 key pair: the vendor root, or a host identity.
#[derive(Clone)]
pub struct KeyPair {
    signing: SigningKey,
    secret: AsymmetricSecretKey<V4>,
    public: PublicKey,
    /// The signing key expanded once, for the host's signatures (see `ed25519`).
    expanded: crate::ed25519::Expanded,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret half.
        f.debug_struct("KeyPair")
            .field("public", &self.public.to_paserk())
            .finish()
    }
}

/// An Ed25519 public key.
#[derive(Clone)]
pub struct PublicKey {
    bytes: [u8; 32],
    key: AsymmetricPublicKey<V4>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_paserk())
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for PublicKey {}

fn key_error(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::BadRequest,
        format!("{what} is not a valid Ed25519 key in PASERK form"),
    )
}

impl KeyPair {
    /// The key pair whose secret seed is `seed` (32 random bytes from the caller).
    pub fn from_seed(seed: [u8; 32]) -> Result<KeyPair, ApiError> {
        let signing = SigningKey::from_bytes(&seed);
        let secret = AsymmetricSecretKey::<V4>::from(&signing.to_keypair_bytes())
            .map_err(|_| key_error("the secret key"))?;
        let public_bytes = signing.verifying_key().to_bytes();
        let public = PublicKey::from_bytes(public_bytes)?;
        Ok(KeyPair {
            expanded: crate::ed25519::Expanded::new(&seed, public_bytes),
            signing,
            secret,
            public,
        })
    }

    /// Reads a `k4.secret.…` PASERK.
    pub fn from_paserk(text: &str) -> Result<KeyPair, ApiError> {
        let secret = AsymmetricSecretKey::<V4>::try_from(text.trim())
            .map_err(|_| key_error("the secret key"))?;
        let bytes = secret.as_bytes();
        let seed: [u8; 32] = bytes
            .get(..32)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| key_error("the secret key"))?;
        let pair = KeyPair::from_seed(seed)?;
        // A PASERK whose public half does not match its seed is corrupt.
        if pair.secret.as_bytes() != bytes {
            return Err(key_error("the secret key"));
        }
        Ok(pair)
    }

    /// The `k4.secret.…` PASERK text of the secret key. Store it with mode 0600.
    pub fn to_paserk(&self) -> String {
        let mut out = String::new();
        // Formatting into a String cannot fail.
        let _ = self.secret.fmt(&mut out);
        out
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    #[cfg(test)]
    pub(crate) fn pasetors_secret(&self) -> &AsymmetricSecretKey<V4> {
        &self.secret
    }

    pub(crate) fn expanded(&self) -> &crate::ed25519::Expanded {
        &self.expanded
    }

    /// The dalek signing key, for callers that sign raw messages.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }
}

impl PublicKey {
    /// A public key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<PublicKey, ApiError> {
        let key =
            AsymmetricPublicKey::<V4>::from(&bytes).map_err(|_| key_error("the public key"))?;
        Ok(PublicKey { bytes, key })
    }

    /// Reads a `k4.public.…` PASERK.
    pub fn from_paserk(text: &str) -> Result<PublicKey, ApiError> {
        let key = AsymmetricPublicKey::<V4>::try_from(text.trim())
            .map_err(|_| key_error("the public key"))?;
        let bytes: [u8; 32] = key
            .as_bytes()
            .try_into()
            .map_err(|_| key_error("the public key"))?;
        Ok(PublicKey { bytes, key })
    }

    /// The `k4.public.…` PASERK text.
    pub fn to_paserk(&self) -> String {
        let mut out = String::new();
        let _ = self.key.fmt(&mut out);
        out
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    pub(crate) fn pasetors(&self) -> &AsymmetricPublicKey<V4> {
        &self.key
    }

    /// The host id derived from this key: `h-` and the first 16 hex digits of its SHA-256.
    /// Deriving it means a host cannot claim another host's id without its key.
    pub fn host_id(&self) -> String {
        let digest = Sha256::digest(self.bytes);
        let mut id = String::from("h-");
        for b in digest.iter().take(8) {
            id.push_str(&format!("{b:02x}"));
        }
        id
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paserk_round_trips() {
        let pair = KeyPair::from_seed([7; 32]).unwrap();
        let again = KeyPair::from_paserk(&pair.to_paserk()).unwrap();
        assert_eq!(again.public(), pair.public());
        assert!(pair.to_paserk().starts_with("k4.secret."));
        let public = PublicKey::from_paserk(&pair.public().to_paserk()).unwrap();
        assert_eq!(&public, pair.public());
        assert!(public.host_id().starts_with("h-"));
        assert_eq!(public.host_id().len(), 18);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(KeyPair::from_paserk("k4.secret.nonsense").is_err());
        assert!(PublicKey::from_paserk("hello").is_err());
    }
}
