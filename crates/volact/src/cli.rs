//! The command line as typed: raw flags, before anything is resolved or checked.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// volact: self-hosted volume activation for a vendor's own products.
#[derive(Debug, Parser)]
#[command(name = "volact", version, about, propagate_version = true)]
pub struct Cli {
    /// Print results and errors as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log format of `host serve` and `quickstart`, written before the command: text or
    /// json. Not global, so the help of commands that log nothing does not list it.
    #[arg(long, default_value = "text", value_name = "FORMAT")]
    pub log_format: String,
    /// Client options given before the command (`volact --state F activate`): the same
    /// as after it. Not global, so host and vendor commands' help does not list them.
    #[command(flatten)]
    pub client: LeadingClientFlags,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Client options written before the command. They carry no `env`: the environment is
/// read by the command's own flags, so a value typed here beats one from the environment.
#[derive(Debug, Args, Default)]
#[command(next_help_heading = "Client options (also accepted after the client command)")]
pub struct LeadingClientFlags {
    /// The client's state file (one file is one machine).
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
    /// DNS server for host discovery, ADDR[:PORT].
    #[arg(long, value_name = "ADDR:PORT")]
    pub dns_server: Option<String>,
    /// Do not ask the host that answered last time first.
    #[arg(long)]
    pub no_host_cache: bool,
    /// How long to wait for a host's connection before trying the next, e.g. 2s.
    #[arg(long, value_name = "DURATION")]
    pub connect_timeout: Option<String>,
}

impl LeadingClientFlags {
    /// The options given, by name, for the message refusing them on other commands.
    pub fn given(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.state.is_some() {
            names.push("--state");
        }
        if self.dns_server.is_some() {
            names.push("--dns-server");
        }
        if self.no_host_cache {
            names.push("--no-host-cache");
        }
        if self.connect_timeout.is_some() {
            names.push("--connect-timeout");
        }
        names
    }
}

/// `--state` of every client command.
#[derive(Debug, Args, Default, Clone)]
pub struct StateFlag {
    /// The client's state file (one file is one machine).
    #[arg(long, env = "VOLACT_STATE", value_name = "PATH")]
    pub state: Option<PathBuf>,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Client commands, at the top level like slmgr's (`volact ipk`, `volact ato`).
    #[command(flatten)]
    Client(ClientCommand),
    /// Host commands: run an activation host.
    #[command(subcommand)]
    Host(HostCommand),
    /// Vendor commands: keys, catalog, host keys, host activation.
    #[command(subcommand)]
    Vendor(VendorCommand),
    /// Start a complete demo: vendor, catalog, host key, activated host, serving.
    Quickstart {
        /// Directory for the demo's files (reused on later runs).
        #[arg(long, default_value = "volact-quickstart", value_name = "DIR")]
        data: PathBuf,
        /// Address to serve on.
        #[arg(long, default_value = "127.0.0.1:7688", value_name = "ADDR")]
        listen: String,
        #[command(flatten)]
        storage: StorageFlag,
    },
    /// Simulate a fleet against the real rules and storage with a virtual clock.
    Simulate(crate::simulate_cmd::SimulateArgs),
    /// Load a host on this machine with real activation requests and measure it.
    Bench(crate::bench_cmd::BenchArgs),
}

/// The client commands: each acts on one machine's state file.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Install a setup key; creates the client id (like slmgr /ipk).
    #[command(visible_alias = "ipk")]
    InstallKey {
        /// The setup key, XXXXX-XXXXX-XXXXX-XXXXX-XXXXX.
        key: String,
        /// The vendor's public bundle (from `volact vendor export`); needed the first time.
        #[arg(long, value_name = "FILE")]
        vendor: Option<PathBuf>,
        #[command(flatten)]
        state: StateFlag,
    },
    /// Pin a host; disables discovery (like slmgr /skms).
    #[command(visible_alias = "skms")]
    SetHost {
        /// HOST or HOST:PORT (default port 7688).
        host: String,
        #[command(flatten)]
        state: StateFlag,
    },
    /// Forget the pinned host; back to DNS discovery (like slmgr /ckms).
    #[command(visible_alias = "ckms")]
    ClearHost {
        #[command(flatten)]
        state: StateFlag,
    },
    /// Domain for DNS SRV discovery (like slmgr /skms-domain).
    #[command(visible_alias = "skms-domain")]
    SetDomain {
        /// The domain.
        domain: String,
        #[command(flatten)]
        state: StateFlag,
    },
    /// Activate or renew now (like slmgr /ato).
    #[command(visible_alias = "ato")]
    Activate {
        #[command(flatten)]
        state: StateFlag,
        #[command(flatten)]
        discovery: crate::dns_cmd::DiscoveryFlags,
    },
    /// License state, product, host, count seen and dates (like slmgr /dli).
    #[command(visible_alias = "dli")]
    Status {
        /// Show everything.
        #[arg(long, short)]
        verbose: bool,
        #[command(flatten)]
        state: StateFlag,
        #[command(flatten)]
        discovery: crate::dns_cmd::DiscoveryFlags,
    },
    /// Everything status knows: `status --verbose` (like slmgr /dlv).
    Dlv {
        #[command(flatten)]
        state: StateFlag,
        #[command(flatten)]
        discovery: crate::dns_cmd::DiscoveryFlags,
    },
    /// When the activation ends (like slmgr /xpr).
    #[command(visible_alias = "xpr")]
    Expiry {
        #[command(flatten)]
        state: StateFlag,
    },
    /// Give this machine a new client id (like slmgr /rearm): for copies of a disk image
    /// cloned after the setup key was installed, which otherwise count as one machine.
    Rearm {
        #[command(flatten)]
        state: StateFlag,
    },
    /// Stay running and renew on schedule.
    Agent {
        #[command(flatten)]
        state: StateFlag,
        #[command(flatten)]
        discovery: crate::dns_cmd::DiscoveryFlags,
    },
    /// Turn the host cache on or off: whether the host that answered last is asked
    /// first (like slmgr /skhc and /ckhc).
    HostCache {
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        switch: String,
        #[command(flatten)]
        state: StateFlag,
    },
    /// DNS server for discovery, ADDR[:PORT] (default port 53).
    SetDnsServer {
        /// The server's address.
        server: String,
        #[command(flatten)]
        state: StateFlag,
    },
    /// Back to the system's DNS servers for discovery.
    ClearDnsServer {
        #[command(flatten)]
        state: StateFlag,
    },
}

/// `--data` of host commands.
#[derive(Debug, Args)]
pub struct DataDir {
    /// The host's data directory.
    #[arg(long, env = "VOLACT_DATA", value_name = "DIR")]
    pub data: PathBuf,
}

/// `--storage-url` of commands that open the host's store (overrides `[storage] url`
/// and `VOLACT_STORAGE_URL`).
#[derive(Debug, Args, Default)]
pub struct StorageFlag {
    /// Where the host's data lives, default sqlite://DATA/volact.db (DATA is the data
    /// directory), or postgres://USER@HOST:PORT/DATABASE without a password (that goes in
    /// [storage] password_file or VOLACT_STORAGE_PASSWORD, never on a command line).
    #[arg(long, value_name = "URL")]
    pub storage_url: Option<String>,
}

impl From<StorageFlag> for volact_engine::config::RawConfig {
    fn from(f: StorageFlag) -> volact_engine::config::RawConfig {
        volact_engine::config::RawConfig {
            storage: volact_engine::config::StorageSection::with_url(f.storage_url),
            ..volact_engine::config::RawConfig::default()
        }
    }
}

/// Configuration flags of `host serve` (override `DATA/volact.toml`).
#[derive(Debug, Args, Default)]
pub struct ServeFlags {
    /// Address to listen on, e.g. 0.0.0.0:7688.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Renewal interval (15m–30d), e.g. 7d.
    #[arg(long, value_name = "DURATION")]
    pub renew_interval: Option<String>,
    /// Retry interval while not activated (15m–30d), e.g. 2h.
    #[arg(long, value_name = "DURATION")]
    pub retry_interval: Option<String>,
    /// Ticket validity (1d–3650d), e.g. 180d.
    #[arg(long, value_name = "DURATION")]
    pub ticket_validity: Option<String>,
    /// Count window (1d–365d), e.g. 30d.
    #[arg(long, value_name = "DURATION")]
    pub count_window: Option<String>,
    /// Allowed clock difference (1m–48h), e.g. 4h.
    #[arg(long, value_name = "DURATION")]
    pub max_clock_skew: Option<String>,
    /// How long audit events are kept (1d–3650d), e.g. 90d.
    #[arg(long, value_name = "DURATION")]
    pub event_retention: Option<String>,
    /// File holding the token GET /metrics requires (relative to the data directory).
    #[arg(long, value_name = "FILE")]
    pub metrics_token_file: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub storage: StorageFlag,
}

/// `volact host …`.
#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Create the host identity in a new data directory, with a self-signed TLS
    /// certificate for this machine's names (its fingerprint is printed).
    Init {
        #[command(flatten)]
        data: DataDir,
        /// Another name (DNS name or IP address) the TLS certificate covers, besides this
        /// machine's host name, localhost, 127.0.0.1 and ::1; repeatable.
        #[arg(long, value_name = "NAME")]
        tls_name: Vec<String>,
        /// Make no TLS certificate: the host serves plain HTTP only, and its admin API and
        /// dashboard only to this machine.
        #[arg(long, conflicts_with = "tls_name")]
        no_tls: bool,
    },
    /// Make a (new) self-signed TLS certificate for an existing data directory and add a
    /// [tls] section to volact.toml if it has none; a serving host picks it up at once.
    TlsInit {
        #[command(flatten)]
        data: DataDir,
        /// Another name (DNS name or IP address) the certificate covers; repeatable.
        #[arg(long, value_name = "NAME")]
        tls_name: Vec<String>,
        /// Replace an existing certificate (clients pinning its fingerprint need the new one).
        #[arg(long)]
        replace: bool,
    },
    /// Install a newer catalog of the vendor, for a host that cannot reach the vendor
    /// service: FILE holds the catalog token (the vendor directory's catalog.token), a
    /// vendor bundle or the service's /v1/catalog answer. An older catalog is refused.
    ImportCatalog {
        #[command(flatten)]
        data: DataDir,
        /// The catalog file.
        file: PathBuf,
    },
    /// Install the vendor's revocation list from a file (an offline host; a serving host
    /// fetches it from the vendor service and takes an imported one within seconds).
    ImportRevocations {
        #[command(flatten)]
        data: DataDir,
        /// The list (`volact vendor revocations --dir V`, or the service's answer).
        file: PathBuf,
    },
    /// Install the host key (and the vendor's public bundle).
    InstallKey {
        #[command(flatten)]
        data: DataDir,
        /// The vendor's public bundle (from `volact vendor export`); needed the first time.
        #[arg(long, value_name = "FILE")]
        vendor: Option<PathBuf>,
        /// The host key from the vendor.
        host_key: String,
    },
    /// Activate the host: online against the vendor's service, or offline (write a request
    /// for the vendor, then install its answer).
    Activate {
        #[command(flatten)]
        data: DataDir,
        /// Write the activation request to FILE, for the vendor.
        // Neither flag is required by clap, so that without one the command explains both
        // steps rather than naming only the first.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["response", "online"])]
        request_out: Option<PathBuf>,
        /// Install the vendor's answer from FILE.
        #[arg(long, value_name = "FILE", conflicts_with = "online")]
        response: Option<PathBuf>,
        /// Ask the vendor's activation service (`volact vendor serve`): at --vendor-url,
        /// or the service URL of the vendor's signed catalog.
        #[arg(long)]
        online: bool,
        /// The vendor service's URL, e.g. https://activation.example.com:7690.
        #[arg(long, value_name = "URL", requires = "online")]
        vendor_url: Option<String>,
        /// Trust the vendor service's TLS certificate when issued by a CA in FILE (PEM),
        /// rather than the system's roots.
        #[arg(long, value_name = "FILE", requires = "online")]
        vendor_ca_file: Option<PathBuf>,
        /// Trust exactly the vendor service certificate with this SHA-256 fingerprint.
        #[arg(long, value_name = "SHA256", requires = "online")]
        vendor_fingerprint: Option<String>,
    },
    /// Serve activations.
    Serve {
        #[command(flatten)]
        data: DataDir,
        #[command(flatten)]
        flags: ServeFlags,
    },
    /// Host id, host key, certificate, counts and requests (like slmgr /dlv on a KMS host).
    Status {
        #[command(flatten)]
        data: DataDir,
        #[command(flatten)]
        storage: StorageFlag,
    },
    /// Every client the running host has seen (inventory), filtered; --csv for a sheet.
    Clients(crate::admin_cmd::ClientsArgs),
    /// The running host's audit log of activation requests; --follow to keep watching.
    Events(crate::admin_cmd::EventsArgs),
    /// Revoke a client: it leaves the count at once and its renewals are refused.
    Revoke(crate::admin_cmd::RevokeArgs),
    /// Undo a revocation.
    Unrevoke(crate::admin_cmd::UnrevokeArgs),
    /// Copy this host's store (inventory, audit log, clone flags, totals) to another,
    /// such as PostgreSQL, printing what was copied per table; then point [storage] url
    /// at it. Refused while the host serves, and into a store holding data unless --force.
    MigrateStore(crate::migrate_cmd::MigrateStoreArgs),
    /// The host's configuration: `config check` validates it without starting.
    #[command(subcommand)]
    Config(crate::config_cmd::ConfigCommand),
    /// Print the DNS SRV record (zone-file lines) that lets clients find this host.
    DnsRecord {
        #[command(flatten)]
        data: DataDir,
        #[command(flatten)]
        record: crate::dns_cmd::DnsRecordFlags,
    },
    /// Publish this host's SRV record now by dynamic DNS update ([dns.publish]).
    PublishDns {
        #[command(flatten)]
        data: DataDir,
    },
    /// Remove this host's SRV record now by dynamic DNS update ([dns.publish]).
    UnpublishDns {
        #[command(flatten)]
        data: DataDir,
    },
    /// Benchmarks only: write COUNT counted clients straight into the host's store.
    /// Only in builds with the `bench-seed` feature (scripts/perf-rounds.sh), never in a
    /// release: it lifts any application past its minimum in one command.
    #[cfg(feature = "bench-seed")]
    SeedClients {
        #[command(flatten)]
        data: DataDir,
        /// Clients to write.
        #[arg(long)]
        count: u64,
        /// Seed of their client ids.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        storage: StorageFlag,
    },
}

/// `volact vendor …`.
#[derive(Debug, Subcommand)]
pub enum VendorCommand {
    /// Create the vendor root key pair.
    Init {
        /// The vendor's directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Sign a catalog from a TOML file.
    Catalog {
        /// The vendor's directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The catalog source.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
    },
    /// Issue a host key to a customer.
    HostKey {
        /// Where to issue it: offline in the vendor's directory (--dir), or through a
        /// running service's admin API (--url).
        #[command(flatten)]
        source: crate::vendor_admin_cmd::VendorSource,
        /// Customer name.
        #[arg(long)]
        customer: String,
        /// Key group id.
        #[arg(long)]
        group: String,
        /// Seat cap (distinct clients per host).
        #[arg(long)]
        seats: Option<u32>,
        /// Expiry date (YYYY-MM-DD or RFC 3339).
        #[arg(long, value_name = "DATE")]
        expires: Option<String>,
        /// Distinct hosts the key may activate.
        #[arg(long, default_value_t = volact_core::host_key::DEFAULT_MAX_HOSTS)]
        max_hosts: u32,
        /// Activations per host.
        #[arg(long, default_value_t = volact_core::host_key::DEFAULT_MAX_ACTIVATIONS)]
        max_activations: u32,
        /// Hosts with this key send the vendor service a signed daily usage report
        /// (counts per product; never client ids or machine names).
        #[arg(long)]
        usage_reports: bool,
        /// Sign with the delegated key in DIR (`vendor delegate --out DIR`, scope
        /// host-keys) instead of the root key.
        #[arg(long, value_name = "DIR")]
        signing: Option<PathBuf>,
    },
    /// Sign a host certificate for an offline activation request.
    ActivateHost {
        /// The vendor's directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Certificate validity in days (capped by the host key's expiry).
        #[arg(long, default_value_t = volact_core::certificate::DEFAULT_CERTIFICATE_DAYS)]
        days: u32,
        /// Sign with the delegated key in DIR (`vendor delegate --out DIR`) instead of
        /// the root key.
        #[arg(long, value_name = "DIR")]
        signing: Option<PathBuf>,
        /// The host's request file.
        request: PathBuf,
    },
    /// Serve the vendor's activation service: hosts activate online; the admin API and
    /// /metrics take DIR/admin.token. Settings from DIR/service.toml, overridden by flags.
    Serve {
        /// The vendor's directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Another settings file than DIR/service.toml.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Where to listen [default: 127.0.0.1:7690]; off loopback only with TLS.
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// Sign with the delegated key in DIR (`vendor delegate --out DIR`) instead of
        /// the root key.
        #[arg(long, value_name = "DIR")]
        signing: Option<PathBuf>,
        /// Certificate validity in days, capped by the host key's expiry [default: 1825].
        #[arg(long)]
        days: Option<u32>,
        /// Activation attempts a minute per source address, twice as many at once (0: no
        /// limit) [default: 10].
        #[arg(long, value_name = "N")]
        attempts_per_minute: Option<u32>,
        /// The TLS certificate chain (PEM), with --tls-key.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The TLS certificate's private key (PEM), with --tls-cert.
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Where the service keeps its records [default: sqlite://DATA/vendor.db, DATA
        /// being DIR], e.g. postgres://volact@db.example.com/vendor.
        #[arg(long, value_name = "URL")]
        storage_url: Option<String>,
    },
    /// Certify a signing key for the vendor's activation service, so the root key can stay
    /// offline: hosts and clients accept what it signs within its scope and validity.
    Delegate {
        /// The vendor's directory (holds the root key).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Where to write the signing key and its delegation (a new directory).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Validity in days: documents the key signs must be issued within it.
        #[arg(long, default_value_t = 90)]
        days: u32,
        /// What the key may sign (default: all four).
        #[arg(long, value_delimiter = ',', value_name = "SCOPE", value_parser = ["host-certificates", "catalogs", "revocation-lists", "host-keys"])]
        scope: Vec<String>,
    },
    /// List customers: their host keys and hosts (activations, last contact,
    /// certificate expiry).
    Customers {
        #[command(flatten)]
        source: crate::vendor_admin_cmd::VendorSource,
        /// Only this customer.
        #[arg(long)]
        customer: Option<String>,
        /// CSV instead of text (one row per host).
        #[arg(long)]
        csv: bool,
    },
    /// List the hosts' daily usage reports.
    Usage {
        #[command(flatten)]
        source: crate::vendor_admin_cmd::VendorSource,
        /// Only this customer.
        #[arg(long)]
        customer: Option<String>,
        /// Only this host key.
        #[arg(long, value_name = "KEY_ID")]
        key: Option<String>,
        /// From this day (YYYY-MM-DD).
        #[arg(long, value_name = "DAY")]
        from: Option<String>,
        /// To this day (YYYY-MM-DD).
        #[arg(long, value_name = "DAY")]
        to: Option<String>,
        /// CSV instead of text (one row per report and product).
        #[arg(long)]
        csv: bool,
    },
    /// Revoke a host key (all its hosts), one host, or a delegated signing key.
    #[command(group(clap::ArgGroup::new("what").required(true).multiple(false)))]
    Revoke {
        #[command(flatten)]
        source: crate::vendor_admin_cmd::VendorSource,
        /// The host key's id.
        #[arg(long, value_name = "KEY_ID", group = "what")]
        host_key: Option<String>,
        /// The host's id.
        #[arg(long, value_name = "HOST_ID", group = "what")]
        host: Option<String>,
        /// The delegation's id.
        #[arg(long, value_name = "ID", group = "what")]
        delegation: Option<String>,
        /// Why (kept with the revocation).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Print the vendor's current revocation list, signed, for offline hosts
    /// (`volact host import-revocations FILE`).
    Revocations {
        #[command(flatten)]
        source: crate::vendor_admin_cmd::VendorSource,
        /// Sign with the delegated key in DIR instead of the root key (with --dir).
        #[arg(long, value_name = "DIR")]
        signing: Option<PathBuf>,
    },
    /// Print the public bundle (root public key and signed catalog) for hosts and clients.
    Export {
        /// The vendor's directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

impl ClientCommand {
    /// The command's own `--state` and, for the commands that look for a host (and
    /// `status`, which shows how), its discovery flags.
    pub fn flags(&self) -> (&StateFlag, Option<&crate::dns_cmd::DiscoveryFlags>) {
        match self {
            ClientCommand::Activate { state, discovery }
            | ClientCommand::Status {
                state, discovery, ..
            }
            | ClientCommand::Dlv { state, discovery }
            | ClientCommand::Agent { state, discovery } => (state, Some(discovery)),
            ClientCommand::InstallKey { state, .. }
            | ClientCommand::SetHost { state, .. }
            | ClientCommand::ClearHost { state }
            | ClientCommand::SetDomain { state, .. }
            | ClientCommand::Expiry { state }
            | ClientCommand::Rearm { state }
            | ClientCommand::HostCache { state, .. }
            | ClientCommand::SetDnsServer { state, .. }
            | ClientCommand::ClearDnsServer { state } => (state, None),
        }
    }
}
