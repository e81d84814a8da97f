-- public.share_holdings.claimable_dividends: exact integer division. `x / 1e18` is a numeric
-- division rounded to ~20 significant digits, so floor() of a quotient like 2936032.99999999999999999
-- came out one unit too high; div() truncates exactly, matching CreatorShares.claimableDividends.
CREATE OR REPLACE VIEW public.share_holdings AS
SELECT h.chain_id,
       hex(h.creator) AS creator,
       hex(h.holder) AS holder,
       h.shares,
       to_timestamp(h.locked_until::double precision) AS locked_until,
       usdc(h.credited + div(h.shares * (c.acc_per_share - h.acc_paid), 1000000000000000000)) AS claimable_dividends,
       usdc(h.claimed_total) AS claimed_dividends
  FROM idx.share_holdings h
  JOIN idx.creators c ON c.chain_id = h.chain_id AND c.creator = h.creator;
