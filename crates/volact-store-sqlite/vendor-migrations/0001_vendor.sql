-- The vendor service's store: host keys, the hosts they activated, answered requests,
-- revocations and usage reports. Times are Unix seconds (UTC).
CREATE TABLE vendor_host_keys (
    key_id          TEXT PRIMARY KEY NOT NULL,
    customer        TEXT NOT NULL,
    key_group       TEXT NOT NULL,
    seats           INTEGER,
    max_hosts       INTEGER NOT NULL,
    max_activations INTEGER NOT NULL,
    expires         INTEGER,
    usage_reports   INTEGER NOT NULL,
    token           TEXT NOT NULL,
    created         INTEGER NOT NULL,
    revoked_at      INTEGER
);
CREATE INDEX vendor_host_keys_customer ON vendor_host_keys (customer);

CREATE TABLE vendor_hosts (
    key_id              TEXT NOT NULL,
    host_id             TEXT NOT NULL,
    host_public_key     TEXT NOT NULL,
    activations         INTEGER NOT NULL,
    first_activated     INTEGER NOT NULL,
    last_contact        INTEGER NOT NULL,
    certificate_expires INTEGER NOT NULL,
    revoked_at          INTEGER,
    PRIMARY KEY (key_id, host_id)
);

CREATE TABLE vendor_answered (
    host_id TEXT NOT NULL,
    nonce   TEXT NOT NULL,
    at      INTEGER NOT NULL,
    PRIMARY KEY (host_id, nonce)
);

CREATE TABLE vendor_revocations (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    kind   TEXT NOT NULL,
    id     TEXT NOT NULL,
    at     INTEGER NOT NULL,
    reason TEXT
);

CREATE TABLE vendor_usage (
    host_id       TEXT NOT NULL,
    day           TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    received      INTEGER NOT NULL,
    host_version  TEXT NOT NULL,
    clients_known INTEGER NOT NULL,
    products      TEXT NOT NULL,
    applications  TEXT NOT NULL,
    token         TEXT NOT NULL,
    PRIMARY KEY (host_id, day)
);
CREATE INDEX vendor_usage_key ON vendor_usage (key_id, day);
