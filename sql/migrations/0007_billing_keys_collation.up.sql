-- The idempotency keys of billing compare byte by byte (collation "C"): usage events'
-- request_id, and the ledger's (kind, ref).
--
-- They are opaque ASCII tokens that nothing sorts for people. Under the database's
-- default collation, which on most installations is a language's (en_US.UTF-8 and the
-- like), every comparison in their unique indexes went through the locale's rules. Each
-- ingested event is looked up by request id (the batch's already-stored check) and
-- inserted into that index, a score of comparisons each; each batch adds a ledger row per
-- user, so with many users nearly as many (kind, ref) entries. In psql, 20,000 events in
-- batches of 500 into a table with the same unique index took 215–280 ms with an
-- "en-US-x-icu" column against 165–170 ms with "C". (The bench and the tests run on a
-- cluster created without a locale, where the default already is "C".)
--
-- Changing only the collation keeps the tables as they are and rebuilds the indexes.
ALTER TABLE usage_events ALTER COLUMN request_id TYPE text COLLATE "C";
ALTER TABLE wallet_tx ALTER COLUMN kind TYPE text COLLATE "C", ALTER COLUMN ref TYPE text COLLATE "C";
