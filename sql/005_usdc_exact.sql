-- public.usdc(): exact for every numeric(78,0). `round(x / 1000000, 6)` divides with ~20
-- significant digits, so amounts near 2^256 came out rounded (…913130.000000 for …913129.639935);
-- multiplying by 0.000001 is exact (the scale of the result is 6) and equal for every smaller value.
CREATE OR REPLACE FUNCTION public.usdc(x numeric) RETURNS numeric
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT x * 0.000001 $$;
