-- Activations now reach these tables from the journal in large batches (write-behind),
-- and every index entry that moves to a random place costs a page written per
-- activation. These three did, for reads only administrators make:
-- * clients_last_seen: the inventory listing, newest first, now sorts a scan of the
--   inventory (a top-N sort: about 0.15 s for a million clients);
-- * clients_application_last_counted: the start-up rebuild and the count by application
--   already read the table in rowid order;
-- * events_client_id: one client's events are found walking the log backwards from the
--   newest, stopping at the limit.
DROP INDEX IF EXISTS clients_last_seen;
DROP INDEX IF EXISTS clients_application_last_counted;
DROP INDEX IF EXISTS events_client_id;
