//! The engine's installed catalog and host certificate, each swapped whole while the
//! host serves: a newer catalog (`crate::catalog_update`) and a renewed certificate
//! (`crate::renewal`) take effect at once, and requests in flight keep what they
//! started with.

use super::Engine;
use std::sync::Arc;
use volact_core::catalog::Catalog;
use volact_core::certificate::HostCertificate;
use volact_core::token;

/// `claims` with the products they cover under `catalog` (see
/// [`volact_core::certificate::covered_products`]): what the host's decisions check.
pub(super) fn covered(claims: HostCertificate, catalog: &Catalog) -> HostCertificate {
    HostCertificate {
        products: volact_core::certificate::covered_products(&claims, Some(catalog)),
        ..claims
    }
}

impl Engine {
    /// The catalog.
    pub fn catalog(&self) -> Arc<Catalog> {
        match self.catalog.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Serves with `catalog` from now on (a newer version of the vendor's catalog, verified
    /// by the caller): its new products' setup keys are known at once, and the products
    /// its key group gained are covered by the host certificate already installed.
    pub fn set_catalog(&self, catalog: Catalog) {
        let catalog = Arc::new(catalog);
        match self.catalog.write() {
            Ok(mut c) => *c = catalog.clone(),
            Err(poisoned) => *poisoned.into_inner() = catalog.clone(),
        }
        // The certificate's own claims, from its token (verified when it was installed),
        // widened anew: products only an older catalog's key group held are not kept.
        if let Some(current) = self.current_certificate()
            && let Ok(claims) = token::peek::<HostCertificate>(&current.0)
        {
            self.store_certificate(current.0.clone(), covered(claims, &catalog));
        }
    }

    /// The certificate in force and its token, if the host is activated.
    pub fn current_certificate(&self) -> Option<Arc<(String, HostCertificate)>> {
        match self.certificate.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The certificate, if the host is activated.
    pub fn certificate(&self) -> Option<HostCertificate> {
        self.current_certificate().map(|c| c.1.clone())
    }

    /// Serves with `certificate` (its token and verified claims) from now on: what a
    /// renewal does once the new certificate is verified and written.
    pub fn set_certificate(&self, token: String, certificate: HostCertificate) {
        self.metrics.set_certificate_expiry(Some(certificate.exp));
        let certificate = covered(certificate, &self.catalog());
        self.store_certificate(token, certificate);
    }

    fn store_certificate(&self, token: String, certificate: HostCertificate) {
        let new = Some(Arc::new((token, certificate)));
        match self.certificate.write() {
            Ok(mut c) => *c = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }

    fn revocations_in_force(
        &self,
    ) -> Option<Arc<(String, volact_core::revocation::RevocationList)>> {
        match self.revocations.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The revocation list in force, if the host has one.
    pub fn revocations(&self) -> Option<volact_core::revocation::RevocationList> {
        self.revocations_in_force().map(|r| r.1.clone())
    }

    /// The signed revocation list in force, which the host passes to its clients.
    pub fn revocations_token(&self) -> Option<String> {
        self.revocations_in_force().map(|r| r.0.clone())
    }

    /// Serves under `list`, signed as `token` (verified by the caller, newer than the one
    /// in force) from now on: when it revokes this host, activations are refused with
    /// `host-revoked`; its clients receive it with every answer.
    pub fn set_revocations(&self, token: String, list: volact_core::revocation::RevocationList) {
        self.metrics.set_revocations(
            list.sequence,
            self.certificate()
                .is_some_and(|c| volact_core::revocation::check_certificate(&list, &c).is_err()),
        );
        let list = Some(Arc::new((token, list)));
        match self.revocations.write() {
            Ok(mut r) => *r = list,
            Err(poisoned) => *poisoned.into_inner() = list,
        }
    }

    /// `cert`, unless the revocation list in force revokes it.
    pub(super) fn check_revoked<'c>(
        &self,
        cert: &'c HostCertificate,
    ) -> Result<&'c HostCertificate, volact_proto::ApiError> {
        match self.revocations_in_force() {
            Some(list) => volact_core::revocation::check_certificate(&list.1, cert).map(|()| cert),
            None => Ok(cert),
        }
    }
}
