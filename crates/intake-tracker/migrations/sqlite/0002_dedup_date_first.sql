-- The unique dedup index leads with the date: statuses arrive dated around now, so its inserts land
-- at the end of the index instead of at random places among every key (a random page per status
-- for the page cache and the WAL). The same uniqueness, the same ON CONFLICT (dedup_key, date).
DROP INDEX payload_statuses_dedup;
CREATE UNIQUE INDEX payload_statuses_dedup ON payload_statuses (date, dedup_key);
