-- How many payouts there are per month of creation (UTC), status and provider, kept by triggers in
-- the same transaction as every change, so the admin list's total reads a few thousand tallies
-- instead of counting up to every payout (a COUNT over 1,000,000 rows takes 100+ ms).
--
-- `provider` is '' for none. Each bucket is split over 16 `slot`s, and a change counts in the slot
-- of the database session making it (`pg_backend_pid() & 15`): concurrent transactions come from
-- different sessions, so they almost never update the same tally row and never wait on each other
-- for it, however many of them move payouts of the same month and status (a bulk trigger, a burst
-- of webhooks). A bucket's count is the sum of its slots; one slot may go negative. A statement
-- locks its tally rows in key order, so two changes never deadlock on them. Changes that move no
-- payout between buckets (most updates) touch no tally.

CREATE TABLE payout_tallies (
    month    DATE   NOT NULL,
    status   TEXT   NOT NULL,
    provider TEXT   NOT NULL,
    slot     INT    NOT NULL,
    n        BIGINT NOT NULL,
    PRIMARY KEY (month, status, provider, slot)
);

INSERT INTO payout_tallies (month, status, provider, slot, n)
SELECT date_trunc('month', created_at AT TIME ZONE 'UTC')::date, status, COALESCE(provider, ''), pg_backend_pid() & 15, COUNT(*)
FROM payouts
GROUP BY 1, 2, 3, 4;

CREATE FUNCTION payout_tallies_on_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payout_tallies AS t (month, status, provider, slot, n)
    SELECT date_trunc('month', created_at AT TIME ZONE 'UTC')::date, status, COALESCE(provider, ''), pg_backend_pid() & 15,
           COUNT(*)
    FROM new_rows
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (month, status, provider, slot) DO UPDATE SET n = t.n + EXCLUDED.n;
    RETURN NULL;
END;
$$;

-- A row trigger that fires only when the payout moves between buckets (see the trigger's WHEN):
-- most updates (an attempt's answer, a note, a lease) run no trigger code at all, and the ones that
-- do cost two tally upserts, in key order, with no transition tables to build.
CREATE FUNCTION payout_tallies_on_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payout_tallies AS t (month, status, provider, slot, n)
    SELECT month, status, provider, pg_backend_pid() & 15, n
    FROM (VALUES
        (date_trunc('month', OLD.created_at AT TIME ZONE 'UTC')::date, OLD.status, COALESCE(OLD.provider, ''), -1),
        (date_trunc('month', NEW.created_at AT TIME ZONE 'UTC')::date, NEW.status, COALESCE(NEW.provider, ''), 1)
    ) AS delta (month, status, provider, n)
    ORDER BY 1, 2, 3
    ON CONFLICT (month, status, provider, slot) DO UPDATE SET n = t.n + EXCLUDED.n;
    RETURN NULL;
END;
$$;

CREATE FUNCTION payout_tallies_on_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payout_tallies AS t (month, status, provider, slot, n)
    SELECT date_trunc('month', created_at AT TIME ZONE 'UTC')::date, status, COALESCE(provider, ''), pg_backend_pid() & 15,
           -COUNT(*)
    FROM old_rows
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (month, status, provider, slot) DO UPDATE SET n = t.n + EXCLUDED.n;
    RETURN NULL;
END;
$$;

CREATE TRIGGER payout_tallies_insert
    AFTER INSERT ON payouts REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION payout_tallies_on_insert();

CREATE TRIGGER payout_tallies_update
    AFTER UPDATE OF status, provider, created_at ON payouts
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR COALESCE(OLD.provider, '') IS DISTINCT FROM COALESCE(NEW.provider, '')
          OR date_trunc('month', OLD.created_at AT TIME ZONE 'UTC')
             IS DISTINCT FROM date_trunc('month', NEW.created_at AT TIME ZONE 'UTC'))
    EXECUTE FUNCTION payout_tallies_on_update();

CREATE TRIGGER payout_tallies_delete
    AFTER DELETE ON payouts REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION payout_tallies_on_delete();

-- The admin list filtered by status and provider together, newest first.
CREATE INDEX payouts_status_provider_newest ON payouts (status, provider, created_at DESC, id DESC);
