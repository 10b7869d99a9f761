-- The ledger check (job ledger_check, every 10 minutes) summed every user's whole ledger
-- on each run: a cost that grows with the ledger's history, which gains about a row per
-- request at light per-user load (one usage debit per user per ingested batch). It now
-- keeps, per user, the sum of the rows created before a point in time and adds only the
-- rows created since. The ledger is append-only (0001, 0005), so a settled sum never
-- changes; the point is kept an hour behind the check so that no transaction still open
-- can add a row before it.
CREATE TABLE ledger_checkpoints (
    user_id  bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    through  timestamptz NOT NULL, -- sum_nano covers the user's wallet_tx rows created before this
    sum_nano bigint NOT NULL
);
CREATE INDEX wallet_tx_created ON wallet_tx (created_at);
