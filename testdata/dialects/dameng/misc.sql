-- Golden SQL: dialect dameng (dbwarden-odbc), operation verify_connection, renew, selection.
-- The connection check, the renew default (none: DM's ALLOW_DATETIME is unverified, so renewal changes nothing and revocation ends access), and plugin selection.
-- Not run against a DM server here: review against DM's documentation.
-- Regenerate: DBWARDEN_BLESS=1 cargo test -p dbwarden-odbc --test golden

-- case: verify_connection
SELECT 1 FROM DUAL;

-- case: renew (default)
-- no statement

-- case: selection
--   plugin_name: dameng-database-plugin
--   details: {}
-- dialect: dameng, type: dameng

-- case: selection
--   plugin_name: odbc-database-plugin
--   details: {"dialect":"dameng"}
-- dialect: dameng, type: dameng

-- case: selection
--   plugin_name: dameng-database-plugin
--   details: {"dialect":"mysql"}
-- refused: invalid connection configuration: dameng-database-plugin always uses the dameng dialect; remove dialect = "mysql" or use odbc-database-plugin
