-- Provider batches (issue 15 item 3).
--
-- `payout_attempts.batch_id`: the provider batch the attempt was sent in (PayPal's `sender_batch_id`),
-- written with the attempt before the provider call. A batch's members are the attempts with its id,
-- and a re-send of any of them re-sends exactly those (PayPal deduplicates by `sender_batch_id` only,
-- so an attempt sent again in another grouping would be paid again). NULL for providers that do not
-- batch, and for attempts recorded before this migration.
ALTER TABLE payout_attempts ADD COLUMN batch_id TEXT;
CREATE INDEX payout_attempts_batch ON payout_attempts (provider, batch_id) WHERE batch_id IS NOT NULL;
