-- Kept in step with the SQLite migration of the same version, which reorders that store's
-- bars key (symbol first) and raw quotes key (time first). Here both already are: the
-- covering bars key of version 8, and the quotes key of version 2.
SELECT 1;
