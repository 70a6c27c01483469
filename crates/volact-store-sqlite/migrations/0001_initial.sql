-- Inventory: one row per client ever seen; rows are never deleted, so the count can be
-- rebuilt at start-up and administrators can see machines that stopped asking.
CREATE TABLE clients (
    client_id          TEXT    NOT NULL PRIMARY KEY,
    machine_name       TEXT    NOT NULL,
    address            TEXT    NOT NULL,
    product            TEXT    NOT NULL,
    application        TEXT    NOT NULL,
    first_seen         INTEGER NOT NULL,
    last_seen          INTEGER NOT NULL,
    last_counted       INTEGER,
    last_result        TEXT    NOT NULL,
    last_count         INTEGER NOT NULL,
    ticket_id          TEXT,
    ticket_valid_until INTEGER,
    revoked            INTEGER NOT NULL DEFAULT 0,
    revoked_reason     TEXT,
    requests           INTEGER NOT NULL DEFAULT 0
);

-- Serves the count per application ("last_counted >= t AND revoked = 0" grouped by
-- application) and the start-up rebuild. revoked is included so the count reads the index
-- alone, several times faster than visiting each row.
CREATE INDEX clients_application_last_counted ON clients (application, last_counted, revoked);
-- Serves the inventory listing, newest first.
CREATE INDEX clients_last_seen ON clients (last_seen);

-- Audit log: one row per activation request. AUTOINCREMENT so ids are never reused after
-- pruning, which keeps "after_id" following correct.
CREATE TABLE events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            INTEGER NOT NULL,
    client_id     TEXT    NOT NULL,
    machine_name  TEXT    NOT NULL,
    address       TEXT    NOT NULL,
    product       TEXT    NOT NULL,
    minimum_asked INTEGER NOT NULL,
    count         INTEGER NOT NULL,
    result        TEXT    NOT NULL
);

CREATE INDEX events_at ON events (at);
CREATE INDEX events_client_id ON events (client_id, id);
CREATE INDEX events_result ON events (result, id);

-- Kept apart from events so totals survive pruning and cost nothing to read.
CREATE TABLE result_totals (
    result TEXT    NOT NULL PRIMARY KEY,
    n      INTEGER NOT NULL
);
