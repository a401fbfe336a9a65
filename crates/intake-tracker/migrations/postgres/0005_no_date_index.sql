-- payload_statuses_dedup (date, dedup_key) leads with the date since 0003, so it serves every
-- range and order on the date this index served (the status lists, stats, partition pruning
-- needs no index): the plans scan it instead. Each status wrote an entry in both, in every day
-- partition; now in one. Dropping the parent's index drops each partition's.
DROP INDEX IF EXISTS payload_statuses_date;
