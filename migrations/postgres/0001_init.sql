-- Keys compare byte-wise (COLLATE "C") so prefix range scans match SQLite's ordering.
-- Barrier-encrypted key/value entries: configuration, roles, policies, tokens, intents.
CREATE TABLE entries (
    key   TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    value BYTEA NOT NULL
);

-- One row per issued credential. Only non-secret columns are in clear; the revocation
-- snapshot is barrier-encrypted. Times are unix milliseconds.
CREATE TABLE leases (
    id              TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    mount           TEXT NOT NULL,
    role_name       TEXT NOT NULL,
    connection_name TEXT NOT NULL,
    username        TEXT NOT NULL,
    owner           TEXT,
    state           TEXT NOT NULL,
    renewable       BIGINT NOT NULL,
    issue_time      BIGINT NOT NULL,
    expire_time     BIGINT NOT NULL,
    max_expire_time BIGINT NOT NULL,
    last_renewal    BIGINT,
    revocation      BYTEA NOT NULL,
    revoke_attempts BIGINT NOT NULL DEFAULT 0,
    revoke_error    TEXT,
    next_attempt    BIGINT NOT NULL
);

-- The expiry worker's query: due work ordered by time, without scanning all leases.
CREATE INDEX leases_next_attempt ON leases (next_attempt);
CREATE INDEX leases_owner ON leases (owner);
