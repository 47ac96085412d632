-- The tallies by currency too, with the amount beside the count: per month of creation (UTC),
-- status, provider and currency, how many payouts and their `amount_due` in minor units, so the
-- dashboard's totals (count and amount per status) and its paid-per-month chart read a few hundred
-- tallies instead of summing every payout. Amounts are never converted: each tally is one currency.
-- `slot` is still always 0 (one writer at a time). The table is rebuilt (SQLite cannot change a
-- primary key) and recounted from `payouts` inside this migration's transaction, which holds the
-- write lock, so no change is counted twice or missed.

DROP TRIGGER payout_tallies_insert;
DROP TRIGGER payout_tallies_update;
DROP TRIGGER payout_tallies_delete;
DROP TABLE payout_tallies;

CREATE TABLE payout_tallies (
    month        TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    provider     TEXT    NOT NULL,
    currency     TEXT    NOT NULL,
    slot         INTEGER NOT NULL,
    n            INTEGER NOT NULL,
    amount_minor INTEGER NOT NULL,
    PRIMARY KEY (month, status, provider, currency, slot)
);

INSERT INTO payout_tallies (month, status, provider, currency, slot, n, amount_minor)
SELECT substr(created_at, 1, 7) || '-01', status, COALESCE(provider, ''), currency, 0, COUNT(*), SUM(amount_minor)
FROM payouts
WHERE true
GROUP BY 1, 2, 3, 4;

CREATE TRIGGER payout_tallies_insert AFTER INSERT ON payouts
BEGIN
    INSERT INTO payout_tallies (month, status, provider, currency, slot, n, amount_minor)
    VALUES (substr(NEW.created_at, 1, 7) || '-01', NEW.status, COALESCE(NEW.provider, ''), NEW.currency, 0, 1,
            NEW.amount_minor)
    ON CONFLICT (month, status, provider, currency, slot)
    DO UPDATE SET n = n + 1, amount_minor = amount_minor + excluded.amount_minor;
END;

-- The amount and currency never change once a payout is written; they are watched all the same,
-- so a host's own UPDATE cannot leave the tallies behind.
CREATE TRIGGER payout_tallies_update AFTER UPDATE OF created_at, status, provider, currency, amount_minor ON payouts
WHEN OLD.created_at IS NOT NEW.created_at OR OLD.status IS NOT NEW.status OR OLD.provider IS NOT NEW.provider
     OR OLD.currency IS NOT NEW.currency OR OLD.amount_minor IS NOT NEW.amount_minor
BEGIN
    UPDATE payout_tallies SET n = n - 1, amount_minor = amount_minor - OLD.amount_minor
    WHERE month = substr(OLD.created_at, 1, 7) || '-01' AND status = OLD.status
      AND provider = COALESCE(OLD.provider, '') AND currency = OLD.currency AND slot = 0;
    INSERT INTO payout_tallies (month, status, provider, currency, slot, n, amount_minor)
    VALUES (substr(NEW.created_at, 1, 7) || '-01', NEW.status, COALESCE(NEW.provider, ''), NEW.currency, 0, 1,
            NEW.amount_minor)
    ON CONFLICT (month, status, provider, currency, slot)
    DO UPDATE SET n = n + 1, amount_minor = amount_minor + excluded.amount_minor;
END;

CREATE TRIGGER payout_tallies_delete AFTER DELETE ON payouts
BEGIN
    UPDATE payout_tallies SET n = n - 1, amount_minor = amount_minor - OLD.amount_minor
    WHERE month = substr(OLD.created_at, 1, 7) || '-01' AND status = OLD.status
      AND provider = COALESCE(OLD.provider, '') AND currency = OLD.currency AND slot = 0;
END;
