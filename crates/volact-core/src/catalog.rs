//! The vendor's catalog: applications (count groups), products with their setup keys, and
//! key groups (named sets of products a host key can be issued for).

use crate::setup_key::SetupKey;
use crate::token::Document;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use volact_proto::{ApiError, ErrorCode};

/// Smallest and largest minimum count a product may have.
pub const MINIMUM_COUNT_RANGE: (u32, u32) = (1, 1000);

/// Whether a product is installed on workstations or servers. It sets the default minimum
/// count (25 or 5); both kinds of one application share one count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProductKind {
    /// A desktop product; default minimum 25.
    Workstation,
    /// A server product; default minimum 5.
    Server,
}

impl ProductKind {
    /// The default minimum count of this kind.
    pub fn default_minimum(self) -> u32 {
        match self {
            ProductKind::Workstation => 25,
            ProductKind::Server => 5,
        }
    }
}

/// An application: the group whose distinct machines are counted together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    /// Stable id.
    pub id: String,
    /// Display name.
    pub name: String,
}

/// A product a setup key names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Stable id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The application it counts in.
    pub application: String,
    /// Workstation or server.
    pub kind: ProductKind,
    /// Distinct machines needed before the host activates it.
    pub minimum_count: u32,
    /// Days a newly installed client runs before it must be activated (may be 0).
    pub grace_days: u32,
    /// The public setup key that installs this product.
    pub setup_key: SetupKey,
    /// How many times one installation may `rearm` (take a new client id and restart its
    /// grace); [`DEFAULT_REARM_LIMIT`] when the catalog does not say. Signed with the
    /// rest of the catalog, so a client machine cannot raise it; absent from catalogs
    /// signed before the field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rearm_limit: Option<u32>,
}

impl Product {
    /// The rearms one installation of this product may make.
    pub fn rearm_limit(&self) -> u32 {
        self.rearm_limit.unwrap_or(DEFAULT_REARM_LIMIT)
    }
}

/// A named set of products a host key can be issued for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroup {
    /// Stable id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Product ids.
    pub products: Vec<String>,
}

/// A signed catalog's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// The vendor's name.
    pub vendor: String,
    /// Increases with every catalog the vendor signs.
    pub version: u64,
    /// When it was signed.
    pub iat: Timestamp,
    /// Applications.
    pub applications: Vec<Application>,
    /// Products.
    pub products: Vec<Product>,
    /// Key groups.
    pub key_groups: Vec<KeyGroup>,
    /// The vendor's activation service (`volact vendor serve`), where hosts activate,
    /// renew and fetch updates online. Signed with the rest, so no one but the vendor can
    /// point hosts elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_url: Option<String>,
    /// The root's delegation of the key that signed this catalog, when a key delegated
    /// for catalogs signed it rather than the root (see [`crate::delegation`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation: Option<String>,
}

impl Document for Catalog {
    const TYPE: &'static str = "volact.catalog";
}

/// What a vendor writes in `catalog.toml`: setup keys, kinds' minimums and grace days may
/// be left out and are then generated or defaulted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSource {
    /// The vendor's name.
    pub vendor: String,
    /// Applications.
    #[serde(default, rename = "application")]
    pub applications: Vec<Application>,
    /// Products.
    #[serde(default, rename = "product")]
    pub products: Vec<ProductSource>,
    /// Key groups.
    #[serde(default, rename = "key_group")]
    pub key_groups: Vec<KeyGroup>,
    /// The vendor's activation service URL (`https://…`; `http://` only on loopback).
    #[serde(default)]
    pub service_url: Option<String>,
}

/// A product as the vendor writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductSource {
    /// Stable id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Application id.
    pub application: String,
    /// Workstation or server.
    pub kind: ProductKind,
    /// Defaults to 25 for workstations and 5 for servers.
    #[serde(default)]
    pub minimum_count: Option<u32>,
    /// Defaults to 30.
    #[serde(default)]
    pub grace_days: Option<u32>,
    /// Generated when left out.
    #[serde(default)]
    pub setup_key: Option<String>,
    /// Rearms allowed per installation; defaults to 3.
    #[serde(default)]
    pub rearm_limit: Option<u32>,
}

/// Default initial grace of a new client, in days.
pub const DEFAULT_GRACE_DAYS: u32 = 30;

/// Default number of rearms one installation may make, as with KMS clients.
pub const DEFAULT_REARM_LIMIT: u32 = 3;

/// Most rearms a catalog may allow: beyond that a limit means nothing.
pub const MAX_REARM_LIMIT: u32 = 1000;

fn invalid(message: String) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, message)
}

impl Catalog {
    /// Checks a vendor's source and builds the catalog. `random_key` supplies 24 random
    /// bytes for each setup key to generate.
    pub fn build(
        source: &CatalogSource,
        version: u64,
        iat: Timestamp,
        mut random_key: impl FnMut() -> [u8; 24],
    ) -> Result<Catalog, ApiError> {
        if source.vendor.trim().is_empty() {
            return Err(invalid("the catalog needs a `vendor` name".into()));
        }
        let mut app_ids = BTreeSet::new();
        for app in &source.applications {
            check_id("application", &app.id)?;
            if !app_ids.insert(app.id.as_str()) {
                return Err(invalid(format!("application `{}` is listed twice", app.id)));
            }
        }
        let mut products = Vec::new();
        let mut product_ids = BTreeSet::new();
        let mut keys = BTreeSet::new();
        for p in &source.products {
            check_id("product", &p.id)?;
            if !product_ids.insert(p.id.as_str()) {
                return Err(invalid(format!("product `{}` is listed twice", p.id)));
            }
            if !app_ids.contains(p.application.as_str()) {
                return Err(invalid(format!(
                    "product `{}` names application `{}`, which the catalog does not list",
                    p.id, p.application
                )));
            }
            let minimum = p.minimum_count.unwrap_or(p.kind.default_minimum());
            let (lo, hi) = MINIMUM_COUNT_RANGE;
            if !(lo..=hi).contains(&minimum) {
                return Err(invalid(format!(
                    "product `{}` has minimum_count {minimum}; it must be from {lo} to {hi}",
                    p.id
                )));
            }
            let grace = p.grace_days.unwrap_or(DEFAULT_GRACE_DAYS);
            if grace > 3650 {
                return Err(invalid(format!(
                    "product `{}` has grace_days {grace}; at most 3650",
                    p.id
                )));
            }
            if let Some(limit) = p.rearm_limit
                && limit > MAX_REARM_LIMIT
            {
                return Err(invalid(format!(
                    "product `{}` has rearm_limit {limit}; at most {MAX_REARM_LIMIT}",
                    p.id
                )));
            }
            let setup_key = match &p.setup_key {
                Some(text) => SetupKey::parse(text)
                    .map_err(|e| invalid(format!("product `{}`: {}", p.id, e.message)))?,
                None => SetupKey::generate(random_key()),
            };
            if !keys.insert(setup_key.clone()) {
                return Err(invalid(format!(
                    "product `{}` reuses another product's setup key",
                    p.id
                )));
            }
            products.push(Product {
                id: p.id.clone(),
                name: p.name.clone(),
                application: p.application.clone(),
                kind: p.kind,
                minimum_count: minimum,
                grace_days: grace,
                setup_key,
                rearm_limit: p.rearm_limit,
            });
        }
        let mut group_ids = BTreeSet::new();
        for g in &source.key_groups {
            check_id("key group", &g.id)?;
            if !group_ids.insert(g.id.as_str()) {
                return Err(invalid(format!("key group `{}` is listed twice", g.id)));
            }
            for p in &g.products {
                if !product_ids.contains(p.as_str()) {
                    return Err(invalid(format!(
                        "key group `{}` names product `{p}`, which the catalog does not list",
                        g.id
                    )));
                }
            }
        }
        if let Some(url) = &source.service_url {
            check_service_url(url).map_err(invalid)?;
        }
        Ok(Catalog {
            vendor: source.vendor.clone(),
            version,
            iat,
            applications: source.applications.clone(),
            products,
            key_groups: source.key_groups.clone(),
            service_url: source.service_url.clone(),
            delegation: None,
        })
    }

    /// The product a setup key installs, or `unknown-setup-key`.
    pub fn product_for_key(&self, key: &SetupKey) -> Result<&Product, ApiError> {
        self.products.iter().find(|p| &p.setup_key == key).ok_or_else(|| {
            ApiError::with_details(
                ErrorCode::UnknownSetupKey,
                format!(
                    "setup key {key} is well formed but not in {}'s catalog (version {}); check that it belongs to this vendor's products",
                    self.vendor, self.version
                ),
                serde_json::json!({ "setup_key": key.as_str(), "catalog_version": self.version }),
            )
        })
    }

    /// A product by id.
    pub fn product(&self, id: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.id == id)
    }

    /// A key group by id.
    pub fn key_group(&self, id: &str) -> Option<&KeyGroup> {
        self.key_groups.iter().find(|g| g.id == id)
    }

    /// An application's display name, or its id.
    pub fn application_name(&self, id: &str) -> String {
        self.applications
            .iter()
            .find(|a| a.id == id)
            .map(|a| a.name.clone())
            .unwrap_or_else(|| id.to_string())
    }

    /// Products grouped by application id, in catalog order.
    pub fn products_by_application(&self) -> BTreeMap<String, Vec<&Product>> {
        let mut map: BTreeMap<String, Vec<&Product>> = BTreeMap::new();
        for p in &self.products {
            map.entry(p.application.clone()).or_default().push(p);
        }
        map
    }
}

fn check_id(what: &str, id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} id `{id}` must be 1–64 characters of letters, digits, `-`, `_` or `.`"
        )))
    }
}

/// The demo catalog of `volact quickstart`: "Demo OS" (a workstation product, minimum 25,
/// and a server product, minimum 5) and "Demo Office" (one product, minimum 5).
pub fn demo_source() -> CatalogSource {
    let app = |id: &str, name: &str| Application {
        id: id.into(),
        name: name.into(),
    };
    let product = |id: &str, name: &str, application: &str, kind, minimum| ProductSource {
        id: id.into(),
        name: name.into(),
        application: application.into(),
        kind,
        minimum_count: Some(minimum),
        grace_days: None,
        setup_key: None,
        rearm_limit: None,
    };
    CatalogSource {
        vendor: "Demo Vendor".into(),
        applications: vec![app("demo-os", "Demo OS"), app("demo-office", "Demo Office")],
        products: vec![
            product(
                "demo-os-workstation",
                "Demo OS Workstation",
                "demo-os",
                ProductKind::Workstation,
                25,
            ),
            product(
                "demo-os-server",
                "Demo OS Server",
                "demo-os",
                ProductKind::Server,
                5,
            ),
            product(
                "demo-office",
                "Demo Office",
                "demo-office",
                ProductKind::Workstation,
                5,
            ),
        ],
        key_groups: vec![KeyGroup {
            id: "demo-all".into(),
            name: "All demo products".into(),
            products: vec![
                "demo-os-workstation".into(),
                "demo-os-server".into(),
                "demo-office".into(),
            ],
        }],
        service_url: None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_service_url_must_be_https_or_loopback_http() {
        for good in [
            "https://activation.example.com",
            "https://a.example:7690/base",
            "http://127.0.0.1:7690",
            "http://[::1]:7690",
            "http://localhost:7690/",
        ] {
            assert_eq!(check_service_url(good), Ok(()), "{good}");
        }
        for bad in [
            "http://activation.example.com",
            "http://10.0.0.1:7690",
            "ftp://x",
            "https://",
            "https:///path",
            "https://a b",
            "",
        ] {
            assert!(check_service_url(bad).is_err(), "{bad}");
        }
        let mut n = 0u8;
        let mut random = || {
            n += 1;
            [n; 24]
        };
        let mut source = demo_source();
        source.service_url = Some("http://example.com".into());
        let e = Catalog::build(&source, 1, Timestamp::UNIX_EPOCH, &mut random).unwrap_err();
        assert!(e.message.contains("service_url"), "{}", e.message);
        source.service_url = Some("https://example.com".into());
        let c = Catalog::build(&source, 1, Timestamp::UNIX_EPOCH, &mut random).unwrap();
        assert_eq!(c.service_url.as_deref(), Some("https://example.com"));
    }

    fn counter() -> impl FnMut() -> [u8; 24] {
        let mut n = 0u8;
        move || {
            n = n.wrapping_add(1);
            [n; 24]
        }
    }

    #[test]
    fn demo_catalog_builds_with_defaults() {
        let c = Catalog::build(&demo_source(), 1, Timestamp::UNIX_EPOCH, counter()).unwrap();
        assert_eq!(c.products.len(), 3);
        assert_eq!(c.product("demo-os-workstation").unwrap().minimum_count, 25);
        assert_eq!(c.product("demo-os-server").unwrap().grace_days, 30);
        let key = c.product("demo-office").unwrap().setup_key.clone();
        assert_eq!(c.product_for_key(&key).unwrap().id, "demo-office");
    }

    #[test]
    fn bad_sources_are_refused_with_the_reason() {
        let mut s = demo_source();
        s.products[0].minimum_count = Some(0);
        let e = Catalog::build(&s, 1, Timestamp::UNIX_EPOCH, counter()).unwrap_err();
        assert!(e.message.contains("from 1 to 1000"), "{}", e.message);
        let mut s = demo_source();
        s.products[0].application = "nope".into();
        assert!(Catalog::build(&s, 1, Timestamp::UNIX_EPOCH, counter()).is_err());
        let mut s = demo_source();
        s.key_groups[0].products.push("ghost".into());
        assert!(Catalog::build(&s, 1, Timestamp::UNIX_EPOCH, counter()).is_err());
    }

    #[test]
    fn a_signed_rearm_limit_is_optional_and_bounded() {
        // As `catalog.toml` has it (`[[product]]` tables), in JSON form.
        let source: CatalogSource = serde_json::from_value(serde_json::json!({
            "vendor": "V",
            "application": [{ "id": "a", "name": "A" }],
            "product": [
                { "id": "p", "name": "P", "application": "a", "kind": "server", "rearm_limit": 1 },
                { "id": "q", "name": "Q", "application": "a", "kind": "server" },
            ],
        }))
        .unwrap();
        let c = Catalog::build(&source, 1, Timestamp::UNIX_EPOCH, counter()).unwrap();
        assert_eq!(c.product("p").unwrap().rearm_limit(), 1);
        assert_eq!(c.product("q").unwrap().rearm_limit(), DEFAULT_REARM_LIMIT);
        // A catalog signed before the field existed reads the same, and one without a
        // limit is written as before.
        let json = serde_json::to_value(&c).unwrap();
        assert!(json["products"][1].get("rearm_limit").is_none(), "{json}");
        let mut old = json.clone();
        old["products"][0]
            .as_object_mut()
            .unwrap()
            .remove("rearm_limit");
        let old: Catalog = serde_json::from_value(old).unwrap();
        assert_eq!(old.product("p").unwrap().rearm_limit(), DEFAULT_REARM_LIMIT);
        let mut s = source.clone();
        s.products[0].rearm_limit = Some(MAX_REARM_LIMIT + 1);
        let e = Catalog::build(&s, 1, Timestamp::UNIX_EPOCH, counter()).unwrap_err();
        assert!(e.message.contains("rearm_limit"), "{}", e.message);
    }

    #[test]
    fn unknown_key_is_refused() {
        let c = Catalog::build(&demo_source(), 1, Timestamp::UNIX_EPOCH, counter()).unwrap();
        let stranger = SetupKey::generate([200; 24]);
        assert_eq!(
            c.product_for_key(&stranger).unwrap_err().code,
            ErrorCode::UnknownSetupKey
        );
    }
}

/// Checks a vendor service URL: `https://HOST…`, or `http://` to a loopback host (tests
/// and demos), since hosts send their activation requests and usage reports there.
pub fn check_service_url(url: &str) -> Result<(), String> {
    let why = || {
        format!(
            "service_url `{url}` is not an https:// URL (http:// is allowed only to 127.0.0.1, [::1] or localhost)"
        )
    };
    if url.len() > 512 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(why());
    }
    if let Some(rest) = url.strip_prefix("https://") {
        return if rest.is_empty() || rest.starts_with('/') {
            Err(why())
        } else {
            Ok(())
        };
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(why());
    };
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback { Ok(()) } else { Err(why()) }
}

/// The last bundle that [`VendorBundle::open`] verified, with what it yielded.
#[allow(clippy::type_complexity)]
static LAST_OPENED: std::sync::Mutex<Option<(VendorBundle, crate::keys::PublicKey, Catalog)>> =
    std::sync::Mutex::new(None);

/// What `volact vendor export` writes: the vendor's root public key and signed catalog,
/// everything a host or client needs to trust this vendor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorBundle {
    /// The vendor root public key (PASERK `k4.public.…`).
    pub root_public_key: String,
    /// The catalog, signed by the root key.
    pub catalog: String,
}

impl VendorBundle {
    /// Verifies the catalog against the root key and returns both.
    pub fn open(&self) -> Result<(crate::keys::PublicKey, Catalog), ApiError> {
        // A client checks its licence on every start of its product, and verifying a
        // catalog (a constant-time decode of a few kilobytes, then a signature) is most of
        // what that would cost. The result of the last bundle that verified is kept: the
        // same bytes verify the same way, so this changes no answer, only its cost.
        if let Ok(last) = LAST_OPENED.lock()
            && let Some((bundle, root, catalog)) = last.as_ref()
            && bundle == self
        {
            return Ok((root.clone(), catalog.clone()));
        }
        let opened = self.verify()?;
        if let Ok(mut last) = LAST_OPENED.lock() {
            *last = Some((self.clone(), opened.0.clone(), opened.1.clone()));
        }
        Ok(opened)
    }

    fn verify(&self) -> Result<(crate::keys::PublicKey, Catalog), ApiError> {
        let root = crate::keys::PublicKey::from_paserk(&self.root_public_key).map_err(|_| {
            ApiError::new(
                ErrorCode::BadRequest,
                "the vendor bundle's root_public_key is not a k4.public PASERK",
            )
        })?;
        let catalog = verify_catalog(&root, &self.catalog).map_err(|e| {
            ApiError::new(
                ErrorCode::UntrustedHost,
                format!("the vendor bundle's catalog is not signed by its root key ({}); get a fresh bundle from the vendor", e.message),
            )
        })?;
        Ok((root, catalog))
    }
}

/// Verifies a catalog token against the vendor `root`: signed by the root itself, or by
/// a key the root delegated for catalogs while the delegation was in force when the
/// catalog was signed. The signer is read from the unverified claims only to know which
/// key to verify with.
pub fn verify_catalog(root: &crate::keys::PublicKey, token: &str) -> Result<Catalog, ApiError> {
    let untrusted = |e: crate::token::TokenError| {
        ApiError::new(
            ErrorCode::UntrustedHost,
            format!("the catalog does not verify: {e}"),
        )
    };
    let claimed: Catalog = crate::token::peek(token).map_err(untrusted)?;
    let signer = crate::delegation::signing_key(
        root,
        claimed.delegation.as_deref(),
        crate::delegation::Scope::Catalogs,
        claimed.iat,
        "the catalog",
    )?;
    crate::token::verify(&signer, token).map_err(untrusted)
}

/// Whether `offered` may replace `current`: the same vendor and a higher version. A
/// host never goes back to an older catalog (or sideways to another of the same
/// version): an old catalog replayed at a host could take products away or bring back
/// setup keys the vendor replaced.
pub fn check_newer(current: &Catalog, offered: &Catalog) -> Result<(), ApiError> {
    if offered.vendor != current.vendor {
        return Err(ApiError::with_details(
            ErrorCode::BadRequest,
            format!(
                "this catalog is {}'s, not {}'s; import a catalog of this host's vendor",
                offered.vendor, current.vendor
            ),
            serde_json::json!({ "vendor": current.vendor, "offered_vendor": offered.vendor }),
        ));
    }
    if offered.version <= current.version {
        return Err(ApiError::with_details(
            ErrorCode::BadRequest,
            format!(
                "this catalog is version {} and the host has version {}; a host only takes a newer catalog, so ask the vendor for the current one",
                offered.version, current.version
            ),
            serde_json::json!({ "version": current.version, "offered_version": offered.version }),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "catalog_update_tests.rs"]
mod update_tests;
