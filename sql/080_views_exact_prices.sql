-- Prices in the analysts' views are exact integer truncations, as the API computes them (indexer/fold.py
-- ratio6): trunc(a / b, 6) divides in numeric first, which rounds the quotient to about 20 significant
-- digits, so with reserves of 609757000065919 and 390243000042188 public.markets said 0.390243 where
-- the API said 0.390242 (review h4). The views keep every column, name and type.
CREATE OR REPLACE FUNCTION public.ratio6(num numeric, den numeric) RETURNS numeric
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT trunc(div(num * 1000000, den) / 1000000, 6) $$;

DO $$
DECLARE
  v text;
BEGIN
  FOREACH v IN ARRAY ARRAY['markets', 'trades'] LOOP
    EXECUTE format('CREATE OR REPLACE VIEW public.%I AS %s', v,
                   regexp_replace(pg_get_viewdef(format('public.%I', v)::regclass),
                                  'trunc\(\(([a-z_.]+) / (\([a-z_. +]+\)|[a-z_.]+)\), 6\)',
                                  'public.ratio6(\1, \2)', 'g'));
  END LOOP;
END $$;
