-- The tracker's schema on PostgreSQL. payload_statuses is partitioned by range on `date`, one
-- partition per UTC day (payload_statuses_YYYYMMDD), created ahead and dropped by the tracker itself.
CREATE TABLE payloads (
    id             BIGSERIAL PRIMARY KEY,
    request_id     TEXT        NOT NULL UNIQUE,
    account        TEXT        NOT NULL DEFAULT '',
    org_id         TEXT        NOT NULL DEFAULT '',
    inventory_id   TEXT        NOT NULL DEFAULT '',
    system_id      TEXT        NOT NULL DEFAULT '',
    created_at     TIMESTAMPTZ NOT NULL,
    last_status_at TIMESTAMPTZ NOT NULL,
    last_service   TEXT        NOT NULL DEFAULT '',
    last_status    TEXT        NOT NULL DEFAULT ''
);
CREATE INDEX payloads_org_created ON payloads (org_id, created_at);
CREATE INDEX payloads_account ON payloads (account);
CREATE INDEX payloads_inventory ON payloads (inventory_id);
CREATE INDEX payloads_system ON payloads (system_id);
CREATE INDEX payloads_created ON payloads (created_at);
CREATE INDEX payloads_last_status_at ON payloads (last_status_at);

CREATE TABLE payload_statuses (
    id          BIGSERIAL,
    payload_id  BIGINT      NOT NULL REFERENCES payloads (id) ON DELETE CASCADE,
    service     TEXT        NOT NULL,
    source      TEXT,
    status      TEXT        NOT NULL,
    status_msg  TEXT        NOT NULL DEFAULT '',
    date        TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    dedup_key   TEXT        NOT NULL,
    PRIMARY KEY (id, date)
) PARTITION BY RANGE (date);
CREATE INDEX payload_statuses_payload_date ON payload_statuses (payload_id, date);
CREATE INDEX payload_statuses_service_status_date ON payload_statuses (service, status, date);
CREATE INDEX payload_statuses_date ON payload_statuses (date);
CREATE INDEX payload_statuses_created ON payload_statuses (created_at);
CREATE UNIQUE INDEX payload_statuses_dedup ON payload_statuses (dedup_key, date);
