-- OpinionMarket's disputeOutcome now gives the arbiter a bounded time to rule (audit F2): it sets the market's
-- challengeEnds to the arbitration deadline, dispute time + challengeWindow, and resolveExpired on a disputed
-- market waits for max(endTime + resolutionWindow, that deadline). No event carries the deadline
-- (OutcomeDisputed is unchanged, the indexer decodes events by topic), so the fold derives it from the block
-- times: the challenge window is the proposal's challenge_ends minus its block time.
ALTER TABLE idx.markets
    ADD COLUMN proposed_time timestamptz,      -- block time of the proposal; null before one
    ADD COLUMN disputed_time timestamptz;      -- block time of the dispute; null unless disputed

UPDATE idx.markets m SET proposed_time = p.block_time
  FROM idx.ev_outcome_proposed p
 WHERE p.chain_id = m.chain_id AND p.market_id = m.market_id;
-- challenge_ends of a disputed market becomes its arbitration deadline, as a fresh index computes it.
UPDATE idx.markets m SET disputed_time = d.block_time,
                         challenge_ends = d.block_time + (m.challenge_ends - m.proposed_time)
  FROM idx.ev_outcome_disputed d
 WHERE d.chain_id = m.chain_id AND d.market_id = m.market_id;

-- Analysts: public.markets is unchanged in shape; its challenge_ends of a disputed market is now the arbitration
-- deadline (docs/sql.md). The two times stay in idx.markets (the API does not serve them).
