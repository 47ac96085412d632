-- Every change as an event (issue 18, item 4): a transactional outbox.
--
-- Each event row is written by a trigger in the same transaction as the change it reports, derived
-- from what the change writes anyway, so no path that changes a payout can forget its event:
-- - an audit entry that moves a payout from one status to another (or creates it: no status
--   before), or records a HOLD or RELEASE: `payout.created`, `payout.status_changed`,
--   `payout.held`, `payout.released` (the rule of `payout_core::events::event_type_of`);
-- - a flag for a person newly set on a payout's follow-up: `payout.attention_flagged`;
-- - a run event that ends a step of a run (APPROVE, TRIGGER, RETRY_FAILED, BANK_FILE,
--   BANK_FILE_SETTLED): `run.completed`.
-- The relay claims them under a lease (`lease`, `next_try_at`), the first pending event of each
-- payout (or run: `stream_key`) at a time, and records each delivery's outcome.
CREATE TABLE payout_outbox (
    seq             BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT        COLLATE "C" NOT NULL,
    event_type      TEXT        NOT NULL,
    stream_key      TEXT        COLLATE "C" NOT NULL,
    payout_id       TEXT        COLLATE "C",
    doctor_id       TEXT        COLLATE "C",
    period_start    DATE,
    period_end      DATE,
    run_id          TEXT        COLLATE "C",
    status          TEXT,
    previous_status TEXT,
    amount_minor    BIGINT,
    currency        TEXT,
    provider        TEXT,
    actor           TEXT        NOT NULL,
    action          TEXT        NOT NULL,
    detail          TEXT        NOT NULL,
    occurred_at     TIMESTAMPTZ NOT NULL,
    delivery        TEXT        NOT NULL DEFAULT 'PENDING'
                        CHECK (delivery IN ('PENDING', 'DELIVERED', 'DEAD_LETTERED')),
    tries           BIGINT      NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_try_at     TIMESTAMPTZ NOT NULL,
    lease           BIGINT      NOT NULL DEFAULT 0
);

-- A claim reads the pending events only, and asks of each whether its payout has an earlier one.
CREATE INDEX payout_outbox_pending ON payout_outbox (seq) WHERE delivery = 'PENDING';
CREATE INDEX payout_outbox_pending_stream ON payout_outbox (stream_key, seq) WHERE delivery = 'PENDING';
CREATE INDEX payout_outbox_dead ON payout_outbox (seq) WHERE delivery = 'DEAD_LETTERED';

-- Per statement, from the entries it inserted: a batch of 500 changes is one INSERT ... SELECT,
-- not 500 trigger calls. AFTER triggers run once the whole statement (every step of the
-- one-statement apply) is done, so the payouts read here are as the change left them.
CREATE FUNCTION payout_outbox_from_audit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payout_outbox (id, event_type, stream_key, payout_id, doctor_id, period_start, period_end, status, previous_status,
                               amount_minor, currency, provider, actor, action, detail, occurred_at, next_try_at)
    SELECT 'evt_' || replace(gen_random_uuid()::text, '-', ''),
           CASE WHEN n.action = 'HOLD' THEN 'payout.held'
                WHEN n.action = 'RELEASE' THEN 'payout.released'
                WHEN n.from_status IS NULL THEN 'payout.created'
                ELSE 'payout.status_changed' END,
           p.id, p.id, p.doctor_id, p.period_start, p.period_end, COALESCE(n.to_status, p.status),
           CASE WHEN n.action NOT IN ('HOLD', 'RELEASE') THEN n.from_status END,
           p.amount_minor, p.currency, p.provider, n.actor, n.action, n.detail, n.at, n.at
    FROM new_entries n JOIN payouts p ON p.id = n.payout_id
    WHERE n.action IN ('HOLD', 'RELEASE') OR (n.to_status IS NOT NULL AND n.to_status IS DISTINCT FROM n.from_status)
    ORDER BY n.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER payout_outbox_from_audit
    AFTER INSERT ON audit_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION payout_outbox_from_audit();

ALTER FUNCTION payout_outbox_from_audit() SET search_path FROM CURRENT;

-- A flag newly set (none before): rare, so one row at a time.
CREATE FUNCTION payout_outbox_from_flag() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payout_outbox (id, event_type, stream_key, payout_id, doctor_id, period_start, period_end, status, amount_minor, currency,
                               provider, actor, action, detail, occurred_at, next_try_at)
    SELECT 'evt_' || replace(gen_random_uuid()::text, '-', ''), 'payout.attention_flagged',
           p.id, p.id, p.doctor_id, p.period_start, p.period_end, p.status, p.amount_minor, p.currency, p.provider,
           'system:reconcile', 'ATTENTION', NEW.attention, NEW.attention_since, NEW.attention_since
    FROM payouts p WHERE p.id = NEW.payout_id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER payout_outbox_from_new_flag
    AFTER INSERT ON payout_checks
    FOR EACH ROW WHEN (NEW.attention IS NOT NULL)
    EXECUTE FUNCTION payout_outbox_from_flag();

CREATE TRIGGER payout_outbox_from_flag
    AFTER UPDATE OF attention ON payout_checks
    FOR EACH ROW WHEN (OLD.attention IS NULL AND NEW.attention IS NOT NULL)
    EXECUTE FUNCTION payout_outbox_from_flag();

ALTER FUNCTION payout_outbox_from_flag() SET search_path FROM CURRENT;

CREATE FUNCTION payout_outbox_from_run() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payout_outbox (id, event_type, stream_key, run_id, actor, action, detail, occurred_at, next_try_at)
    VALUES ('evt_' || replace(gen_random_uuid()::text, '-', ''), 'run.completed', 'run:' || NEW.run_id,
            NEW.run_id, NEW.actor, NEW.action, COALESCE(NEW.details, ''), NEW.at, NEW.at);
    RETURN NULL;
END;
$$;

CREATE TRIGGER payout_outbox_from_run
    AFTER INSERT ON payout_run_events
    FOR EACH ROW WHEN (NEW.action IN ('APPROVE', 'TRIGGER', 'RETRY_FAILED', 'BANK_FILE', 'BANK_FILE_SETTLED'))
    EXECUTE FUNCTION payout_outbox_from_run();

ALTER FUNCTION payout_outbox_from_run() SET search_path FROM CURRENT;
