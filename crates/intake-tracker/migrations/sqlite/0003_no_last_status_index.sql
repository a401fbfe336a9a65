-- A payload's last_status_at changes with nearly every status it gets, and each change moved its
-- entry in this index. Retention, its only reader, finds old payloads through created_at instead
-- (created_at <= last_status_at), so updates of last_* now rewrite no index entry.
DROP INDEX IF EXISTS payloads_last_status_at;
