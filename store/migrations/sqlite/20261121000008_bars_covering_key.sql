-- Kept in step with the PostgreSQL migration of the same version, which makes that
-- store's bars key a covering one. SQLite's bars table is WITHOUT ROWID: its rows already
-- live in the key's order, so there is nothing to change here.
SELECT 1;
