-- The consultation ledger: each consultation is paid at most once, whatever periods are calculated.
--
-- `live` says whether an item still holds its (kind, reference): TRUE from its payout's creation;
-- cancelling a payout sets it to FALSE on the payout's items when the admin releases the
-- consultations (the default), and leaves it TRUE when they are voided (held for good, never
-- paid). The partial unique index below allows one live CONSULTATION item per consultation, so
-- two calculations racing on overlapping periods cannot both write one: the second one's insert
-- fails with a unique violation and its whole chunk rolls back.
--
-- Existing rows: items of payouts already CANCELLED are not live (cancelling released them, which is
-- what it meant before this migration); every other item is live.
--
-- If a deployed database already holds a consultation on two payouts that are not cancelled (the
-- bug this migration closes: overlapping periods), the migration stops with an error naming one
-- such consultation and changes nothing (a migration is one transaction). Nothing is decided
-- for the operator, since at least one of those payouts may already have paid: find them with
--   SELECT reference, array_agg(payout_id) FROM payout_items i JOIN payouts p ON p.id = i.payout_id
--   WHERE kind = 'CONSULTATION' AND p.status <> 'CANCELLED' GROUP BY reference HAVING COUNT(*) > 1;
-- cancel the unpaid duplicate (or record the overpayment and cancel nothing), then run it again.
ALTER TABLE payout_items ADD COLUMN live BOOLEAN NOT NULL DEFAULT TRUE;

UPDATE payout_items SET live = FALSE
WHERE payout_id IN (SELECT id FROM payouts WHERE status = 'CANCELLED');

DO $$
DECLARE
    twice TEXT;
BEGIN
    SELECT reference INTO twice FROM payout_items
    WHERE live AND kind = 'CONSULTATION'
    GROUP BY reference HAVING COUNT(*) > 1
    LIMIT 1;
    IF twice IS NOT NULL THEN
        RAISE EXCEPTION 'consultation % is on more than one live payout; resolve it before this migration (see its comment)', twice
            USING ERRCODE = 'unique_violation';
    END IF;
END;
$$;

-- Unique over live items' (kind, reference): the predicate fixes kind, so the index holds reference
-- alone, which is also what the ledger's lookups probe (with `kind` as a leading column that no
-- condition names, Postgres scanned the table instead).
CREATE UNIQUE INDEX payout_items_ledger ON payout_items (reference) WHERE live AND kind = 'CONSULTATION';
