-- usage_events becomes append-only, like wallet_tx, and neither table can be truncated.
--
-- A usage event is the billing record of one upstream attempt, and each usage debit in
-- wallet_tx is the sum of the events linked to it: the ingestion writes the debit and
-- its events in one transaction, from the same events (internal/usage/ingest.go). With
-- both tables append-only that equality holds for good — no later statement can change
-- an event's cost, move it to another debit or remove it — so it needs no periodic
-- proof, only the one the ledger check already makes (each cached balance equals its
-- ledger). Nothing in Tollgate updates or deletes usage events; a future retention job
-- would need its own, audited path (dropping old partitions, say), not an UPDATE.
CREATE FUNCTION usage_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'usage_events is append-only'
        USING HINT = 'usage events are billing records; a correction is a new ledger entry (adjust or refund)';
END;
$$;
CREATE TRIGGER usage_events_no_update BEFORE UPDATE OR DELETE ON usage_events
    FOR EACH ROW EXECUTE FUNCTION usage_events_append_only();
CREATE TRIGGER usage_events_no_truncate BEFORE TRUNCATE ON usage_events
    FOR EACH STATEMENT EXECUTE FUNCTION usage_events_append_only();
CREATE TRIGGER wallet_tx_no_truncate BEFORE TRUNCATE ON wallet_tx
    FOR EACH STATEMENT EXECUTE FUNCTION wallet_tx_append_only();
