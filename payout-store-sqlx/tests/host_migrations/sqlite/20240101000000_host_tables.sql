-- A host application's own migrations, run with its own `sqlx::migrate!`: a table of its own named
-- `payouts` (the name the store's table has) and its consultations.
CREATE TABLE payouts (id INTEGER PRIMARY KEY, note TEXT NOT NULL);
CREATE TABLE appointments (
    id           TEXT PRIMARY KEY,
    doctor_id    TEXT NOT NULL,
    status       TEXT NOT NULL,
    completed_at TEXT
);
