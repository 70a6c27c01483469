-- The feed of the count's changes that every host follows (volact_store::feed): each
-- client row carries the id of the transaction that last wrote it. A reader takes the
-- oldest transaction still running in its snapshot (pg_snapshot_xmin) as its next
-- position: every row written by an older transaction was committed (or rolled back)
-- before that snapshot, so reading "changed >= position" next time misses nothing,
-- whatever order concurrent transactions commit in.
ALTER TABLE clients ADD COLUMN changed xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX clients_changed ON clients (changed);

-- A host reads only what it does not know: `writer` names the store (one per host
-- process) whose counted request the row shows, and a host skips its own rows.
-- Revocations are read by every host whoever wrote the row since: `revoked_changed` is
-- the transaction that last revoked or restored the client.
ALTER TABLE clients ADD COLUMN writer BIGINT;
ALTER TABLE clients ADD COLUMN revoked_changed xid8;

-- Every statement that updates a client row sets `changed` too (a trigger would do the
-- same at a cost per row measured in PERFORMANCE.md).

-- Seats held under a seat cap by requests not recorded yet: taken under one advisory
-- lock, counted with the clients, dropped after a minute (by then the request's record
-- is stored, or the request failed).
CREATE TABLE seat_holds (
    client_id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    held_at   DOUBLE PRECISION NOT NULL
);
