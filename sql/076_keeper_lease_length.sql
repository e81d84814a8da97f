-- Each leader writes its own keeper.leader_lease_s with its lease: a standby judges a holder by the
-- holder's lease, not its own (instances configured differently, e.g. during a rollout, would otherwise
-- end a healthy leader with a longer lease every time it renewed later than the standby's twice-lease).
-- Rows written before this migration: the default lease.
ALTER TABLE keeper.leader_leases ADD COLUMN lease_s double precision NOT NULL DEFAULT 30;
