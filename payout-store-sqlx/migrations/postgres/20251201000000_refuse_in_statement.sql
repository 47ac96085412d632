-- Lets one statement refuse itself. A change to a payout is one statement on Postgres (its steps are
-- data-modifying CTEs, so it commits in one round trip with no BEGIN and COMMIT); when a later step
-- finds it cannot go on (an attempt update names an attempt that does not exist), the statement calls
-- `payouts_require(false, reason)`, which raises SQLSTATE PX001 with `reason`: the statement fails
-- and nothing it did is kept.
CREATE FUNCTION payouts_require(ok BOOLEAN, reason TEXT) RETURNS BOOLEAN
LANGUAGE plpgsql AS $$
BEGIN
    IF ok THEN
        RETURN TRUE;
    END IF;
    RAISE EXCEPTION '%', reason USING ERRCODE = 'PX001';
END;
$$;
