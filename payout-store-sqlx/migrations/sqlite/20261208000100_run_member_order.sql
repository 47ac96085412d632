-- A run's payouts a page at a time (issue 17, item 6): see the Postgres migration of the same
-- name. Each member carries its payout's status, creation time (the same text as
-- `payouts.created_at`, so both sort alike) and whether a hold is on, kept by the trigger below.
-- SQLite adds a NOT NULL column only with a default; every insert of the store writes all three.
ALTER TABLE payout_run_members ADD COLUMN status TEXT NOT NULL DEFAULT '';
ALTER TABLE payout_run_members ADD COLUMN created_at TEXT NOT NULL DEFAULT '';
ALTER TABLE payout_run_members ADD COLUMN held INTEGER NOT NULL DEFAULT 0;

UPDATE payout_run_members
SET (status, created_at, held) = (
    SELECT p.status, p.created_at, (p.hold IS NOT NULL AND json_extract(p.hold, '$.releasedAt') IS NULL)
    FROM payouts p WHERE p.id = payout_run_members.payout_id
);

CREATE INDEX payout_run_members_newest ON payout_run_members (run_id, created_at DESC, payout_id DESC);
CREATE INDEX payout_run_members_by_status ON payout_run_members (run_id, status, created_at DESC, payout_id DESC);
CREATE INDEX payout_run_members_held ON payout_run_members (run_id, created_at DESC, payout_id DESC) WHERE held;

CREATE TRIGGER payout_run_members_follow AFTER UPDATE OF status, created_at, hold ON payouts
WHEN OLD.status IS NOT NEW.status OR OLD.created_at IS NOT NEW.created_at OR OLD.hold IS NOT NEW.hold
BEGIN
    UPDATE payout_run_members
    SET status = NEW.status,
        created_at = NEW.created_at,
        held = (NEW.hold IS NOT NULL AND json_extract(NEW.hold, '$.releasedAt') IS NULL)
    WHERE payout_id = NEW.id;
END;
