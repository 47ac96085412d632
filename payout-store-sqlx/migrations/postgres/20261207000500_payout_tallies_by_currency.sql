-- The tallies by currency too, with the amount beside the count: per month of creation (UTC),
-- status, provider and currency, how many payouts and their `amount_due` in minor units, so the
-- dashboard's totals (count and amount per status) and its paid-per-month chart read a few hundred
-- tallies instead of summing every payout. Amounts are never converted: each tally is one currency.
--
-- As before, each bucket is spread over 16 `slot`s by database session, kept by the same triggers
-- in the same transaction as every change, and a change that moves no payout between buckets (most
-- updates) touches no tally. The tallies are recounted from `payouts` here, with the payouts locked
-- against writes (SHARE) until this migration commits, so no change is counted twice or missed.
-- An amount sum beyond BIGINT refuses the write that would overflow it (never wraps).

LOCK TABLE payouts IN SHARE MODE;

DROP TRIGGER payout_tallies_update ON payouts;

ALTER TABLE payout_tallies DROP CONSTRAINT payout_tallies_pkey;
DELETE FROM payout_tallies;
ALTER TABLE payout_tallies
    ADD COLUMN currency     TEXT   NOT NULL,
    ADD COLUMN amount_minor BIGINT NOT NULL;
ALTER TABLE payout_tallies ADD PRIMARY KEY (month, status, provider, currency, slot);

INSERT INTO payout_tallies (month, status, provider, currency, slot, n, amount_minor)
SELECT date_trunc('month', created_at AT TIME ZONE 'UTC')::date, status, COALESCE(provider, ''), currency,
       pg_backend_pid() & 15, COUNT(*), SUM(amount_minor)
FROM payouts
GROUP BY 1, 2, 3, 4, 5;

CREATE OR REPLACE FUNCTION payout_tallies_on_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payout_tallies AS t (month, status, provider, currency, slot, n, amount_minor)
    SELECT date_trunc('month', created_at AT TIME ZONE 'UTC')::date, status, COALESCE(provider, ''), currency,
           pg_backend_pid() & 15, COUNT(*), SUM(amount_minor)
    FROM new_rows
    GROUP BY 1, 2, 3, 4, 5
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (month, status, provider, currency, slot)
    DO UPDATE SET n = t.n + EXCLUDED.n, amount_minor = t.amount_minor + EXCLUDED.amount_minor;
    RETURN NULL;
END;
$$;

-- Two tally upserts, in key order: the old bucket loses the payout, the new one gains it.
CREATE OR REPLACE FUNCTION payout_tallies_on_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payout_tallies AS t (month, status, provider, currency, slot, n, amount_minor)
    SELECT month, status, provider, currency, pg_backend_pid() & 15, n, amount_minor
    FROM (VALUES
        (date_trunc('month', OLD.created_at AT TIME ZONE 'UTC')::date, OLD.status, COALESCE(OLD.provider, ''),
         OLD.currency, -1, -OLD.amount_minor),
        (date_trunc('month', NEW.created_at AT TIME ZONE 'UTC')::date, NEW.status, COALESCE(NEW.provider, ''),
         NEW.currency, 1, NEW.amount_minor)
    ) AS delta (month, status, provider, currency, n, amount_minor)
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (month, status, provider, currency, slot)
    DO UPDATE SET n = t.n + EXCLUDED.n, amount_minor = t.amount_minor + EXCLUDED.amount_minor;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION payout_tallies_on_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payout_tallies AS t (month, status, provider, currency, slot, n, amount_minor)
    SELECT date_trunc('month', created_at AT TIME ZONE 'UTC')::date, status, COALESCE(provider, ''), currency,
           pg_backend_pid() & 15, -COUNT(*), -SUM(amount_minor)
    FROM old_rows
    GROUP BY 1, 2, 3, 4, 5
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (month, status, provider, currency, slot)
    DO UPDATE SET n = t.n + EXCLUDED.n, amount_minor = t.amount_minor + EXCLUDED.amount_minor;
    RETURN NULL;
END;
$$;

-- The amount and currency never change once a payout is written; they are watched all the same,
-- so a host's own UPDATE cannot leave the tallies behind.
CREATE TRIGGER payout_tallies_update
    AFTER UPDATE OF status, provider, created_at, currency, amount_minor ON payouts
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR COALESCE(OLD.provider, '') IS DISTINCT FROM COALESCE(NEW.provider, '')
          OR OLD.currency IS DISTINCT FROM NEW.currency
          OR OLD.amount_minor IS DISTINCT FROM NEW.amount_minor
          OR date_trunc('month', OLD.created_at AT TIME ZONE 'UTC')
             IS DISTINCT FROM date_trunc('month', NEW.created_at AT TIME ZONE 'UTC'))
    EXECUTE FUNCTION payout_tallies_on_update();

-- As 20261206000200_trigger_search_path.sql: `CREATE OR REPLACE` drops a function's settings, so
-- each is pinned again to the search_path the migrations run with (the store's own schema).
ALTER FUNCTION payout_tallies_on_insert() SET search_path FROM CURRENT;
ALTER FUNCTION payout_tallies_on_update() SET search_path FROM CURRENT;
ALTER FUNCTION payout_tallies_on_delete() SET search_path FROM CURRENT;
