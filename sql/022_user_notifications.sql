-- One list of a user's notifications: event notifications derived by the indexer
-- (idx.notifications) and time-based ones the keeper emits (keeper.notifications, e.g.
-- market_ending_soon). Keeper notifications are unique per (kind, market, recipient), so their
-- identity in this view is block_number = 0 (no contract event is ever at block 0) and
-- log_index = market_id; read marks (api.notification_reads) use the same identity.
CREATE VIEW api.user_notifications AS
SELECT n.chain_id, n.recipient, n.block_number, n.log_index, n.kind, n.title, n.message, n.market_id,
       n.creator, n.amount, n.block_time AS time
  FROM idx.notifications n
UNION ALL
SELECT k.chain_id, k.recipient, 0::bigint, k.market_id::int, k.kind, k.title, k.message, k.market_id,
       NULL::bytea, NULL::numeric(78,0), k.created_at
  FROM keeper.notifications k;

GRANT SELECT ON api.user_notifications TO api, analyst;
