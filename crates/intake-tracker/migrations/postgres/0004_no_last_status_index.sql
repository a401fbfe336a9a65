-- A payload's last_status_at changes with nearly every status it gets: with this index, each change
-- was a new row version with a new entry in every index of payloads. Retention, its only reader,
-- finds old payloads through created_at instead (created_at <= last_status_at). Without it an
-- update of last_* changes no indexed column, and with room left on each page (fillfactor; new
-- pages only) PostgreSQL updates the row in place (HOT), touching no index.
DROP INDEX IF EXISTS payloads_last_status_at;
ALTER TABLE payloads SET (fillfactor = 75);
