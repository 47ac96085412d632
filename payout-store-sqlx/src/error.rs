//! Database errors, turned into [`payout_core::Error`] with their kind and cause, never a
//! connection string.

use std::fmt;

use payout_core::{Error, StoreError, StoreErrorKind};

/// A driver error as the cause of a [`StoreError`]: `Display` and `Debug` are the error's
/// description with the credentials of any URL in it removed; [`DatabaseError::sqlx`] gives the
/// error itself to a host that wants to look closer (its own `Display` is not redacted).
///
/// ```
/// # use payout_core::{Error, StoreErrorKind};
/// # fn handle(e: Error) {
/// if let Error::Store(store) = &e {
///     let cause = std::error::Error::source(store)
///         .and_then(|c| c.downcast_ref::<payout_store_sqlx::DatabaseError>());
///     if store.kind() == StoreErrorKind::Unavailable {
///         // back off and try again
///     }
/// #   let _ = cause;
/// }
/// # }
/// ```
pub struct DatabaseError(sqlx::Error);

impl DatabaseError {
    /// The driver's error.
    pub fn sqlx(&self) -> &sqlx::Error {
        &self.0
    }
}

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe(&self.0))
    }
}

impl fmt::Debug for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseError({:?})", describe(&self.0))
    }
}

impl std::error::Error for DatabaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            // A configuration error's own cause may quote the URL.
            sqlx::Error::Configuration(_) => None,
            other => other.source(),
        }
    }
}

/// `?` on a `sqlx::Error` in code returning `payout_core::Result`.
pub(crate) fn db(e: sqlx::Error) -> Error {
    let kind = kind_of(&e);
    let message = describe(&e);
    StoreError::new(kind, message).with_source(DatabaseError(e)).into()
}

/// A migration that failed.
pub(crate) fn migration(e: sqlx::migrate::MigrateError) -> Error {
    let message = format!("migration failed: {}", redact(&e.to_string()));
    match e {
        sqlx::migrate::MigrateError::Execute(inner) => StoreError::new(kind_of(&inner), message)
            .with_source(DatabaseError(inner))
            .into(),
        // A history with versions the store does not know: another application's migrations
        // share the store's `_sqlx_migrations`.
        sqlx::migrate::MigrateError::VersionMissing(version) => StoreError::new(
            StoreErrorKind::Other,
            format!(
                "migration failed: the database's migration history holds version {version}, which is not one of \
                 the store's; another application's migrations share it. Give the store a schema of its own \
                 (Postgres: PgStore::connect_in, postgres::migrate) or a database file of its own (SQLite)"
            ),
        )
        .into(),
        _ => StoreError::new(StoreErrorKind::Other, message).into(),
    }
}

/// A row that does not read back.
pub(crate) fn corrupt(what: &'static str, detail: impl fmt::Display) -> Error {
    StoreError::new(
        StoreErrorKind::Corrupt,
        format!("unreadable {what} in the database: {detail}"),
    )
    .into()
}

/// A store invariant that does not hold.
pub(crate) fn broken(what: impl Into<String>) -> Error {
    StoreError::new(StoreErrorKind::Corrupt, what).into()
}

/// True when the error is a unique (or primary key) violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| matches!(d.kind(), sqlx::error::ErrorKind::UniqueViolation))
}

/// What a caller should make of `e`.
fn kind_of(e: &sqlx::Error) -> StoreErrorKind {
    use sqlx::Error as E;
    match e {
        E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::WorkerCrashed | E::Protocol(_) => {
            StoreErrorKind::Unavailable
        }
        E::Database(d) => {
            let code = d.code();
            let code = code.as_deref().unwrap_or_default();
            match code {
                // Postgres: connection exceptions (class 08), too many connections, shutting down or
                // starting up, out of resources.
                c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57P") => StoreErrorKind::Unavailable,
                // SQLite: busy and locked (primary result codes 5 and 6, with their extended codes).
                "5" | "6" | "261" | "517" | "262" => StoreErrorKind::Unavailable,
                // Postgres: serialization failure, deadlock; any integrity constraint.
                "40001" | "40P01" => StoreErrorKind::Conflict,
                c if c.starts_with("23") => StoreErrorKind::Conflict,
                _ if !matches!(d.kind(), sqlx::error::ErrorKind::Other) => StoreErrorKind::Conflict,
                _ => StoreErrorKind::Other,
            }
        }
        E::RowNotFound | E::ColumnNotFound(_) | E::ColumnDecode { .. } | E::Decode(_) | E::TypeNotFound { .. } => {
            StoreErrorKind::Corrupt
        }
        _ => StoreErrorKind::Other,
    }
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

    /// Every `Display` and `Debug` along the error chain, as a host's logger would print them.
    fn chain(e: &Error) -> String {
        let mut out = format!("{e} {e:?}");
        let mut cause = std::error::Error::source(e);
        while let Some(c) = cause {
            out += &format!(" | {c} {c:?}");
            cause = c.source();
        }
        out
    }

    #[test]
    fn configuration_errors_say_nothing_of_the_url() {
        let e = sqlx::Error::Configuration("postgres://app:hunter2@host/db is bad".into());
        let e = db(e);
        let text = chain(&e);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(matches!(&e, Error::Store(s) if s.kind() == StoreErrorKind::Other));
    }

    #[test]
    fn kinds_tell_unavailable_from_conflict_from_corrupt() {
        let kind = |e: sqlx::Error| match db(e) {
            Error::Store(s) => s.kind(),
            other => panic!("{other:?}"),
        };
        assert_eq!(kind(sqlx::Error::PoolTimedOut), StoreErrorKind::Unavailable);
        assert_eq!(kind(sqlx::Error::PoolClosed), StoreErrorKind::Unavailable);
        assert_eq!(
            kind(sqlx::Error::Io(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset
            ))),
            StoreErrorKind::Unavailable
        );
        assert_eq!(kind(sqlx::Error::ColumnNotFound("x".into())), StoreErrorKind::Corrupt);
        assert!(StoreErrorKind::Unavailable.is_retryable() && !StoreErrorKind::Corrupt.is_retryable());
        let e = db(sqlx::Error::PoolTimedOut);
        let Error::Store(store) = &e else { panic!() };
        let cause = std::error::Error::source(store)
            .and_then(|c| c.downcast_ref::<DatabaseError>())
            .expect("the driver error is the cause");
        assert!(matches!(cause.sqlx(), sqlx::Error::PoolTimedOut));
        assert_eq!(
            e.to_string(),
            "store error (unavailable): timed out waiting for a database connection"
        );
    }
}
