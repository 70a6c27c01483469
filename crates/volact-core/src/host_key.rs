//! Host keys: the vendor's signed entitlement for one customer to run hosts.

use crate::token::Document;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Default number of distinct hosts one host key may activate.
pub const DEFAULT_MAX_HOSTS: u32 = 6;
/// Default number of activations one host may make with one host key.
pub const DEFAULT_MAX_ACTIVATIONS: u32 = 10;

/// A host key's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostKey {
    /// Key id.
    pub jti: String,
    /// The vendor that issued it.
    pub vendor: String,
    /// The customer it was issued to.
    pub customer: String,
    /// The key group whose products hosts with this key activate.
    pub group: String,
    /// Optional cap on distinct clients per host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<u32>,
    /// When the key stops activating hosts and host certificates from it end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<Timestamp>,
    /// Distinct hosts it may activate.
    pub max_hosts: u32,
    /// Activations per host.
    pub max_activations: u32,
    /// When it was issued.
    pub iat: Timestamp,
    /// Whether hosts activated with it send the vendor a daily usage report (counts
    /// only). Signed into the key, so the customer sees what they agreed to.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub usage_reports: bool,
    /// The root's delegation of the key that signed this host key, when the vendor
    /// service issued it with a key delegated for host keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation: Option<String>,
}

/// Verifies a host key: signed by the vendor `root`, or by a key the root delegated for
/// host keys while that delegation was in force.
pub fn verify_host_key(root: &crate::keys::PublicKey, token: &str) -> Result<HostKey, String> {
    let claimed: HostKey = crate::token::peek(token).map_err(|e| e.to_string())?;
    let signer = crate::delegation::signing_key(
        root,
        claimed.delegation.as_deref(),
        crate::delegation::Scope::HostKeys,
        claimed.iat,
        "the host key",
    )
    .map_err(|e| e.message)?;
    crate::token::verify(&signer, token).map_err(|e| e.to_string())
}

impl Document for HostKey {
    const TYPE: &'static str = "volact.host-key";
}

/// A product a seat cap keeps from ever activating: its minimum count is more than the
/// distinct clients the host may count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreachableProduct {
    /// Product id.
    pub product: String,
    /// Its display name.
    pub product_name: String,
    /// Its minimum count.
    pub minimum: u32,
    /// The seat cap that is below it.
    pub seats: u32,
}

/// The products among `products` (ids in `catalog`) that a host with `seats` can never
/// activate, because the count can never reach their minimum. Unknown ids are skipped:
/// the caller has already checked them against the catalog, or reports them elsewhere.
pub fn unreachable_products<'a>(
    catalog: &crate::catalog::Catalog,
    products: impl IntoIterator<Item = &'a String>,
    seats: Option<u32>,
) -> Vec<UnreachableProduct> {
    let Some(seats) = seats else {
        return Vec::new();
    };
    products
        .into_iter()
        .filter_map(|id| catalog.product(id))
        .filter(|p| p.minimum_count > seats)
        .map(|p| UnreachableProduct {
            product: p.id.clone(),
            product_name: p.name.clone(),
            minimum: p.minimum_count,
            seats,
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod seat_tests {
    use super::*;
    use crate::catalog::{Catalog, demo_source};

    fn demo() -> Catalog {
        let mut n = 0u8;
        Catalog::build(&demo_source(), 1, Timestamp::UNIX_EPOCH, || {
            n = n.wrapping_add(1);
            [n; 24]
        })
        .unwrap()
    }

    #[test]
    fn a_seat_cap_below_a_minimum_makes_that_product_unreachable() {
        let c = demo();
        let all: Vec<String> = c.products.iter().map(|p| p.id.clone()).collect();
        let min = c.products.iter().map(|p| p.minimum_count).min().unwrap();
        let max = c.products.iter().map(|p| p.minimum_count).max().unwrap();
        assert_eq!(
            unreachable_products(&c, &all, Some(min - 1)).len(),
            all.len()
        );
        assert!(unreachable_products(&c, &all, Some(max)).is_empty());
        assert!(unreachable_products(&c, &all, None).is_empty());
        let some = unreachable_products(&c, &all, Some(min));
        assert!(!some.is_empty() && some.iter().all(|u| u.minimum > min));
    }
}
