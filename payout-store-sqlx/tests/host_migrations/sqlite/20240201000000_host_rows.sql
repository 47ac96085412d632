INSERT INTO payouts (id, note) VALUES (1, 'the host''s own payout row');
INSERT INTO appointments VALUES ('apt-1', 'dr-1', 'COMPLETED', '2025-01-10T09:00:00Z');
