-- The hosts using this database (one, for the embedded backend), each refreshing its
-- row every few seconds. listen_urls holds the URLs one per line.
CREATE TABLE hosts (
    host_id     TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    listen_urls TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    last_seen   INTEGER NOT NULL
);
