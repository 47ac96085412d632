-- The tally triggers name `payout_tallies` unqualified, which Postgres resolves through the
-- search_path of whoever writes to `payouts`. Pinning each function's search_path to the one the
-- migrations run with (the store's own schema) keeps them writing to the store's tallies when a
-- host changes a payout from a connection whose search_path does not start with that schema.
ALTER FUNCTION payout_tallies_on_insert() SET search_path FROM CURRENT;
ALTER FUNCTION payout_tallies_on_update() SET search_path FROM CURRENT;
ALTER FUNCTION payout_tallies_on_delete() SET search_path FROM CURRENT;
