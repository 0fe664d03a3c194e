-- API keys: only a SHA-256 of the secret is stored; the key is shown once at creation.
CREATE TABLE IF NOT EXISTS api_keys (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT   NOT NULL,
    secret_hash TEXT COLLATE "C" NOT NULL UNIQUE,
    scopes      TEXT   NOT NULL,
    tier        TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
