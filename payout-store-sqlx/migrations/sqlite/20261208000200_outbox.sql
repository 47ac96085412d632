-- Every change as an event (issue 18, item 4): a transactional outbox. See the Postgres migration
-- of the same name; here the triggers run per row, inside the change's `BEGIN IMMEDIATE`.
CREATE TABLE payout_outbox (
    seq             INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    id              TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    stream_key      TEXT    NOT NULL,
    payout_id       TEXT,
    doctor_id       TEXT,
    period_start    TEXT,
    period_end      TEXT,
    run_id          TEXT,
    status          TEXT,
    previous_status TEXT,
    amount_minor    INTEGER,
    currency        TEXT,
    provider        TEXT,
    actor           TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    detail          TEXT    NOT NULL,
    occurred_at     TEXT    NOT NULL,
    delivery        TEXT    NOT NULL DEFAULT 'PENDING'
                        CHECK (delivery IN ('PENDING', 'DELIVERED', 'DEAD_LETTERED')),
    tries           INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_try_at     TEXT    NOT NULL,
    lease           INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX payout_outbox_pending ON payout_outbox (seq) WHERE delivery = 'PENDING';
CREATE INDEX payout_outbox_pending_stream ON payout_outbox (stream_key, seq) WHERE delivery = 'PENDING';
CREATE INDEX payout_outbox_dead ON payout_outbox (seq) WHERE delivery = 'DEAD_LETTERED';

CREATE TRIGGER payout_outbox_from_audit AFTER INSERT ON audit_entries
WHEN NEW.action IN ('HOLD', 'RELEASE') OR (NEW.to_status IS NOT NULL AND NEW.to_status IS NOT NEW.from_status)
BEGIN
    INSERT INTO payout_outbox (id, event_type, stream_key, payout_id, doctor_id, period_start, period_end, status, previous_status,
                               amount_minor, currency, provider, actor, action, detail, occurred_at, next_try_at)
    SELECT 'evt_' || lower(hex(randomblob(16))),
           CASE WHEN NEW.action = 'HOLD' THEN 'payout.held'
                WHEN NEW.action = 'RELEASE' THEN 'payout.released'
                WHEN NEW.from_status IS NULL THEN 'payout.created'
                ELSE 'payout.status_changed' END,
           p.id, p.id, p.doctor_id, p.period_start, p.period_end, COALESCE(NEW.to_status, p.status),
           CASE WHEN NEW.action NOT IN ('HOLD', 'RELEASE') THEN NEW.from_status END,
           p.amount_minor, p.currency, p.provider, NEW.actor, NEW.action, NEW.detail, NEW.at, NEW.at
    FROM payouts p WHERE p.id = NEW.payout_id;
END;

CREATE TRIGGER payout_outbox_from_new_flag AFTER INSERT ON payout_checks
WHEN NEW.attention IS NOT NULL
BEGIN
    INSERT INTO payout_outbox (id, event_type, stream_key, payout_id, doctor_id, period_start, period_end, status, amount_minor, currency,
                               provider, actor, action, detail, occurred_at, next_try_at)
    SELECT 'evt_' || lower(hex(randomblob(16))), 'payout.attention_flagged',
           p.id, p.id, p.doctor_id, p.period_start, p.period_end, p.status, p.amount_minor, p.currency, p.provider,
           'system:reconcile', 'ATTENTION', NEW.attention, NEW.attention_since, NEW.attention_since
    FROM payouts p WHERE p.id = NEW.payout_id;
END;

CREATE TRIGGER payout_outbox_from_flag AFTER UPDATE OF attention ON payout_checks
WHEN OLD.attention IS NULL AND NEW.attention IS NOT NULL
BEGIN
    INSERT INTO payout_outbox (id, event_type, stream_key, payout_id, doctor_id, period_start, period_end, status, amount_minor, currency,
                               provider, actor, action, detail, occurred_at, next_try_at)
    SELECT 'evt_' || lower(hex(randomblob(16))), 'payout.attention_flagged',
           p.id, p.id, p.doctor_id, p.period_start, p.period_end, p.status, p.amount_minor, p.currency, p.provider,
           'system:reconcile', 'ATTENTION', NEW.attention, NEW.attention_since, NEW.attention_since
    FROM payouts p WHERE p.id = NEW.payout_id;
END;

CREATE TRIGGER payout_outbox_from_run AFTER INSERT ON payout_run_events
WHEN NEW.action IN ('APPROVE', 'TRIGGER', 'RETRY_FAILED', 'BANK_FILE', 'BANK_FILE_SETTLED')
BEGIN
    INSERT INTO payout_outbox (id, event_type, stream_key, run_id, actor, action, detail, occurred_at, next_try_at)
    VALUES ('evt_' || lower(hex(randomblob(16))), 'run.completed', 'run:' || NEW.run_id,
            NEW.run_id, NEW.actor, NEW.action, COALESCE(NEW.details, ''), NEW.at, NEW.at);
END;
