-- Payout runs (issue 17, item 1): a calculation's payouts, or an admin's selection, handled as one
-- piece of work.
--
-- `payout_runs`: the run; `funds_override` is the JSON of `FundsOverride`, NULL until asked for.
-- `payout_run_members`: which payouts a run holds (a payout may be in several runs). Indexed by
--   payout too, so a change of a payout in no run costs the tally trigger one index probe.
-- `payout_run_tallies`: each run's totals, how many members and their sum per status, provider ('' for
--   none) and currency, kept by the triggers below in the same transaction as every change, so a
--   run's page reads a few tallies instead of its members. `slot` is always 0 here (SQLite has one
--   writer at a time; the Postgres schema spreads each bucket over 16 slots).
-- `payout_run_results`: what each action on a run did to each payout (append-only, in order).
-- `payout_run_events`: the run's own audit trail (append-only, in order).

CREATE TABLE payout_runs (
    id             TEXT NOT NULL PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('CALCULATION', 'SELECTION')),
    label          TEXT NOT NULL,
    period_start   TEXT,
    period_end     TEXT,
    created_by     TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    funds_override TEXT,
    CHECK ((period_start IS NULL) = (period_end IS NULL)),
    CHECK (period_start <= period_end)
);

CREATE INDEX payout_runs_newest ON payout_runs (created_at DESC, id DESC);

CREATE TABLE payout_run_members (
    run_id    TEXT NOT NULL REFERENCES payout_runs (id),
    payout_id TEXT NOT NULL REFERENCES payouts (id),
    PRIMARY KEY (run_id, payout_id)
);

CREATE INDEX payout_run_members_payout ON payout_run_members (payout_id);

CREATE TABLE payout_run_tallies (
    run_id       TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    provider     TEXT    NOT NULL,
    currency     TEXT    NOT NULL,
    slot         INTEGER NOT NULL,
    n            INTEGER NOT NULL,
    amount_minor INTEGER NOT NULL,
    PRIMARY KEY (run_id, status, provider, currency, slot)
);

CREATE TABLE payout_run_results (
    seq          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    run_id       TEXT    NOT NULL REFERENCES payout_runs (id),
    payout_id    TEXT    NOT NULL,
    action       TEXT    NOT NULL CHECK (action IN ('APPROVE', 'TRIGGER', 'RETRY_FAILED')),
    provider     TEXT,
    outcome      TEXT    NOT NULL CHECK (outcome IN ('OK', 'FAILED')),
    status_after TEXT,
    message      TEXT,
    at           TEXT    NOT NULL,
    by_actor     TEXT    NOT NULL
);

CREATE INDEX payout_run_results_run ON payout_run_results (run_id, seq);

CREATE TABLE payout_run_events (
    seq     INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    run_id  TEXT    NOT NULL REFERENCES payout_runs (id),
    at      TEXT    NOT NULL,
    actor   TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    details TEXT
);

CREATE INDEX payout_run_events_run ON payout_run_events (run_id, seq);

-- Results and events are append-only, like the audit trail.
CREATE TRIGGER payout_run_results_no_update BEFORE UPDATE ON payout_run_results
BEGIN
    SELECT RAISE(ABORT, 'payout_run_results is append-only');
END;

CREATE TRIGGER payout_run_results_no_delete BEFORE DELETE ON payout_run_results
BEGIN
    SELECT RAISE(ABORT, 'payout_run_results is append-only');
END;

CREATE TRIGGER payout_run_events_no_update BEFORE UPDATE ON payout_run_events
BEGIN
    SELECT RAISE(ABORT, 'payout_run_events is append-only');
END;

CREATE TRIGGER payout_run_events_no_delete BEFORE DELETE ON payout_run_events
BEGIN
    SELECT RAISE(ABORT, 'payout_run_events is append-only');
END;

-- A new member counts in its payout's bucket.
CREATE TRIGGER payout_run_tallies_join AFTER INSERT ON payout_run_members
BEGIN
    INSERT INTO payout_run_tallies (run_id, status, provider, currency, slot, n, amount_minor)
    SELECT NEW.run_id, p.status, COALESCE(p.provider, ''), p.currency, 0, 1, p.amount_minor
    FROM payouts p WHERE p.id = NEW.payout_id
    ON CONFLICT (run_id, status, provider, currency, slot)
    DO UPDATE SET n = n + 1, amount_minor = amount_minor + excluded.amount_minor;
END;

CREATE TRIGGER payout_run_tallies_leave AFTER DELETE ON payout_run_members
BEGIN
    UPDATE payout_run_tallies SET n = n - 1,
        amount_minor = amount_minor - (SELECT p.amount_minor FROM payouts p WHERE p.id = OLD.payout_id)
    WHERE run_id = OLD.run_id AND slot = 0
      AND (status, provider, currency) =
          (SELECT p.status, COALESCE(p.provider, ''), p.currency FROM payouts p WHERE p.id = OLD.payout_id);
END;

-- A payout that moves between buckets moves in every run it is in (none: one probe of
-- payout_run_members_payout, nothing written).
CREATE TRIGGER payout_run_tallies_update AFTER UPDATE OF status, provider, currency, amount_minor ON payouts
WHEN OLD.status IS NOT NEW.status OR OLD.provider IS NOT NEW.provider OR OLD.currency IS NOT NEW.currency
  OR OLD.amount_minor IS NOT NEW.amount_minor
BEGIN
    UPDATE payout_run_tallies SET n = n - 1, amount_minor = amount_minor - OLD.amount_minor
    WHERE slot = 0 AND status = OLD.status AND provider = COALESCE(OLD.provider, '') AND currency = OLD.currency
      AND run_id IN (SELECT run_id FROM payout_run_members WHERE payout_id = OLD.id);
    INSERT INTO payout_run_tallies (run_id, status, provider, currency, slot, n, amount_minor)
    SELECT m.run_id, NEW.status, COALESCE(NEW.provider, ''), NEW.currency, 0, 1, NEW.amount_minor
    FROM payout_run_members m WHERE m.payout_id = NEW.id
    ON CONFLICT (run_id, status, provider, currency, slot)
    DO UPDATE SET n = n + 1, amount_minor = amount_minor + excluded.amount_minor;
END;
