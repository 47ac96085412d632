-- Payout runs (issue 17, item 1): a calculation's payouts, or an admin's selection, handled as one
-- piece of work.
--
-- `payout_runs`: the run; `funds_override` is the JSON of `FundsOverride`, NULL until asked for.
-- `payout_run_members`: which payouts a run holds (a payout may be in several runs). Indexed by
--   payout too, so a change of a payout in no run costs the tally trigger one index probe.
-- `payout_run_tallies`: each run's totals, how many members and their sum per status, provider ('' for
--   none) and currency, kept by the triggers below in the same transaction as every change, so a
--   run's page reads a few tallies instead of its members. Spread over 16 `slot`s by the writing
--   session (`pg_backend_pid() & 15`) like `payout_tallies`, so concurrent transactions moving
--   payouts of one run (a bulk trigger's statements, webhooks) almost never wait on one tally row.
--   A bucket is the sum of its slots; one slot may go negative.
-- `payout_run_results`: what each action on a run did to each payout (append-only, in order).
-- `payout_run_events`: the run's own audit trail (append-only, in order).

CREATE TABLE payout_runs (
    id             TEXT        COLLATE "C" NOT NULL PRIMARY KEY,
    kind           TEXT        NOT NULL CHECK (kind IN ('CALCULATION', 'SELECTION')),
    label          TEXT        NOT NULL,
    period_start   DATE,
    period_end     DATE,
    created_by     TEXT        NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    funds_override TEXT,
    CHECK ((period_start IS NULL) = (period_end IS NULL)),
    CHECK (period_start <= period_end)
);

CREATE INDEX payout_runs_newest ON payout_runs (created_at DESC, id DESC);

CREATE TABLE payout_run_members (
    run_id    TEXT COLLATE "C" NOT NULL REFERENCES payout_runs (id),
    payout_id TEXT COLLATE "C" NOT NULL REFERENCES payouts (id),
    PRIMARY KEY (run_id, payout_id)
);

CREATE INDEX payout_run_members_payout ON payout_run_members (payout_id);

CREATE TABLE payout_run_tallies (
    run_id       TEXT   COLLATE "C" NOT NULL,
    status       TEXT   NOT NULL,
    provider     TEXT   NOT NULL,
    currency     TEXT   NOT NULL,
    slot         INT    NOT NULL,
    n            BIGINT NOT NULL,
    amount_minor BIGINT NOT NULL,
    PRIMARY KEY (run_id, status, provider, currency, slot)
);

CREATE TABLE payout_run_results (
    seq          BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       TEXT        COLLATE "C" NOT NULL REFERENCES payout_runs (id),
    payout_id    TEXT        COLLATE "C" NOT NULL,
    action       TEXT        NOT NULL CHECK (action IN ('APPROVE', 'TRIGGER', 'RETRY_FAILED')),
    provider     TEXT,
    outcome      TEXT        NOT NULL CHECK (outcome IN ('OK', 'FAILED')),
    status_after TEXT,
    message      TEXT,
    at           TIMESTAMPTZ NOT NULL,
    by_actor     TEXT        NOT NULL
);

CREATE INDEX payout_run_results_run ON payout_run_results (run_id, seq);

CREATE TABLE payout_run_events (
    seq     BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id  TEXT        COLLATE "C" NOT NULL REFERENCES payout_runs (id),
    at      TIMESTAMPTZ NOT NULL,
    actor   TEXT        NOT NULL,
    action  TEXT        NOT NULL,
    details TEXT
);

CREATE INDEX payout_run_events_run ON payout_run_events (run_id, seq);

-- Results and events are append-only, like the audit trail.
CREATE FUNCTION payout_runs_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
END;
$$;

CREATE TRIGGER payout_run_results_append_only
    BEFORE UPDATE OR DELETE ON payout_run_results
    FOR EACH ROW EXECUTE FUNCTION payout_runs_append_only();

CREATE TRIGGER payout_run_events_append_only
    BEFORE UPDATE OR DELETE ON payout_run_events
    FOR EACH ROW EXECUTE FUNCTION payout_runs_append_only();

-- New members count in their payout's bucket: one upsert per bucket of the statement, in key order.
CREATE FUNCTION payout_run_tallies_on_join() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payout_run_tallies AS t (run_id, status, provider, currency, slot, n, amount_minor)
    SELECT m.run_id, p.status, COALESCE(p.provider, ''), p.currency, pg_backend_pid() & 15, COUNT(*), SUM(p.amount_minor)
    FROM new_rows m JOIN payouts p ON p.id = m.payout_id
    GROUP BY 1, 2, 3, 4, 5
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (run_id, status, provider, currency, slot)
    DO UPDATE SET n = t.n + EXCLUDED.n, amount_minor = t.amount_minor + EXCLUDED.amount_minor;
    RETURN NULL;
END;
$$;

CREATE FUNCTION payout_run_tallies_on_leave() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payout_run_tallies AS t (run_id, status, provider, currency, slot, n, amount_minor)
    SELECT m.run_id, p.status, COALESCE(p.provider, ''), p.currency, pg_backend_pid() & 15, -COUNT(*), -SUM(p.amount_minor)
    FROM old_rows m JOIN payouts p ON p.id = m.payout_id
    GROUP BY 1, 2, 3, 4, 5
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (run_id, status, provider, currency, slot)
    DO UPDATE SET n = t.n + EXCLUDED.n, amount_minor = t.amount_minor + EXCLUDED.amount_minor;
    RETURN NULL;
END;
$$;

-- A payout that moves between buckets moves in every run it is in (none: one probe of
-- payout_run_members_payout, nothing written). Grouped, so a change of its amount alone (same
-- bucket) is one upsert per run.
CREATE FUNCTION payout_run_tallies_on_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payout_run_tallies AS t (run_id, status, provider, currency, slot, n, amount_minor)
    SELECT m.run_id, d.status, d.provider, d.currency, pg_backend_pid() & 15, SUM(d.n), SUM(d.amount_minor)
    FROM payout_run_members m
    CROSS JOIN (VALUES
        (OLD.status, COALESCE(OLD.provider, ''), OLD.currency, -1, -OLD.amount_minor),
        (NEW.status, COALESCE(NEW.provider, ''), NEW.currency, 1, NEW.amount_minor)
    ) AS d (status, provider, currency, n, amount_minor)
    WHERE m.payout_id = NEW.id
    GROUP BY 1, 2, 3, 4, 5
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (run_id, status, provider, currency, slot)
    DO UPDATE SET n = t.n + EXCLUDED.n, amount_minor = t.amount_minor + EXCLUDED.amount_minor;
    RETURN NULL;
END;
$$;

CREATE TRIGGER payout_run_tallies_join
    AFTER INSERT ON payout_run_members REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION payout_run_tallies_on_join();

CREATE TRIGGER payout_run_tallies_leave
    AFTER DELETE ON payout_run_members REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION payout_run_tallies_on_leave();

CREATE TRIGGER payout_run_tallies_update
    AFTER UPDATE OF status, provider, currency, amount_minor ON payouts
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR COALESCE(OLD.provider, '') IS DISTINCT FROM COALESCE(NEW.provider, '')
          OR OLD.currency IS DISTINCT FROM NEW.currency
          OR OLD.amount_minor IS DISTINCT FROM NEW.amount_minor)
    EXECUTE FUNCTION payout_run_tallies_on_update();

-- The triggers name their tables unqualified: pin their search_path to the store's schema, as
-- 20261206000200_trigger_search_path does for the payout tallies.
ALTER FUNCTION payout_run_tallies_on_join() SET search_path FROM CURRENT;
ALTER FUNCTION payout_run_tallies_on_leave() SET search_path FROM CURRENT;
ALTER FUNCTION payout_run_tallies_on_update() SET search_path FROM CURRENT;
ALTER FUNCTION payout_runs_append_only() SET search_path FROM CURRENT;
