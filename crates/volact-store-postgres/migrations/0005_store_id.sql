-- One random id for the database, made once: the hosts sharing it put it in their usage
-- reports, so the vendor counts their one shared count once, not once per host.
CREATE TABLE store_identity (
    id TEXT COLLATE "C" NOT NULL PRIMARY KEY
);
INSERT INTO store_identity (id) VALUES ('pg-' || replace(gen_random_uuid()::text, '-', ''));
