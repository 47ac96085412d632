-- Holds (issue 17, item 4).
--
-- `payouts.hold`: the payout's latest hold (JSON of `Hold`), kept once released (`releasedAt` set).
-- The list's `held` filter reads it; the partial index serves "held payouts, newest first" without
-- reading the payouts that were never held (nearly all of them).
-- `doctor_holds`: the doctors on hold, one row each while held; none of their payouts is sent.
ALTER TABLE payouts ADD COLUMN hold TEXT;

CREATE INDEX payouts_with_hold ON payouts (created_at DESC, id DESC) WHERE hold IS NOT NULL;

CREATE TABLE doctor_holds (
    doctor_id TEXT NOT NULL PRIMARY KEY,
    reason    TEXT NOT NULL,
    placed_by TEXT NOT NULL,
    placed_at TEXT NOT NULL
);

CREATE INDEX doctor_holds_oldest ON doctor_holds (placed_at, doctor_id);
