-- Payout store schema, SQLite dialect.
--
-- Money is an integer number of minor units (cents; whole yen for JPY) plus the ISO 4217 code,
-- never floating point. Timestamps are UTC text in one fixed width
-- (`YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`), so text order is time order and indexes on them work.
-- Dates are `YYYY-MM-DD` text.

CREATE TABLE payouts (
    id                 TEXT    NOT NULL PRIMARY KEY,
    doctor_id          TEXT    NOT NULL,
    period_start       TEXT    NOT NULL,
    period_end         TEXT    NOT NULL,
    amount_minor       INTEGER NOT NULL,
    currency           TEXT    NOT NULL CHECK (length(currency) = 3),
    status             TEXT    NOT NULL CHECK (status IN
                           ('PENDING', 'APPROVED', 'PROCESSING', 'PAID', 'FAILED', 'CANCELLED', 'RETURNED', 'REVERSED')),
    provider           TEXT,
    provider_reference TEXT,
    notes              TEXT,
    origin             TEXT    NOT NULL CHECK (origin IN ('CALCULATED', 'MANUAL')),
    created_by         TEXT    NOT NULL,
    approved_by        TEXT,
    processed_at       TEXT,
    created_at         TEXT    NOT NULL,
    updated_at         TEXT    NOT NULL,
    version            INTEGER NOT NULL CHECK (version >= 1),
    CHECK (period_start <= period_end)
);

-- One live calculated payout per doctor and period (a cancelled one may be calculated again).
CREATE UNIQUE INDEX payouts_one_calculated_per_period
    ON payouts (doctor_id, period_start, period_end)
    WHERE origin = 'CALCULATED' AND status <> 'CANCELLED';

-- The admin list (newest first) and its filters; the doctor's history.
CREATE INDEX payouts_newest ON payouts (created_at DESC, id DESC);
CREATE INDEX payouts_status_newest ON payouts (status, created_at DESC, id DESC);
CREATE INDEX payouts_doctor_newest ON payouts (doctor_id, created_at DESC, id DESC);
CREATE INDEX payouts_provider_newest ON payouts (provider, created_at DESC, id DESC);
-- The reconciliation pass: PROCESSING payouts not changed for a while.
CREATE INDEX payouts_status_updated ON payouts (status, updated_at, id);

CREATE TABLE payout_items (
    payout_id    TEXT    NOT NULL REFERENCES payouts (id),
    position     INTEGER NOT NULL,
    kind         TEXT    NOT NULL,
    reference    TEXT    NOT NULL,
    amount_minor INTEGER NOT NULL,
    currency     TEXT    NOT NULL CHECK (length(currency) = 3),
    occurred_at  TEXT    NOT NULL,
    description  TEXT    NOT NULL,
    PRIMARY KEY (payout_id, position)
);

CREATE TABLE payout_attempts (
    payout_id          TEXT    NOT NULL REFERENCES payouts (id),
    attempt_no         INTEGER NOT NULL,
    provider           TEXT    NOT NULL,
    idempotency_key    TEXT    NOT NULL UNIQUE,
    request_summary    TEXT    NOT NULL,
    outcome            TEXT    NOT NULL CHECK (outcome IN ('PENDING', 'ACCEPTED', 'SUCCEEDED', 'FAILED', 'UNKNOWN')),
    outcome_reason     TEXT,
    provider_reference TEXT,
    error              TEXT,
    created_at         TEXT    NOT NULL,
    updated_at         TEXT    NOT NULL,
    PRIMARY KEY (payout_id, attempt_no)
);

-- Webhooks find their attempt by the provider's reference.
CREATE INDEX payout_attempts_reference ON payout_attempts (provider, provider_reference);

CREATE TABLE webhook_events (
    provider    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    payout_id   TEXT NOT NULL REFERENCES payouts (id),
    event_type  TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (provider, event_id)
);

CREATE INDEX webhook_events_payout ON webhook_events (payout_id);

CREATE TABLE audit_entries (
    id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    payout_id   TEXT    NOT NULL REFERENCES payouts (id),
    actor       TEXT    NOT NULL,
    at          TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    from_status TEXT,
    to_status   TEXT,
    detail      TEXT    NOT NULL
);

CREATE INDEX audit_entries_payout ON audit_entries (payout_id, id);

-- The audit trail is append-only: the database itself refuses changes and deletions.
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit_entries is append-only');
END;

CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN
    SELECT RAISE(ABORT, 'audit_entries is append-only');
END;

CREATE TABLE carry_overs (
    doctor_id    TEXT    NOT NULL,
    period_start TEXT    NOT NULL,
    period_end   TEXT    NOT NULL,
    amount_minor INTEGER NOT NULL,
    currency     TEXT    NOT NULL CHECK (length(currency) = 3),
    note         TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    consumed_by  TEXT    REFERENCES payouts (id),
    PRIMARY KEY (doctor_id, period_start, period_end),
    CHECK (period_start <= period_end)
);

CREATE INDEX carry_overs_open ON carry_overs (period_end) WHERE consumed_by IS NULL;
