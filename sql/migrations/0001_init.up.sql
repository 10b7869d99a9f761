-- Tollgate's schema. Money is int64 nano-USD (1e-9 USD) in every *_nano column.
-- Prices are int64 pico-USD (1e-12 USD) per token so that every public list price is an
-- exact integer; cost math rounds once, at the end (see internal/billing).

-- groups are the user-facing tiers: how a user's usage is priced and which pools serve it.
CREATE TABLE groups (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                text NOT NULL UNIQUE CHECK (name <> ''),
    description         text NOT NULL DEFAULT '',
    is_default          boolean NOT NULL DEFAULT false,
    default_concurrency integer NOT NULL DEFAULT 0 CHECK (default_concurrency >= 0), -- 0: unlimited
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
-- At most one default group.
CREATE UNIQUE INDEX groups_one_default ON groups (is_default) WHERE is_default;

-- The price factor of a group for one provider:
--   factor = multiplier_ppm / 1e6                              (no peg)
--   factor = peg_rmb_micro / live USD/CNY × multiplier_ppm/1e6 (RMB peg)
-- A missing row means factor 1.
CREATE TABLE group_price_factors (
    group_id       bigint NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    provider       text NOT NULL CHECK (provider IN ('anthropic', 'openai', 'gemini')),
    multiplier_ppm bigint NOT NULL DEFAULT 1000000 CHECK (multiplier_ppm > 0),
    peg_rmb_micro  bigint CHECK (peg_rmb_micro > 0),
    PRIMARY KEY (group_id, provider)
);

CREATE TABLE pools (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name <> ''),
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE group_pools (
    group_id bigint NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    pool_id  bigint NOT NULL REFERENCES pools (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, pool_id)
);

CREATE TABLE users (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email             text NOT NULL UNIQUE CHECK (email = lower(email) AND email LIKE '%_@_%'),
    display_name      text NOT NULL DEFAULT '',
    password_hash     text NOT NULL,
    role              text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    group_id          bigint NOT NULL REFERENCES groups (id),
    status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    email_verified_at timestamptz,
    totp_secret_enc   bytea,
    totp_enabled_at   timestamptz,
    recovery_codes    text[] NOT NULL DEFAULT '{}', -- hashes, never plaintext
    -- Cached SUM(wallet_tx.amount_nano): written only in the transaction that appends to
    -- wallet_tx, and proved equal by the periodic ledger check.
    balance_nano      bigint NOT NULL DEFAULT 0,
    concurrency       integer CHECK (concurrency >= 0),
    daily_cap_nano    bigint CHECK (daily_cap_nano > 0),
    last_login_at     timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id          bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name             text NOT NULL DEFAULT '',
    display_prefix   text NOT NULL,          -- e.g. "tg-AbCdEf…", safe to show
    hash             bytea NOT NULL UNIQUE,  -- SHA-256 of the whole key
    group_id         bigint REFERENCES groups (id), -- narrows the owner's group when set
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled', 'revoked')),
    concurrency      integer CHECK (concurrency >= 0),
    rpm              integer CHECK (rpm >= 0),
    daily_cap_nano   bigint CHECK (daily_cap_nano > 0),
    monthly_cap_nano bigint CHECK (monthly_cap_nano > 0),
    models           text[] NOT NULL DEFAULT '{}', -- allowed models; empty: all
    ip_allowlist     cidr[] NOT NULL DEFAULT '{}', -- empty: any address
    expires_at       timestamptz,
    last_used_at     timestamptz,                   -- written in batches, never per request
    created_at       timestamptz NOT NULL DEFAULT now(),
    revoked_at       timestamptz
);
CREATE INDEX api_keys_user ON api_keys (user_id, created_at DESC);

-- An account is one upstream credential. secret_enc holds the AES-GCM sealed credential
-- (an API key, or OAuth access + refresh token); egress_proxy_enc the sealed proxy URL.
CREATE TABLE accounts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text NOT NULL CHECK (name <> ''),
    provider         text NOT NULL CHECK (provider IN ('anthropic', 'openai', 'gemini')),
    kind             text NOT NULL CHECK (kind IN ('api_key', 'oauth')),
    base_url         text NOT NULL,
    secret_enc       bytea NOT NULL,
    egress_proxy_enc bytea,
    priority         integer NOT NULL DEFAULT 100, -- lower runs first
    weight           integer NOT NULL DEFAULT 1 CHECK (weight > 0),
    max_concurrency  integer NOT NULL DEFAULT 0 CHECK (max_concurrency >= 0), -- 0: unlimited
    models           text[] NOT NULL DEFAULT '{}', -- allow-list; empty: all
    model_map        jsonb NOT NULL DEFAULT '{}',  -- requested model -> upstream model
    state            text NOT NULL DEFAULT 'active'
                     CHECK (state IN ('active', 'cooling', 'limited', 'error', 'disabled')),
    state_reason     text NOT NULL DEFAULT '',
    state_until      timestamptz,
    ratelimit        jsonb NOT NULL DEFAULT '{}',  -- last seen provider window snapshot
    token_expires_at timestamptz,                  -- OAuth access token expiry
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pool_accounts (
    pool_id    bigint NOT NULL REFERENCES pools (id) ON DELETE CASCADE,
    account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    PRIMARY KEY (pool_id, account_id)
);

-- Prices per token in pico-USD. A model matches an 'exact' row by name or a 'prefix' row
-- by prefix (longest prefix wins; exact beats prefix). The row in force is the one with
-- the latest effective_from not after the request: edits append rows, history stays.
-- An operator's fallback rule is a prefix row with an empty pattern.
-- Long-context tiers: when the prompt (input + cache tokens) exceeds tier_threshold, the
-- *_above prices apply to the whole request, as the providers bill it.
CREATE TABLE prices (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider             text NOT NULL CHECK (provider IN ('anthropic', 'openai', 'gemini')),
    pattern              text NOT NULL,
    match                text NOT NULL DEFAULT 'exact' CHECK (match IN ('exact', 'prefix')),
    effective_from       timestamptz NOT NULL DEFAULT now(),
    input_pico           bigint NOT NULL CHECK (input_pico >= 0),
    output_pico          bigint NOT NULL CHECK (output_pico >= 0),
    cache_write_5m_pico  bigint NOT NULL CHECK (cache_write_5m_pico >= 0),
    cache_write_1h_pico  bigint NOT NULL CHECK (cache_write_1h_pico >= 0),
    cache_read_pico      bigint NOT NULL CHECK (cache_read_pico >= 0),
    tier_threshold       bigint CHECK (tier_threshold > 0),
    input_above_pico          bigint,
    output_above_pico         bigint,
    cache_write_5m_above_pico bigint,
    cache_write_1h_above_pico bigint,
    cache_read_above_pico     bigint,
    note                 text NOT NULL DEFAULT '',
    created_by           bigint REFERENCES users (id),
    created_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, pattern, match, effective_from),
    CHECK (match = 'prefix' OR pattern <> '')
);

-- Append-only ledger. A user's balance is SUM(amount_nano) of their rows.
CREATE TABLE wallet_tx (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id),
    amount_nano bigint NOT NULL CHECK (amount_nano <> 0),
    kind        text NOT NULL CHECK (kind IN ('topup', 'usage', 'adjust', 'refund', 'redeem')),
    ref         text NOT NULL, -- what caused it: order, usage batch, admin action, code
    note        text NOT NULL DEFAULT '',
    actor_id    bigint REFERENCES users (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, ref) -- the idempotency key of every credit and debit
);
CREATE INDEX wallet_tx_user ON wallet_tx (user_id, id DESC);

CREATE FUNCTION wallet_tx_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'wallet_tx is append-only';
END;
$$;
CREATE TRIGGER wallet_tx_no_update BEFORE UPDATE OR DELETE ON wallet_tx
    FOR EACH ROW EXECUTE FUNCTION wallet_tx_append_only();

-- One row per upstream attempt that consumed tokens. request_id is the idempotency key:
-- ingestion inserts with ON CONFLICT DO NOTHING and debits only what it inserted.
-- wallet_tx_id links each event to the ledger row that debited it (one per user per batch).
-- Not partitioned: a global unique request_id is worth more than partition pruning at this
-- size; the retention job deletes old rows by time.
CREATE TABLE usage_events (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id            text NOT NULL UNIQUE,
    created_at            timestamptz NOT NULL, -- when the attempt completed
    user_id               bigint NOT NULL REFERENCES users (id),
    api_key_id            bigint NOT NULL REFERENCES api_keys (id),
    group_id              bigint NOT NULL REFERENCES groups (id),
    account_id            bigint NOT NULL REFERENCES accounts (id), -- accounts are retired, not deleted
    provider              text NOT NULL,
    endpoint              text NOT NULL,
    model_requested       text NOT NULL,
    model_upstream        text NOT NULL,
    input_tokens          bigint NOT NULL DEFAULT 0,
    output_tokens         bigint NOT NULL DEFAULT 0,
    cache_write_5m_tokens bigint NOT NULL DEFAULT 0,
    cache_write_1h_tokens bigint NOT NULL DEFAULT 0,
    cache_read_tokens     bigint NOT NULL DEFAULT 0,
    reasoning_tokens      bigint NOT NULL DEFAULT 0, -- informational; included in output
    official_cost_nano    bigint NOT NULL,
    billed_cost_nano      bigint NOT NULL,
    factor_num            bigint NOT NULL,
    factor_den            bigint NOT NULL CHECK (factor_den > 0),
    price_id              bigint NOT NULL REFERENCES prices (id),
    fx_rate_micro         bigint NOT NULL DEFAULT 0, -- USD/CNY used for an RMB peg; 0: none
    status                integer NOT NULL,
    stream                boolean NOT NULL,
    ttfb_ms               integer NOT NULL DEFAULT 0,
    duration_ms           integer NOT NULL DEFAULT 0,
    client_ip             text NOT NULL DEFAULT '',
    user_agent            text NOT NULL DEFAULT '',
    error_class           text NOT NULL DEFAULT '',
    attempt               integer NOT NULL DEFAULT 1,
    wallet_tx_id          bigint REFERENCES wallet_tx (id),
    ingested_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usage_events_user_time ON usage_events (user_id, created_at DESC);
CREATE INDEX usage_events_key_time ON usage_events (api_key_id, created_at DESC);
CREATE INDEX usage_events_time ON usage_events (created_at);

-- Hourly rollups for dashboards, rebuilt idempotently from usage_events for any window.
CREATE TABLE usage_hourly (
    hour                  timestamptz NOT NULL,
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
    PRIMARY KEY (hour, user_id, api_key_id, account_id, model)
);
CREATE INDEX usage_hourly_user ON usage_hourly (user_id, hour DESC);

CREATE TABLE orders (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id           bigint NOT NULL REFERENCES users (id),
    provider          text NOT NULL CHECK (provider IN ('alipay', 'mock')),
    out_trade_no      text NOT NULL UNIQUE,
    amount_cny_fen    bigint NOT NULL CHECK (amount_cny_fen > 0),
    amount_usd_nano   bigint NOT NULL CHECK (amount_usd_nano > 0),
    fx_rate_micro     bigint NOT NULL CHECK (fx_rate_micro > 0), -- frozen at creation
    status            text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'paid', 'expired', 'failed')),
    provider_trade_no text,
    notify_raw        text,  -- the verified notification, as received
    wallet_tx_id      bigint REFERENCES wallet_tx (id), -- set once, when credited
    created_at        timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    paid_at           timestamptz
);
CREATE INDEX orders_user ON orders (user_id, created_at DESC);
CREATE INDEX orders_pending ON orders (expires_at) WHERE status = 'pending';

CREATE TABLE fx_rates (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    base       text NOT NULL DEFAULT 'USD',
    quote      text NOT NULL DEFAULT 'CNY',
    rate_micro bigint NOT NULL CHECK (rate_micro > 0), -- quote units per base unit × 1e6
    source     text NOT NULL,
    fetched_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fx_rates_latest ON fx_rates (base, quote, fetched_at DESC);

CREATE TABLE probes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    model      text NOT NULL,
    ok         boolean NOT NULL,
    status     integer NOT NULL DEFAULT 0,
    latency_ms integer NOT NULL DEFAULT 0,
    error      text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX probes_account_time ON probes (account_id, created_at DESC);

CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor_id    bigint REFERENCES users (id),
    action      text NOT NULL,
    target_type text NOT NULL DEFAULT '',
    target_id   text NOT NULL DEFAULT '',
    detail      jsonb NOT NULL DEFAULT '{}',
    ip          text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_time ON audit_log (created_at DESC);

CREATE TABLE settings (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_by bigint REFERENCES users (id),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- scs/pgxstore's table.
CREATE TABLE sessions (
    token  text PRIMARY KEY,
    data   bytea NOT NULL,
    expiry timestamptz NOT NULL
);
CREATE INDEX sessions_expiry_idx ON sessions (expiry);
