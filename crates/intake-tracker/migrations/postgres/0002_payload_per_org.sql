-- One payload per (request id, org): a request id reused by another org (after its object expired)
-- is another payload, never merged into the first one's timeline.
ALTER TABLE payloads DROP CONSTRAINT payloads_request_id_key;
CREATE UNIQUE INDEX payloads_request_org ON payloads (request_id, org_id);
