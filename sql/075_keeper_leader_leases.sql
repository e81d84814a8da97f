-- The leader's lease, renewed by its heartbeat (keeper/leader.py). The lock session's
-- idle_session_timeout frees the lock of a leader paused between queries; a leader paused in the
-- middle of one keeps an "active" session the server never ends. A standby that finds the lease
-- older than twice keeper.leader_lease_s ends the session holding the lock (pg_terminate_backend),
-- and the lock goes with it. A table of its own, so that the heartbeat's write never waits for the
-- ledger writes that hold keeper.leaders FOR SHARE (the fencing check).
CREATE TABLE keeper.leader_leases (
    chain_id    bigint PRIMARY KEY,
    epoch       bigint      NOT NULL,
    backend_pid int         NOT NULL,           -- the lock session (pg_backend_pid())
    renewed_at  timestamptz NOT NULL DEFAULT now()
);
