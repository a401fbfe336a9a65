-- One payload per (request id, org): a request id reused by another org (after its object expired)
-- is another payload, never merged into the first one's timeline. SQLite cannot drop the inline
-- UNIQUE on request_id, so the table is rebuilt, with foreign keys off meanwhile as SQLite's
-- ALTER TABLE documentation prescribes (a DROP with them on would cascade to every status). That
-- cannot happen inside a migration's transaction, so the driver runs this itself after the
-- migrations, on a connection with foreign keys off, inside its own BEGIN IMMEDIATE.
CREATE TABLE payloads_new (
    id             INTEGER PRIMARY KEY,
    request_id     TEXT    NOT NULL,
    account        TEXT    NOT NULL DEFAULT '',
    org_id         TEXT    NOT NULL DEFAULT '',
    inventory_id   TEXT    NOT NULL DEFAULT '',
    system_id      TEXT    NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    last_status_at INTEGER NOT NULL,
    last_service   TEXT    NOT NULL DEFAULT '',
    last_status    TEXT    NOT NULL DEFAULT ''
);
INSERT INTO payloads_new (id, request_id, account, org_id, inventory_id, system_id, created_at,
                          last_status_at, last_service, last_status)
    SELECT id, request_id, account, org_id, inventory_id, system_id, created_at, last_status_at,
           last_service, last_status
    FROM payloads;
DROP TABLE payloads;
ALTER TABLE payloads_new RENAME TO payloads;
CREATE UNIQUE INDEX payloads_request_org ON payloads (request_id, org_id);
CREATE INDEX payloads_org_created ON payloads (org_id, created_at);
CREATE INDEX payloads_account ON payloads (account);
CREATE INDEX payloads_inventory ON payloads (inventory_id);
CREATE INDEX payloads_system ON payloads (system_id);
CREATE INDEX payloads_created ON payloads (created_at);
