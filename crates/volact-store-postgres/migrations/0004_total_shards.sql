-- Totals were one row per result, so every batch of every host updated the same few rows
-- and waited for the other batches' commits: one batch at a time across all hosts.
-- Sixteen rows per result let batches commit side by side; readers add them up.
ALTER TABLE result_totals ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE result_totals DROP CONSTRAINT result_totals_pkey;
ALTER TABLE result_totals ADD PRIMARY KEY (result, shard);
