-- The vendor service's store: host keys, the hosts they activated, answered requests,
-- revocations and usage reports. Times are Unix seconds (UTC).
CREATE TABLE vendor_host_keys (
    key_id          TEXT PRIMARY KEY NOT NULL,
    customer        TEXT NOT NULL,
    key_group       TEXT NOT NULL,
    seats           BIGINT,
    max_hosts       BIGINT NOT NULL,
    max_activations BIGINT NOT NULL,
    expires         BIGINT,
    usage_reports   BOOLEAN NOT NULL,
    token           TEXT NOT NULL,
    created         BIGINT NOT NULL,
    revoked_at      BIGINT
);
CREATE INDEX vendor_host_keys_customer ON vendor_host_keys (customer);

CREATE TABLE vendor_hosts (
    key_id              TEXT NOT NULL,
    host_id             TEXT NOT NULL,
    host_public_key     TEXT NOT NULL,
    activations         BIGINT NOT NULL,
    first_activated     BIGINT NOT NULL,
    last_contact        BIGINT NOT NULL,
    certificate_expires BIGINT NOT NULL,
    revoked_at          BIGINT,
    PRIMARY KEY (key_id, host_id)
);

CREATE TABLE vendor_answered (
    host_id TEXT NOT NULL,
    nonce   TEXT NOT NULL,
    at      BIGINT NOT NULL,
    PRIMARY KEY (host_id, nonce)
);

CREATE TABLE vendor_revocations (
    seq    BIGSERIAL PRIMARY KEY,
    kind   TEXT NOT NULL,
    id     TEXT NOT NULL,
    at     BIGINT NOT NULL,
    reason TEXT
);

CREATE TABLE vendor_usage (
    host_id       TEXT NOT NULL,
    day           TEXT NOT NULL,
    key_id        TEXT NOT NULL,
    received      BIGINT NOT NULL,
    host_version  TEXT NOT NULL,
    clients_known BIGINT NOT NULL,
    products      TEXT NOT NULL,
    applications  TEXT NOT NULL,
    token         TEXT NOT NULL,
    PRIMARY KEY (host_id, day)
);
CREATE INDEX vendor_usage_key ON vendor_usage (key_id, day);
