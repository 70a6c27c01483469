-- Clients flagged as running from cloned disk images: the same client id seen from
-- different machines within a day. One row per client; the audit log holds one
-- `cloned-image` event per flag.
CREATE TABLE clone_flags (
    client_id          TEXT    NOT NULL PRIMARY KEY,
    first_flagged      INTEGER NOT NULL,
    last_flagged       INTEGER NOT NULL,
    flags              INTEGER NOT NULL,
    machine_name       TEXT    NOT NULL,
    other_machine_name TEXT,
    address            TEXT    NOT NULL,
    reason             TEXT    NOT NULL
);

CREATE INDEX clone_flags_last_flagged ON clone_flags (last_flagged);

-- Small facts the host keeps about itself; `probe` is rewritten by the periodic write
-- probe behind /healthz, so a disk that stopped taking writes shows before a request fails.
CREATE TABLE host_meta (
    key   TEXT    NOT NULL PRIMARY KEY,
    value INTEGER NOT NULL
);
