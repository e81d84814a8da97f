-- Platform statistics maintained incrementally, in the indexer's own transactions, by
-- statement-level triggers on the raw event tables: one grouped upsert per batch (transition
-- tables), and the same in reverse when a reorg deletes events. /v1/stats reads these instead of
-- scanning the window's raw events (0.5-2.3 s over 10M trades before).
--
--   agg.platform_minutes   additive totals per minute; a window sums at most 43,200 rows (30 d)
--   agg.user_last_active   each user's latest trade (market or shares); "active in the window" is
--                          an index range count; a reorg recomputes the affected users' latest
--
-- Windows are aligned to the minute: "24h" counts the minutes from date_trunc('minute', now() - 24 h).
--
-- During an initial sync (the indexer has deferred its secondary indexes, idx.deferred_indexes is
-- not empty) the triggers do nothing: maintaining the users' activity row by row would cost the
-- backfill's COPYs ~40 % (bench/agg_triggers). Afterwards one pass rebuilds both tables from the
-- raw events (agg.rebuild_platform, see agg.rebuild_if_pending).

CREATE TABLE agg.platform_minutes (
    chain_id              bigint NOT NULL,
    minute                timestamptz NOT NULL,
    trades                bigint NOT NULL DEFAULT 0,
    volume                numeric(78,0) NOT NULL DEFAULT 0,   -- market trades' collateral, base units
    fees                  numeric(78,0) NOT NULL DEFAULT 0,
    share_trades          bigint NOT NULL DEFAULT 0,
    share_volume          numeric(78,0) NOT NULL DEFAULT 0,   -- curve price excl. fees
    markets_created       bigint NOT NULL DEFAULT 0,
    markets_resolved      bigint NOT NULL DEFAULT 0,
    dividends_distributed numeric(78,0) NOT NULL DEFAULT 0,
    PRIMARY KEY (chain_id, minute)
);

CREATE TABLE agg.user_last_active (
    chain_id bigint NOT NULL,
    address  bytea NOT NULL,
    last_at  timestamptz NOT NULL,
    PRIMARY KEY (chain_id, address)
);
CREATE INDEX user_last_active_at ON agg.user_last_active (chain_id, last_at);

-- ---------------------------------------------------------------- per-minute totals

CREATE FUNCTION agg.deferred() RETURNS boolean LANGUAGE sql STABLE AS
  $$ SELECT EXISTS (SELECT 1 FROM idx.deferred_indexes) $$;

-- One row while a rebuild is owed (set when indexes are deferred). Whoever deletes it rebuilds, so
-- two transactions never rebuild at once (the second waits on that row, then finds it gone).
CREATE TABLE agg.rebuild_pending (pending boolean PRIMARY KEY CHECK (pending));

CREATE FUNCTION agg.count_trades() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE s int := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
BEGIN
  IF agg.deferred() OR agg.rebuild_if_pending() THEN RETURN NULL; END IF;
  INSERT INTO agg.platform_minutes AS p (chain_id, minute, trades, volume, fees)
  SELECT chain_id, date_trunc('minute', block_time), s * count(*), s * sum(collateral), s * sum(fee)
    FROM changed GROUP BY 1, 2
  ON CONFLICT (chain_id, minute) DO UPDATE
     SET trades = p.trades + EXCLUDED.trades, volume = p.volume + EXCLUDED.volume, fees = p.fees + EXCLUDED.fees;
  RETURN NULL;
END $$;

CREATE FUNCTION agg.count_share_trades() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE s int := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
BEGIN
  IF agg.deferred() OR agg.rebuild_if_pending() THEN RETURN NULL; END IF;
  INSERT INTO agg.platform_minutes AS p (chain_id, minute, share_trades, share_volume)
  SELECT chain_id, date_trunc('minute', block_time), s * count(*), s * sum(price) FROM changed GROUP BY 1, 2
  ON CONFLICT (chain_id, minute) DO UPDATE
     SET share_trades = p.share_trades + EXCLUDED.share_trades, share_volume = p.share_volume + EXCLUDED.share_volume;
  RETURN NULL;
END $$;

CREATE FUNCTION agg.count_markets_created() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE s int := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
BEGIN
  IF agg.deferred() OR agg.rebuild_if_pending() THEN RETURN NULL; END IF;
  INSERT INTO agg.platform_minutes AS p (chain_id, minute, markets_created)
  SELECT chain_id, date_trunc('minute', block_time), s * count(*) FROM changed GROUP BY 1, 2
  ON CONFLICT (chain_id, minute) DO UPDATE SET markets_created = p.markets_created + EXCLUDED.markets_created;
  RETURN NULL;
END $$;

CREATE FUNCTION agg.count_markets_resolved() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE s int := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
BEGIN
  IF agg.deferred() OR agg.rebuild_if_pending() THEN RETURN NULL; END IF;
  INSERT INTO agg.platform_minutes AS p (chain_id, minute, markets_resolved)
  SELECT chain_id, date_trunc('minute', block_time), s * count(*) FROM changed GROUP BY 1, 2
  ON CONFLICT (chain_id, minute) DO UPDATE SET markets_resolved = p.markets_resolved + EXCLUDED.markets_resolved;
  RETURN NULL;
END $$;

CREATE FUNCTION agg.count_dividends() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE s int := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
BEGIN
  IF agg.deferred() OR agg.rebuild_if_pending() THEN RETURN NULL; END IF;
  INSERT INTO agg.platform_minutes AS p (chain_id, minute, dividends_distributed)
  SELECT chain_id, date_trunc('minute', block_time), s * sum(amount) FROM changed GROUP BY 1, 2
  ON CONFLICT (chain_id, minute) DO UPDATE
     SET dividends_distributed = p.dividends_distributed + EXCLUDED.dividends_distributed;
  RETURN NULL;
END $$;

-- ---------------------------------------------------------------- users' latest activity

CREATE FUNCTION agg.touch_users() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF agg.deferred() OR agg.rebuild_if_pending() THEN RETURN NULL; END IF;
  INSERT INTO agg.user_last_active AS u (chain_id, address, last_at)
  SELECT chain_id, trader, max(block_time) FROM changed GROUP BY 1, 2
  ON CONFLICT (chain_id, address) DO UPDATE SET last_at = greatest(u.last_at, EXCLUDED.last_at);
  RETURN NULL;
END $$;

-- After a reorg removed events: each affected user's latest remaining trade (block times never
-- decrease along the chain, so the latest block's time is the latest time), or no row.
CREATE FUNCTION agg.untouch_users() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF agg.deferred() OR agg.rebuild_if_pending() THEN RETURN NULL; END IF;
  WITH x AS MATERIALIZED (
    SELECT a.chain_id, a.trader, greatest(
             (SELECT t.block_time FROM idx.ev_trade t WHERE t.chain_id = a.chain_id AND t.trader = a.trader
               ORDER BY t.block_number DESC, t.log_index DESC LIMIT 1),
             (SELECT s.block_time FROM idx.ev_shares_traded s WHERE s.chain_id = a.chain_id AND s.trader = a.trader
               ORDER BY s.block_number DESC, s.log_index DESC LIMIT 1)) AS last_at
      FROM (SELECT DISTINCT chain_id, trader FROM changed) a),
  gone AS (DELETE FROM agg.user_last_active u USING x
            WHERE u.chain_id = x.chain_id AND u.address = x.trader AND x.last_at IS NULL)
  UPDATE agg.user_last_active u SET last_at = x.last_at FROM x
   WHERE u.chain_id = x.chain_id AND u.address = x.trader AND x.last_at IS NOT NULL;
  RETURN NULL;
END $$;

CREATE TRIGGER agg_trades_ins AFTER INSERT ON idx.ev_trade
  REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION agg.count_trades();
CREATE TRIGGER agg_trades_del AFTER DELETE ON idx.ev_trade
  REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION agg.count_trades();
CREATE TRIGGER agg_trades_users_ins AFTER INSERT ON idx.ev_trade
  REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION agg.touch_users();
CREATE TRIGGER agg_trades_users_del AFTER DELETE ON idx.ev_trade
  REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION agg.untouch_users();

CREATE TRIGGER agg_shares_ins AFTER INSERT ON idx.ev_shares_traded
  REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION agg.count_share_trades();
CREATE TRIGGER agg_shares_del AFTER DELETE ON idx.ev_shares_traded
  REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION agg.count_share_trades();
CREATE TRIGGER agg_shares_users_ins AFTER INSERT ON idx.ev_shares_traded
  REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION agg.touch_users();
CREATE TRIGGER agg_shares_users_del AFTER DELETE ON idx.ev_shares_traded
  REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION agg.untouch_users();

CREATE TRIGGER agg_created_ins AFTER INSERT ON idx.ev_market_created
  REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION agg.count_markets_created();
CREATE TRIGGER agg_created_del AFTER DELETE ON idx.ev_market_created
  REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION agg.count_markets_created();
CREATE TRIGGER agg_resolved_ins AFTER INSERT ON idx.ev_market_resolved
  REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION agg.count_markets_resolved();
CREATE TRIGGER agg_resolved_del AFTER DELETE ON idx.ev_market_resolved
  REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION agg.count_markets_resolved();
CREATE TRIGGER agg_dividends_ins AFTER INSERT ON idx.ev_dividends_distributed
  REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION agg.count_dividends();
CREATE TRIGGER agg_dividends_del AFTER DELETE ON idx.ev_dividends_distributed
  REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION agg.count_dividends();

-- ---------------------------------------------------------------- rebuilt from the raw events

CREATE FUNCTION agg.rebuild_platform() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM agg.platform_minutes;
  DELETE FROM agg.user_last_active;
  INSERT INTO agg.platform_minutes (chain_id, minute, trades, volume, fees)
  SELECT chain_id, date_trunc('minute', block_time), count(*), sum(collateral), sum(fee) FROM idx.ev_trade GROUP BY 1, 2;
  INSERT INTO agg.platform_minutes AS p (chain_id, minute, share_trades, share_volume)
  SELECT chain_id, date_trunc('minute', block_time), count(*), sum(price) FROM idx.ev_shares_traded GROUP BY 1, 2
  ON CONFLICT (chain_id, minute) DO UPDATE SET share_trades = EXCLUDED.share_trades, share_volume = EXCLUDED.share_volume;
  INSERT INTO agg.platform_minutes AS p (chain_id, minute, markets_created)
  SELECT chain_id, date_trunc('minute', block_time), count(*) FROM idx.ev_market_created GROUP BY 1, 2
  ON CONFLICT (chain_id, minute) DO UPDATE SET markets_created = EXCLUDED.markets_created;
  INSERT INTO agg.platform_minutes AS p (chain_id, minute, markets_resolved)
  SELECT chain_id, date_trunc('minute', block_time), count(*) FROM idx.ev_market_resolved GROUP BY 1, 2
  ON CONFLICT (chain_id, minute) DO UPDATE SET markets_resolved = EXCLUDED.markets_resolved;
  INSERT INTO agg.platform_minutes AS p (chain_id, minute, dividends_distributed)
  SELECT chain_id, date_trunc('minute', block_time), sum(amount) FROM idx.ev_dividends_distributed GROUP BY 1, 2
  ON CONFLICT (chain_id, minute) DO UPDATE SET dividends_distributed = EXCLUDED.dividends_distributed;
  INSERT INTO agg.user_last_active (chain_id, address, last_at)
  SELECT chain_id, trader, max(block_time)
    FROM (SELECT chain_id, trader, block_time FROM idx.ev_trade
          UNION ALL SELECT chain_id, trader, block_time FROM idx.ev_shares_traded) e
   GROUP BY 1, 2;
END $$;

-- The rebuild owed after an initial sync runs in the transaction that builds the last deferred
-- index, or — when the indexer's two index builders delete their rows at once and neither sees the
-- table empty (READ COMMITTED) — when the indexer calls agg.rebuild_if_pending() after its index
-- builds (indexer/service.py), or in the next batch that writes an event, whichever comes first. It takes no lock unless a
-- rebuild is due, so a stalled transaction elsewhere can never hold up the writer.
CREATE FUNCTION agg.rebuild_if_pending() RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE owed boolean;
BEGIN
  IF agg.deferred() THEN
    RETURN false;
  END IF;
  DELETE FROM agg.rebuild_pending RETURNING pending INTO owed;
  IF owed THEN
    PERFORM agg.rebuild_platform();
    RETURN true;
  END IF;
  RETURN false;
END $$;

CREATE FUNCTION agg.on_deferral() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO agg.rebuild_pending VALUES (true) ON CONFLICT DO NOTHING;
  ELSE
    PERFORM agg.rebuild_if_pending();
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER agg_deferral_started AFTER INSERT ON idx.deferred_indexes
  FOR EACH STATEMENT EXECUTE FUNCTION agg.on_deferral();
CREATE TRIGGER agg_deferral_ended AFTER DELETE ON idx.deferred_indexes
  FOR EACH STATEMENT EXECUTE FUNCTION agg.on_deferral();

-- what was indexed before this migration (now, or after the initial sync under way)
INSERT INTO agg.rebuild_pending VALUES (true);
SELECT agg.rebuild_if_pending();

GRANT SELECT ON agg.platform_minutes, agg.user_last_active TO analyst, api;
