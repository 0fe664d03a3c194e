-- Alerts: rules owned by an API key, their triggers, and the persisted webhook queue.
-- SQLite twin of migrations/postgres/20261121000004_alerts.sql. Times are nanoseconds.

CREATE TABLE IF NOT EXISTS alert_rules (
    id            TEXT    PRIMARY KEY,
    owner         TEXT    NOT NULL,
    venue         TEXT,
    symbol        TEXT    NOT NULL,
    kind          TEXT    NOT NULL
        CHECK (kind IN ('above', 'below', 'crosses', 'percent_move', 'signal')),
    level         REAL,
    percent       REAL,
    window_secs   INTEGER,
    direction     TEXT    CHECK (direction IN ('up', 'down', 'either')),
    interval      TEXT,
    signal        TEXT,
    recurring     INTEGER NOT NULL,
    cooldown_secs INTEGER NOT NULL,
    hysteresis    REAL    NOT NULL,
    url           TEXT    NOT NULL,
    secret        TEXT    NOT NULL,
    -- canonical text of everything that makes two rules identical
    spec          TEXT    NOT NULL,
    active        INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    fired_at      INTEGER,
    deleted_at    INTEGER
);

-- An identical active rule of the same owner is refused.
CREATE UNIQUE INDEX IF NOT EXISTS alert_rules_identical
    ON alert_rules (owner, spec) WHERE active = 1;
CREATE INDEX IF NOT EXISTS alert_rules_owner ON alert_rules (owner, created_at);

-- One row per fired alert; the natural key makes replays idempotent.
CREATE TABLE IF NOT EXISTS alert_triggers (
    rule_id   TEXT    NOT NULL,
    ts_event  INTEGER NOT NULL,
    venue     TEXT    NOT NULL,
    symbol    TEXT    NOT NULL,
    condition TEXT    NOT NULL,
    price     REAL    NOT NULL,
    ts_ingest INTEGER NOT NULL,
    stored_at INTEGER NOT NULL,
    PRIMARY KEY (rule_id, ts_event)
) WITHOUT ROWID;

-- The webhook queue: one delivery per trigger (idempotency key = rule id + trigger time).
CREATE TABLE IF NOT EXISTS alert_deliveries (
    id              TEXT    PRIMARY KEY,
    rule_id         TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL UNIQUE,
    trigger_ts      INTEGER NOT NULL,
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL
        CHECK (state IN ('pending', 'in_flight', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL,
    retry_base      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    claim           TEXT,
    claimed_until   INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    delivered_at    INTEGER
);

CREATE INDEX IF NOT EXISTS alert_deliveries_due ON alert_deliveries (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS alert_deliveries_rule ON alert_deliveries (rule_id, created_at);

-- Every attempt, as shown by GET /v1/alerts/{id}/deliveries.
CREATE TABLE IF NOT EXISTS alert_delivery_attempts (
    delivery_id TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    latency_us  INTEGER NOT NULL,
    status      INTEGER,
    outcome     TEXT    NOT NULL,
    error       TEXT,
    PRIMARY KEY (delivery_id, attempt)
) WITHOUT ROWID;
