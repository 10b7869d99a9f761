-- usage_events' references to users, api_keys, groups, accounts and prices are checked
-- once per ingested batch instead of once per row.
--
-- A foreign key is checked row by row: five references made five lookups (and row locks)
-- per usage event, about twice the cost of inserting the row with its five index entries
-- (20,000 events in batches of 500 on the bench machine: 1.18 s with the keys, 0.41 s
-- without). At the bench's sustained rate that was PostgreSQL's largest single cost and a
-- tenth of what the whole stack spends per request. The ingestion (internal/usage/ingest.go,
-- UsageEventReferencesFound) now takes the same FOR KEY SHARE locks a foreign key takes,
-- once per distinct id of the batch, and refuses a batch naming an id that does not exist
-- (the consumer then dead-letters the offending events, as it did on a key violation).
-- What the keys also did — refuse to delete a row that usage events still name — the
-- triggers below keep. None of these rows is ever deleted by Tollgate (users and keys are
-- disabled, accounts retired, prices superseded by newer rows), so the guard only meets
-- a hand-written DELETE. TRUNCATE of a referenced table is no longer refused.
ALTER TABLE usage_events
    DROP CONSTRAINT usage_events_user_id_fkey,
    DROP CONSTRAINT usage_events_api_key_id_fkey,
    DROP CONSTRAINT usage_events_group_id_fkey,
    DROP CONSTRAINT usage_events_account_id_fkey,
    DROP CONSTRAINT usage_events_price_id_fkey;

-- usage_events_referenced refuses to delete a row whose id the usage_events column named by
-- the trigger's argument still holds, with the error a foreign key would raise (23503).
CREATE FUNCTION usage_events_referenced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    found boolean;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM usage_events WHERE %I = $1)', TG_ARGV[0])
        INTO found USING OLD.id;
    IF found THEN
        RAISE EXCEPTION 'cannot delete %: usage events reference id %', TG_TABLE_NAME, OLD.id
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'disable or retire it instead; usage history must keep what it billed';
    END IF;
    RETURN OLD;
END $$;

CREATE TRIGGER usage_events_referenced BEFORE DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION usage_events_referenced('user_id');
CREATE TRIGGER usage_events_referenced BEFORE DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION usage_events_referenced('api_key_id');
CREATE TRIGGER usage_events_referenced BEFORE DELETE ON groups
    FOR EACH ROW EXECUTE FUNCTION usage_events_referenced('group_id');
CREATE TRIGGER usage_events_referenced BEFORE DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION usage_events_referenced('account_id');
CREATE TRIGGER usage_events_referenced BEFORE DELETE ON prices
    FOR EACH ROW EXECUTE FUNCTION usage_events_referenced('price_id');
