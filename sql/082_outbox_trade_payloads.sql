-- A trade's feed message (market:trade, shares:trade) is built from its event row when it is read, not
-- written by the indexer: every field of it is in idx.ev_trade / idx.ev_shares_traded, committed in the
-- same transaction as the outbox row. The indexer writes such rows with payload NULL and the readers
-- (the API's outbox pump and the feed's resume) read idx.outbox_messages, whose payload is the stored
-- one or, when NULL, the event row's. Same names and formats as the payloads the indexer built before
-- (tests/indexer/test_outbox_payloads.py compares them, hypothesis): in a backfill's tail, where every
-- event gets a message, formatting them was a quarter of the writer's fold (docs/benchmarks.md, item 7
-- session 17). Every other message keeps its stored payload.
ALTER TABLE idx.outbox ALTER COLUMN payload DROP NOT NULL;
-- Only those two may omit it (review h1: a NULL payload of any other event was accepted and relayed as
-- `data: null`). NOT VALID: every row already here has one (the column was NOT NULL until now), so the
-- migration does not scan a large outbox under its lock.
ALTER TABLE idx.outbox ADD CONSTRAINT outbox_payload_stored
    CHECK (payload IS NOT NULL OR event IN ('market:trade', 'shares:trade')) NOT VALID;
COMMENT ON COLUMN idx.outbox.payload IS
    'the message; NULL for market:trade and shares:trade, built from the event row by idx.outbox_messages';

-- Base units → decimal text with 6 decimals, as the API's JSON (`usdc` of indexer/fold.py).
CREATE FUNCTION idx.usdc_text(x numeric) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT (x * 0.000001)::text $$;

-- num/den rounded down to 6 decimals, as decimal text ('0.000000' for den <= 0); exact for every
-- numeric(78,0) (div, then the exact scaling of public.usdc). Not STRICT, nor event_id_json: PostgreSQL
-- inlines a STRICT SQL function only when its body is strict too (a CASE, json_build_object are not),
-- and the call made each message 1.6x as long to build (docs/benchmarks.md, item 7 session 17).
CREATE FUNCTION idx.ratio6_text(num numeric, den numeric) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN den <= 0 THEN '0.000000' ELSE (div(num * 1000000, den) * 0.000001)::text END $$;

-- A time as the API's JSON: ISO 8601 in UTC with a Z, whole seconds.
CREATE FUNCTION idx.iso_text(t timestamptz) RETURNS text
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    AS $$ SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') $$;

-- What every event's message starts with: id, tx_hash, time.
CREATE FUNCTION idx.event_id_json(chain_id bigint, block_number bigint, log_index int, block_hash bytea) RETURNS json
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT json_build_object('chain_id', chain_id, 'block_number', block_number, 'log_index', log_index,
                                   'block_hash', '0x' || encode(block_hash, 'hex')) $$;

CREATE FUNCTION idx.trade_payload(t idx.ev_trade) RETURNS json
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
SELECT json_build_object(
    'id', idx.event_id_json(t.chain_id, t.block_number, t.log_index, t.block_hash),
    'tx_hash', '0x' || encode(t.tx_hash, 'hex'),
    'time', idx.iso_text(t.block_time),
    'market_id', t.market_id,
    'trader', '0x' || encode(t.trader, 'hex'),
    'side', CASE WHEN t.is_buy THEN 'buy' ELSE 'sell' END,
    'outcome', CASE WHEN t.outcome = 1 THEN 'yes' ELSE 'no' END,
    'collateral', idx.usdc_text(t.collateral),
    'shares', idx.usdc_text(t.shares),
    'fee', idx.usdc_text(t.fee),
    'price', idx.ratio6_text(t.collateral, t.shares),
    'yes_price_after', idx.ratio6_text(t.no_reserve, t.yes_reserve + t.no_reserve),
    'yes_reserve', idx.usdc_text(t.yes_reserve),
    'no_reserve', idx.usdc_text(t.no_reserve),
    'yes_price', idx.ratio6_text(t.no_reserve, t.yes_reserve + t.no_reserve),
    'no_price', idx.ratio6_text(t.yes_reserve, t.yes_reserve + t.no_reserve),
    'trader_yes', idx.usdc_text(t.trader_yes),
    'trader_no', idx.usdc_text(t.trader_no))
$$;

CREATE FUNCTION idx.shares_payload(s idx.ev_shares_traded) RETURNS json
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
SELECT json_build_object(
    'id', idx.event_id_json(s.chain_id, s.block_number, s.log_index, s.block_hash),
    'tx_hash', '0x' || encode(s.tx_hash, 'hex'),
    'time', idx.iso_text(s.block_time),
    'creator', '0x' || encode(s.creator, 'hex'),
    'trader', '0x' || encode(s.trader, 'hex'),
    'side', CASE WHEN s.is_buy THEN 'buy' ELSE 'sell' END,
    'shares', s.amount::text,
    'price', idx.usdc_text(s.price),
    'protocol_fee', idx.usdc_text(s.protocol_fee),
    'creator_fee', idx.usdc_text(s.creator_fee),
    'dividend_fee', idx.usdc_text(s.dividend_fee),
    'total', idx.usdc_text(CASE WHEN s.is_buy THEN s.price + s.protocol_fee + s.creator_fee + s.dividend_fee
                                ELSE s.price - s.protocol_fee - s.creator_fee - s.dividend_fee END),
    'supply_after', s.supply::text,
    'trader_shares', s.trader_shares::text,
    'pool', idx.usdc_text(s.pool),
    'distributed', idx.usdc_text(s.distributed),
    'trader_pending', (s.trader_pending_old + s.trader_pending_new)::text,
    -- unix seconds; 0: nothing pending; past year 9999 (no real 00:00) '' as the indexer's iso()
    'trader_earns_from', CASE WHEN s.trader_earns_from = 0 THEN NULL
                              WHEN s.trader_earns_from > 253402300799 THEN ''
                              ELSE idx.iso_text(to_timestamp(s.trader_earns_from::double precision)) END)
$$;

-- The outbox as the feed reads it: every column of idx.outbox, the payload filled in from the event row
-- where the indexer left it NULL (the block hash too: a reorg replaces a position's row). The writer keeps
-- the payloads of rows whose event rows it deletes (a reorg's removed blocks, a reset): a payload stays NULL
-- only if its event row was deleted by hand.
CREATE VIEW idx.outbox_messages AS
SELECT o.seq, o.chain_id, o.event, o.rooms, o.block_number, o.log_index, o.block_hash, o.created_at,
       -- subqueries, not joins: each is a primary-key probe whatever the statistics say, and runs only for
       -- a row that has no payload and is returned (a page of the pump, a resume's filtered rows)
       coalesce(o.payload, CASE o.event
           WHEN 'market:trade' THEN
               (SELECT idx.trade_payload(t) FROM idx.ev_trade t
                 WHERE t.chain_id = o.chain_id AND t.block_number = o.block_number AND t.log_index = o.log_index
                   AND t.block_hash = o.block_hash)
           WHEN 'shares:trade' THEN
               (SELECT idx.shares_payload(s) FROM idx.ev_shares_traded s
                 WHERE s.chain_id = o.chain_id AND s.block_number = o.block_number AND s.log_index = o.log_index
                   AND s.block_hash = o.block_hash)
       END) AS payload
  FROM idx.outbox o;
GRANT SELECT ON idx.outbox_messages TO api;
