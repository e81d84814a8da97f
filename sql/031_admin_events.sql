-- Issue 15: every change of who may do what on the contracts, for operators (GET /v1/admin/roles)
-- and analysts. The events are the audit rows the indexer already keeps in idx.ev_other (written,
-- reorged and rebuilt with every other raw event); these views name them.
--   RoleGranted / RoleRevoked / RoleAdminChanged              (OpenZeppelin AccessControl)
--   DefaultAdminTransferScheduled / ...Canceled,
--   DefaultAdminDelayChangeScheduled / ...Canceled            (AccessControlDefaultAdminRules: the single
--                                                              admin moves in two steps, after a delay)
--   Paused / Unpaused
-- Roles are keccak256 of their names (DEFAULT_ADMIN_ROLE is 0x00…00); the API names them.
CREATE INDEX ev_other_event ON idx.ev_other (chain_id, event, block_number DESC, log_index DESC);

CREATE VIEW public.admin_events AS
SELECT o.chain_id,
       o.block_number,
       o.log_index,
       hex(o.tx_hash) AS tx_hash,
       o.block_time,
       k.name AS contract,
       o.event,
       o.args ->> 'role' AS role,
       coalesce(o.args ->> 'account', o.args ->> 'newAdmin') AS account,
       o.args ->> 'sender' AS sender,
       o.args
  FROM idx.ev_other o
  LEFT JOIN idx.contracts k ON k.chain_id = o.chain_id AND k.address = o.address
 WHERE o.event IN ('RoleGranted', 'RoleRevoked', 'RoleAdminChanged',
                   'DefaultAdminTransferScheduled', 'DefaultAdminTransferCanceled',
                   'DefaultAdminDelayChangeScheduled', 'DefaultAdminDelayChangeCanceled',
                   'Paused', 'Unpaused');

-- Who holds each role now: the last grant or revoke per (contract, role, account) is a grant.
CREATE VIEW public.role_members AS
SELECT chain_id, contract, role, account, block_number AS granted_block, block_time AS granted_at, sender AS granted_by
  FROM (SELECT DISTINCT ON (chain_id, contract, role, account) *
          FROM public.admin_events
         WHERE event IN ('RoleGranted', 'RoleRevoked')
         ORDER BY chain_id, contract, role, account, block_number DESC, log_index DESC) last
 WHERE event = 'RoleGranted';

GRANT SELECT ON public.admin_events, public.role_members TO analyst, api;
