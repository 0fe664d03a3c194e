-- Alerts: rules owned by an API key, their triggers, and the persisted webhook queue.
-- Times are BIGINT nanoseconds (these are small operational tables, not time series).

CREATE TABLE IF NOT EXISTS alert_rules (
    id            TEXT COLLATE "C" PRIMARY KEY,
    owner         TEXT COLLATE "C" NOT NULL,
    venue         TEXT,
    symbol        TEXT    NOT NULL,
    kind          TEXT    NOT NULL
        CHECK (kind IN ('above', 'below', 'crosses', 'percent_move', 'signal')),
    level         DOUBLE PRECISION,
    percent       DOUBLE PRECISION,
    window_secs   BIGINT,
    direction     TEXT    CHECK (direction IN ('up', 'down', 'either')),
    interval      TEXT,
    signal        TEXT,
    recurring     BOOLEAN NOT NULL,
    cooldown_secs BIGINT  NOT NULL,
    hysteresis    DOUBLE PRECISION NOT NULL,
    url           TEXT    NOT NULL,
    secret        TEXT    NOT NULL,
    -- canonical text of everything that makes two rules identical
    spec          TEXT COLLATE "C" NOT NULL,
    active        BOOLEAN NOT NULL,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    fired_at      BIGINT,
    deleted_at    BIGINT
);

-- An identical active rule of the same owner is refused.
CREATE UNIQUE INDEX IF NOT EXISTS alert_rules_identical
    ON alert_rules (owner, spec) WHERE active;
CREATE INDEX IF NOT EXISTS alert_rules_owner ON alert_rules (owner, created_at);

-- One row per fired alert; the natural key makes replays idempotent.
CREATE TABLE IF NOT EXISTS alert_triggers (
    rule_id   TEXT COLLATE "C" NOT NULL,
    ts_event  BIGINT NOT NULL,
    venue     TEXT   NOT NULL,
    symbol    TEXT   NOT NULL,
    condition TEXT   NOT NULL,
    price     DOUBLE PRECISION NOT NULL,
    ts_ingest BIGINT NOT NULL,
    stored_at BIGINT NOT NULL,
    PRIMARY KEY (rule_id, ts_event)
);

-- The webhook queue: one delivery per trigger (idempotency key = rule id + trigger time).
CREATE TABLE IF NOT EXISTS alert_deliveries (
    id              TEXT COLLATE "C" PRIMARY KEY,
    rule_id         TEXT COLLATE "C" NOT NULL,
    idempotency_key TEXT COLLATE "C" NOT NULL UNIQUE,
    trigger_ts      BIGINT  NOT NULL,
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL
        CHECK (state IN ('pending', 'in_flight', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL,
    retry_base      INTEGER NOT NULL,
    next_attempt_at BIGINT  NOT NULL,
    claim           TEXT,
    claimed_until   BIGINT,
    last_error      TEXT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    delivered_at    BIGINT
);

CREATE INDEX IF NOT EXISTS alert_deliveries_due ON alert_deliveries (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS alert_deliveries_rule ON alert_deliveries (rule_id, created_at);

-- Every attempt, as shown by GET /v1/alerts/{id}/deliveries.
CREATE TABLE IF NOT EXISTS alert_delivery_attempts (
    delivery_id TEXT COLLATE "C" NOT NULL,
    attempt     INTEGER NOT NULL,
    started_at  BIGINT  NOT NULL,
    latency_us  BIGINT  NOT NULL,
    status      INTEGER,
    outcome     TEXT    NOT NULL,
    error       TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
