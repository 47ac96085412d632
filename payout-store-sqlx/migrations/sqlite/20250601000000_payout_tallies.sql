-- How many payouts there are per month of creation (UTC), status and provider, kept by triggers in
-- the same transaction as every change, so the admin list's total reads a few hundred tallies
-- instead of counting up to every payout. `provider` is '' for none; `month` is `YYYY-MM-01`
-- (timestamps are fixed-width UTC text, so it is the text's first seven characters). `slot` is
-- always 0 here: SQLite has one writer at a time, so tally rows are never contended (the Postgres
-- schema spreads each bucket over 16 slots).

CREATE TABLE payout_tallies (
    month    TEXT    NOT NULL,
    status   TEXT    NOT NULL,
    provider TEXT    NOT NULL,
    slot     INTEGER NOT NULL,
    n        INTEGER NOT NULL,
    PRIMARY KEY (month, status, provider, slot)
);

INSERT INTO payout_tallies (month, status, provider, slot, n)
SELECT substr(created_at, 1, 7) || '-01', status, COALESCE(provider, ''), 0, COUNT(*)
FROM payouts
WHERE true
GROUP BY 1, 2, 3;

CREATE TRIGGER payout_tallies_insert AFTER INSERT ON payouts
BEGIN
    INSERT INTO payout_tallies (month, status, provider, slot, n)
    VALUES (substr(NEW.created_at, 1, 7) || '-01', NEW.status, COALESCE(NEW.provider, ''), 0, 1)
    ON CONFLICT (month, status, provider, slot) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER payout_tallies_update AFTER UPDATE OF created_at, status, provider ON payouts
WHEN OLD.created_at IS NOT NEW.created_at OR OLD.status IS NOT NEW.status OR OLD.provider IS NOT NEW.provider
BEGIN
    UPDATE payout_tallies SET n = n - 1
    WHERE month = substr(OLD.created_at, 1, 7) || '-01' AND status = OLD.status
      AND provider = COALESCE(OLD.provider, '') AND slot = 0;
    INSERT INTO payout_tallies (month, status, provider, slot, n)
    VALUES (substr(NEW.created_at, 1, 7) || '-01', NEW.status, COALESCE(NEW.provider, ''), 0, 1)
    ON CONFLICT (month, status, provider, slot) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER payout_tallies_delete AFTER DELETE ON payouts
BEGIN
    UPDATE payout_tallies SET n = n - 1
    WHERE month = substr(OLD.created_at, 1, 7) || '-01' AND status = OLD.status
      AND provider = COALESCE(OLD.provider, '') AND slot = 0;
END;

-- The admin list filtered by status and provider together, newest first.
CREATE INDEX payouts_status_provider_newest ON payouts (status, provider, created_at DESC, id DESC);
