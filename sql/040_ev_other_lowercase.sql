-- idx.ev_other.args held addresses as eth_abi returns them (EIP-55 checksummed text); every other
-- table, view and feed payload spells an address in lowercase hex. The decoder now writes lowercase;
-- this converts the rows already stored: every string value (top level or inside an array) that is
-- exactly 0x + 40 hex digits. bytes32 values (64 digits) and other strings are left alone.
CREATE FUNCTION pg_temp.lower_addresses(v jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN jsonb_typeof(v) = 'string' AND v #>> '{}' ~ '^0x[0-9a-fA-F]{40}$' THEN to_jsonb(lower(v #>> '{}'))
        WHEN jsonb_typeof(v) = 'array' THEN (
            SELECT coalesce(jsonb_agg(
                CASE WHEN jsonb_typeof(x) = 'string' AND x #>> '{}' ~ '^0x[0-9a-fA-F]{40}$'
                     THEN to_jsonb(lower(x #>> '{}')) ELSE x END ORDER BY i), '[]'::jsonb)
            FROM jsonb_array_elements(v) WITH ORDINALITY AS a(x, i))
        ELSE v
    END
$$;

UPDATE idx.ev_other e
SET args = (SELECT jsonb_object_agg(k, pg_temp.lower_addresses(v)) FROM jsonb_each(e.args) AS t(k, v))
WHERE jsonb_typeof(e.args) = 'object' AND e.args::text ~ '0x[0-9a-fA-F]*[A-F]';
