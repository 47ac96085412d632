-- The events API's order is the order of commits (issue 18, item 4: `GET /api/admin/events?after=`
-- pages through every event).
--
-- `seq` is taken when a row is written, not when its transaction commits: of two transactions
-- writing events at once, the one with the lower `seq` can commit last, and a reader paging by
-- `seq` would already be past it. Each row now carries its writing transaction's id (`xid8`, the
-- top-level transaction even inside a savepoint), and readers page by `(xid, seq)`, showing a
-- row only once its `xid` is below the oldest transaction still running
-- (`pg_snapshot_xmin(pg_current_snapshot())`): every transaction that could still commit rows
-- has a larger `xid` than any row shown, so nothing appears behind a cursor already handed out.
--
-- The rows already here get this migration's transaction id (they are all committed; among
-- themselves `seq` orders them). The relay's claims are unchanged: they lock what is pending.
ALTER TABLE payout_outbox ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();

CREATE INDEX payout_outbox_commit_order ON payout_outbox (xid, seq);
