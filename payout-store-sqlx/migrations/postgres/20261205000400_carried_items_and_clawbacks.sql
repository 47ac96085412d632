-- Late consultations and clawbacks (issue 14): the consultation ledger reaches carry-overs and
-- clawbacks.
--
-- A calculation reads a look-back before its period and pays the completed consultations nobody
-- holds. A carry-over (earnings below the minimum payout, or a negative remainder when clawbacks
-- took more than was earned) must therefore hold the consultations it carries, or the look-back
-- would pay them again: `carried_items` holds a carry-over's CONSULTATION and CLAWBACK items, for
-- good (paying the carry-over out pays them). Its primary key allows one carried entry per
-- (kind, reference).
--
-- A CLAWBACK item takes back the pay of one consultation reversed after it was paid: the partial
-- unique index `payout_items_clawbacks` allows one live CLAWBACK per consultation, as
-- `payout_items_ledger` allows one live CONSULTATION.
--
-- Across the two tables, a consultation is on a live item or a carried item, never both: the
-- store checks both in the transaction that writes, after taking a transaction-scoped advisory
-- lock per doctor of the chunk (consultations belong to their doctor), so two calculations
-- writing the same doctor's ledger entries take turns.
CREATE TABLE carried_items (
    doctor_id    TEXT        COLLATE "C" NOT NULL,
    period_start DATE        NOT NULL,
    period_end   DATE        NOT NULL,
    position     BIGINT      NOT NULL,
    kind         TEXT        NOT NULL CHECK (kind IN ('CONSULTATION', 'CLAWBACK')),
    reference    TEXT        NOT NULL,
    amount_minor BIGINT      NOT NULL,
    currency     TEXT        NOT NULL CHECK (length(currency) = 3),
    occurred_at  TIMESTAMPTZ NOT NULL,
    description  TEXT        NOT NULL,
    PRIMARY KEY (kind, reference),
    UNIQUE (doctor_id, period_start, period_end, position),
    FOREIGN KEY (doctor_id, period_start, period_end) REFERENCES carry_overs (doctor_id, period_start, period_end)
);

CREATE UNIQUE INDEX payout_items_clawbacks ON payout_items (reference) WHERE live AND kind = 'CLAWBACK';
