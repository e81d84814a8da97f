-- Review s19 h2: 083 stood for what was deleted before it with the row before each chain's oldest. A chain
-- whose every outbox row had been deleted before 083 had no oldest row, got no watermark, and a resume
-- from before those rows still looked complete (`replayed`, 0 events). Such a chain (indexed, no outbox
-- row, no watermark) may have lost any seq issued so far: its watermark is the highest seq issued. A resume
-- of it from an older seq is refused (since_too_old, the client reloads), never replayed with a gap.
INSERT INTO idx.outbox_pruned (chain_id, pruned_through)
SELECT c.chain_id, s.issued
  FROM idx.checkpoints c,
       (SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS issued FROM idx.outbox_seq_seq) s
 WHERE s.issued > 0
   AND NOT EXISTS (SELECT 1 FROM idx.outbox o WHERE o.chain_id = c.chain_id)
ON CONFLICT (chain_id) DO NOTHING;
