//! Database errors, turned into [`payout_core::Error`] without leaking connection strings.

use payout_core::Error;

/// What went wrong in this crate, before it becomes a [`payout_core::Error`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// The database (or the driver) failed.
    #[error("{}", describe(.0))]
    Sqlx(#[from] sqlx::Error),
    /// Applying the migrations failed.
    #[error("migration failed: {}", redact(&.0.to_string()))]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row holds something this version cannot read (a status it does not know, a bad currency).
    #[error("unreadable {what} in the database: {detail}")]
    Corrupt {
        /// Which column.
        what: &'static str,
        /// What was wrong with it.
        detail: String,
    },
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e.to_string())
    }
}

/// `?` on a `sqlx::Error` in code returning `payout_core::Result`.
pub(crate) fn db(e: sqlx::Error) -> Error {
    StoreError::Sqlx(e).into()
}

/// A row that does not read back.
pub(crate) fn corrupt(what: &'static str, detail: impl std::fmt::Display) -> Error {
    StoreError::Corrupt {
        what,
        detail: detail.to_string(),
    }
    .into()
}

/// True when the error is a unique (or primary key) violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| matches!(d.kind(), sqlx::error::ErrorKind::UniqueViolation))
}

/// A one-line description that names the kind of failure and the database's message, never a URL.
fn describe(e: &sqlx::Error) -> String {
    let text = match e {
        sqlx::Error::Database(d) => match d.code() {
            Some(code) => format!("database error {code}: {}", d.message()),
            None => format!("database error: {}", d.message()),
        },
        sqlx::Error::Configuration(_) => "invalid database configuration".to_string(),
        sqlx::Error::PoolTimedOut => "timed out waiting for a database connection".to_string(),
        sqlx::Error::PoolClosed => "the database pool is closed".to_string(),
        other => other.to_string(),
    };
    redact(&text)
}

/// Removes the credentials of anything that looks like a URL (`scheme://user:secret@host`).
pub(crate) fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '/' || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_userinfo() {
        assert_eq!(
            redact("cannot reach postgres://app:hunter2@db.internal:5432/payouts now"),
            "cannot reach postgres://***@db.internal:5432/payouts now"
        );
        assert_eq!(redact("sqlite://payouts.db?mode=rwc"), "sqlite://payouts.db?mode=rwc");
        assert_eq!(redact("no url here"), "no url here");
    }

    #[test]
    fn configuration_errors_say_nothing_of_the_url() {
        let e = sqlx::Error::Configuration("postgres://app:hunter2@host/db is bad".into());
        let msg = payout_core::Error::from(StoreError::Sqlx(e)).to_string();
        assert!(!msg.contains("hunter2"), "{msg}");
    }
}
