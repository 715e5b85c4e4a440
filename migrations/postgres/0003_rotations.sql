-- Scheduled rotations (static roles and root credentials): when each is next due, and who
-- holds it while it runs, so that with several replicas each rotation runs once.
CREATE TABLE rotations (
    id            TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    mount_uuid    TEXT NOT NULL,
    kind          TEXT NOT NULL,
    name          TEXT NOT NULL,
    next_rotation BIGINT NOT NULL,
    claimed_until BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX rotations_next ON rotations (next_rotation);
