//! A real host on loopback for the C ABI's tests, with Demo Office activating at a
//! count of 1 so one machine is enough.

#![allow(clippy::unwrap_used, dead_code)]

use std::path::PathBuf;
use volact_testkit::{TestHost, TestHostOptions, TestVendor};

pub const PRODUCT: &str = "demo-office";

pub struct Fixture {
    pub host: TestHost,
    pub dir: tempfile::TempDir,
    pub runtime: tokio::runtime::Runtime,
}

impl Fixture {
    pub fn new() -> Fixture {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let vendor = TestVendor::with_minimum(9, PRODUCT, 1).unwrap();
        let host = runtime
            .block_on(TestHost::start_now(vendor, TestHostOptions::default()))
            .unwrap();
        Fixture {
            host,
            dir: tempfile::tempdir().unwrap(),
            runtime,
        }
    }

    pub fn bundle(&self) -> Vec<u8> {
        serde_json::to_vec(&self.host.vendor.bundle).unwrap()
    }

    pub fn bundle_file(&self) -> PathBuf {
        let path = self.dir.path().join("vendor.pub");
        std::fs::write(&path, self.bundle()).unwrap();
        path
    }

    pub fn state(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn setup_key(&self) -> String {
        self.host.vendor.setup_key(PRODUCT)
    }

    pub fn inventory(&self) -> Vec<String> {
        let admin = self.host.admin().unwrap();
        let list = self
            .runtime
            .block_on(admin.clients(&Default::default()))
            .unwrap();
        list.clients.into_iter().map(|c| c.client_id).collect()
    }
}
