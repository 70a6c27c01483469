-- The same tables as the SQLite backend, so a host moves between them row for row.
-- Text is compared byte by byte (COLLATE "C"), as SQLite does: listings sort the same
-- on either backend and whatever the cluster's locale.

-- Inventory: one row per client ever seen, shared by every host on this database.
CREATE TABLE clients (
    client_id          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    machine_name       TEXT COLLATE "C" NOT NULL,
    address            TEXT COLLATE "C" NOT NULL,
    product            TEXT COLLATE "C" NOT NULL,
    application        TEXT COLLATE "C" NOT NULL,
    first_seen         BIGINT  NOT NULL,
    last_seen          BIGINT  NOT NULL,
    last_counted       BIGINT,
    last_result        TEXT COLLATE "C" NOT NULL,
    last_count         BIGINT  NOT NULL,
    ticket_id          TEXT COLLATE "C",
    ticket_valid_until BIGINT,
    revoked            BOOLEAN NOT NULL DEFAULT FALSE,
    revoked_reason     TEXT,
    requests           BIGINT  NOT NULL DEFAULT 0
);

-- The count per application and the start-up rebuild read only counting clients.
CREATE INDEX clients_counted ON clients (application, last_counted) WHERE NOT revoked;
-- The inventory listing, newest first.
CREATE INDEX clients_last_seen ON clients (last_seen);

-- Audit log. An identity column never hands out an id twice, even after pruning, which
-- keeps "after_id" following correct.
CREATE TABLE events (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            BIGINT  NOT NULL,
    client_id     TEXT COLLATE "C" NOT NULL,
    machine_name  TEXT COLLATE "C" NOT NULL,
    address       TEXT COLLATE "C" NOT NULL,
    product       TEXT COLLATE "C" NOT NULL,
    minimum_asked BIGINT  NOT NULL,
    count         BIGINT  NOT NULL,
    result        TEXT COLLATE "C" NOT NULL
);

CREATE INDEX events_at ON events (at);
CREATE INDEX events_client_id ON events (client_id, id);
CREATE INDEX events_result ON events (result, id);

-- Kept apart from events so totals survive pruning and cost nothing to read.
CREATE TABLE result_totals (
    result TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    n      BIGINT NOT NULL
);

-- Clients flagged as running from cloned disk images (see the SQLite backend).
CREATE TABLE clone_flags (
    client_id          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    first_flagged      BIGINT NOT NULL,
    last_flagged       BIGINT NOT NULL,
    flags              BIGINT NOT NULL,
    machine_name       TEXT COLLATE "C" NOT NULL,
    other_machine_name TEXT COLLATE "C",
    address            TEXT COLLATE "C" NOT NULL,
    reason             TEXT COLLATE "C" NOT NULL
);

CREATE INDEX clone_flags_last_flagged ON clone_flags (last_flagged);

-- Small facts about the store; `probe` is rewritten by the write probe behind /healthz.
CREATE TABLE host_meta (
    key   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    value BIGINT NOT NULL
);
