-- Reconciliation's follow-up of each payout, beside the payout so that scheduling a check never
-- changes the payout's version: when it is looked at next (`next_check_at`, NULL: not scheduled),
-- how many checks found it unchanged since a change last scheduled it (`checks`, for back-off),
-- the lease token of its latest claim or write (`lease`), and why a person should look at it
-- (`attention`, NULL: nobody needs to), flagged since `attention_since`.

CREATE TABLE payout_checks (
    payout_id       TEXT        COLLATE "C" NOT NULL PRIMARY KEY REFERENCES payouts (id),
    next_check_at   TIMESTAMPTZ,
    checks          BIGINT      NOT NULL DEFAULT 0,
    lease           BIGINT      NOT NULL DEFAULT 0,
    attention       TEXT,
    attention_since TIMESTAMPTZ,
    CHECK ((attention IS NULL) = (attention_since IS NULL))
);

-- A claim reads only due checks, earliest first, however many are scheduled later.
CREATE INDEX payout_checks_due ON payout_checks (next_check_at, payout_id) WHERE next_check_at IS NOT NULL;
-- The attention queue, oldest flag first.
CREATE INDEX payout_checks_flagged ON payout_checks (attention_since, payout_id) WHERE attention IS NOT NULL;

-- Payouts already PROCESSING are due at once.
INSERT INTO payout_checks (payout_id, next_check_at)
SELECT id, updated_at FROM payouts WHERE status = 'PROCESSING';

-- Reconciliation no longer reads PROCESSING payouts by `updated_at`: the index only cost writes.
DROP INDEX payouts_status_updated;
