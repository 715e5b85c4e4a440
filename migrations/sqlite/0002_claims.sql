-- Claims: a worker (or an API revoke) owns a lease until `claimed_until`; a replica that dies
-- loses its claims when they run out, and another replica takes the work over.
ALTER TABLE leases ADD COLUMN claimed_until BIGINT NOT NULL DEFAULT 0;
-- The accessor of the owning token, shown in lookups (the token itself is never stored).
ALTER TABLE leases ADD COLUMN owner_accessor TEXT;
-- Counting leases by state for metrics without scanning the table.
CREATE INDEX leases_state ON leases (state);

-- When each expiring token ends, so expired tokens (and their leases) are found by an
-- indexed query rather than by scanning every token.
CREATE TABLE token_expiry (
    id_hmac     TEXT PRIMARY KEY NOT NULL,
    expire_time BIGINT NOT NULL
);
CREATE INDEX token_expiry_time ON token_expiry (expire_time);
