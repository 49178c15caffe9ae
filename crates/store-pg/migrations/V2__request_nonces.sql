-- Issue 13: the request nonces every node checks, shared so that a request replayed to
-- another node is refused too. Every signed request writes here, and a nonce must not cost
-- a write to disk: the tables are UNLOGGED (no WAL record, no fsync at commit). The price is
-- that crash recovery, and a standby's promotion, empty them: see request_nonce_window.
CREATE UNLOGGED TABLE request_nonces (
    -- vellum_store::backend::nonce_key(device, nonce, timestamp)
    key BYTEA PRIMARY KEY,
    -- The request's signed timestamp (Unix seconds).
    signed_at BIGINT NOT NULL
);
-- Dropping the rows the window has passed.
CREATE INDEX request_nonces_by_time ON request_nonces (signed_at);

-- One row. Nonces of timestamps before forgotten_before were dropped (such requests are
-- refused as expired); nonces are remembered since started_at (earlier timestamps are
-- refused as before the start). Emptied with request_nonces, the row is missing after they
-- were lost, and the first node to notice writes it again with a new started_at. (Not
-- pg_postmaster_start_time(): a crash restart keeps the postmaster, and a promoted standby
-- may have run for months, yet both come up with these tables empty.)
CREATE UNLOGGED TABLE request_nonce_window (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    forgotten_before BIGINT NOT NULL,
    started_at BIGINT NOT NULL
);
INSERT INTO request_nonce_window (id, forgotten_before, started_at)
VALUES (1, 0, CAST(EXTRACT(EPOCH FROM now()) AS BIGINT) + 1);
