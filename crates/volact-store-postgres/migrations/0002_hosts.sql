-- The hosts sharing this database, each refreshing its row every few seconds.
CREATE TABLE hosts (
    host_id     TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name        TEXT   NOT NULL,
    listen_urls TEXT[] NOT NULL,
    version     TEXT   NOT NULL,
    last_seen   BIGINT NOT NULL
);
