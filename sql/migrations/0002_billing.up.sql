-- Billing additions: daily usage rollups and redeem codes.

-- Daily rollups (UTC days) for dashboards, rebuilt idempotently from usage_hourly by the
-- usage_rollup job right after it rebuilds the hours, so a day is the sum of its hours.
CREATE TABLE usage_daily (
    day                   date NOT NULL, -- UTC
    user_id               bigint NOT NULL,
    api_key_id            bigint NOT NULL,
    account_id            bigint NOT NULL,
    model                 text NOT NULL,
    requests              bigint NOT NULL,
    input_tokens          bigint NOT NULL,
    output_tokens         bigint NOT NULL,
    cache_write_tokens    bigint NOT NULL,
    cache_read_tokens     bigint NOT NULL,
    official_cost_nano    bigint NOT NULL,
    billed_cost_nano      bigint NOT NULL,
    PRIMARY KEY (day, user_id, api_key_id, account_id, model)
);
CREATE INDEX usage_daily_user ON usage_daily (user_id, day DESC);

-- Redeem codes credit a wallet once per user. Codes are secrets: only their SHA-256 is
-- stored (the admin sees the plaintext once, when generating), with a short display
-- prefix to recognise them by. A batch is the label codes were generated under.
CREATE TABLE redeem_codes (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch          text NOT NULL CHECK (batch <> ''),
    code_hash      bytea NOT NULL UNIQUE,
    display_prefix text NOT NULL,
    value_nano     bigint NOT NULL CHECK (value_nano > 0),
    max_uses       integer NOT NULL DEFAULT 1 CHECK (max_uses >= 1),
    used_count     integer NOT NULL DEFAULT 0 CHECK (used_count >= 0 AND used_count <= max_uses),
    expires_at     timestamptz,
    created_by     bigint REFERENCES users (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    disabled_at    timestamptz
);
CREATE INDEX redeem_codes_batch ON redeem_codes (batch);

-- One row per redemption; the ledger row it credited is wallet_tx (kind 'redeem',
-- ref 'redeem:<code id>:<user id>').
CREATE TABLE redeem_uses (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code_id      bigint NOT NULL REFERENCES redeem_codes (id),
    user_id      bigint NOT NULL REFERENCES users (id),
    wallet_tx_id bigint NOT NULL REFERENCES wallet_tx (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (code_id, user_id)
);
CREATE INDEX redeem_uses_user ON redeem_uses (user_id, created_at DESC);
