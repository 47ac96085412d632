-- Operator actions and approval safety (issue 14, items 6, 7 and 10).
--
-- `payout_attempts.destination`: where the attempt was sent, in full (JSON of `PayoutDestination`),
-- written with the attempt before the provider call; every re-send of the attempt uses it. NULL only
-- for attempts recorded before this migration.
-- `payouts.approval`: what the approval vouched for (JSON of `Approval`: the fingerprint of the
-- doctor's payout details and the approvers). `payouts.resolution`: the latest operator resolution
-- of an unknown outcome (JSON of `Resolution`), pending until a second admin confirms it.
ALTER TABLE payout_attempts ADD COLUMN destination TEXT;
ALTER TABLE payouts ADD COLUMN approval TEXT;
ALTER TABLE payouts ADD COLUMN resolution TEXT;
