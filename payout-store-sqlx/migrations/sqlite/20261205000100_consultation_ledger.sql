-- The consultation ledger: each consultation is paid at most once, whatever periods are calculated.
--
-- `live` (1 or 0) says whether an item still holds its (kind, reference): 1 from its payout's
-- creation; cancelling a payout sets it to 0 on the payout's items when the admin releases the
-- consultations (the default), and leaves it 1 when they are voided (held for good, never paid).
-- The partial unique index below allows one live CONSULTATION item per consultation.
--
-- Existing rows: items of payouts already CANCELLED are not live (cancelling released them, which is
-- what it meant before this migration); every other item is live.
--
-- If a deployed database already holds a consultation on two payouts that are not cancelled (the
-- bug this migration closes: overlapping periods), creating the index fails ("UNIQUE constraint
-- failed: payout_items.reference") and the migration changes nothing. Nothing is
-- decided for the operator, since at least one of those payouts may already have paid: find them with
--   SELECT reference, group_concat(payout_id) FROM payout_items i JOIN payouts p ON p.id = i.payout_id
--   WHERE kind = 'CONSULTATION' AND p.status <> 'CANCELLED' GROUP BY reference HAVING COUNT(*) > 1;
-- cancel the unpaid duplicate (or record the overpayment and cancel nothing), then run it again.
ALTER TABLE payout_items ADD COLUMN live INTEGER NOT NULL DEFAULT 1 CHECK (live IN (0, 1));

UPDATE payout_items SET live = 0
WHERE payout_id IN (SELECT id FROM payouts WHERE status = 'CANCELLED');

-- Unique over live items' (kind, reference): the predicate fixes kind, so the index holds reference
-- alone, which is also what the ledger's lookups probe (with `kind` as a leading column that no
-- condition names, Postgres scanned the table instead).
CREATE UNIQUE INDEX payout_items_ledger ON payout_items (reference) WHERE live AND kind = 'CONSULTATION';
