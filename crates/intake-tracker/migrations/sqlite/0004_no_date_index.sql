-- payload_statuses_dedup (date, dedup_key) leads with the date since 0002, so it serves every
-- range and order on the date this index served (the status lists, stats, retention): the plans
-- search it instead. Each status wrote an entry in both; now in one.
DROP INDEX IF EXISTS payload_statuses_date;
