//! SQLite's text time values (<https://sqlite.org/lang_datefunc.html>, "Time Values"), read as UTC
//! the way sqlx reads a `DateTime<Utc>` column: RFC 3339 first, then `YYYY-MM-DD HH:MM[:SS[.SSS]]`
//! with a `T` or a space, with `Z`, a `+HH:MM` offset or nothing (UTC). Used where the store reads
//! host timestamps out of a JSON array instead of a column (see the SQLite consultation query).

use chrono::{DateTime, NaiveDateTime, Utc};
#[cfg(feature = "sqlite")]
use chrono::{Datelike, SecondsFormat, Timelike};

/// The forms besides RFC 3339, each tried with an offset and as UTC without one.
const FORMATS: [&str; 12] = [
    "%F %T%.f",
    "%F %R",
    "%F %RZ",
    "%F %R%:z",
    "%F %T%.fZ",
    "%F %T%.f%:z",
    "%FT%R",
    "%FT%RZ",
    "%FT%R%:z",
    "%FT%T%.f",
    "%FT%T%.fZ",
    "%FT%T%.f%:z",
];

/// `text` as an instant, or `None` when it is none of SQLite's text forms.
pub(crate) fn parse(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    FORMATS.iter().find_map(|format| {
        DateTime::parse_from_str(text, format)
            .map(|t| t.with_timezone(&Utc))
            .or_else(|_| NaiveDateTime::parse_from_str(text, format).map(|t| t.and_utc()))
            .ok()
    })
}

/// How the store writes a timestamp into SQLite: UTC text of one fixed width, nanoseconds included,
/// so text order is time order and nothing is lost: `2025-02-01T08:00:00.000000000Z` (RFC 3339).
#[cfg(feature = "sqlite")]
pub(crate) fn format(t: &DateTime<Utc>) -> String {
    let mut out = String::with_capacity(30);
    push(&mut out, t);
    out
}

/// [`format()`] onto `out`. Written field by field: chrono's formatter interprets its format for every
/// value, and a period calculation writes a million of them. Years outside 0..=9999 and leap seconds
/// take chrono's path, which writes them its own way.
#[cfg(feature = "sqlite")]
pub(crate) fn push(out: &mut String, t: &DateTime<Utc>) {
    let nanos = t.nanosecond();
    if !(0..=9999).contains(&t.year()) || nanos >= 1_000_000_000 {
        out.push_str(&t.to_rfc3339_opts(SecondsFormat::Nanos, true));
        return;
    }
    push_digits(out, t.year() as u32, 4);
    digits_sep(out, '-', t.month(), 2);
    digits_sep(out, '-', t.day(), 2);
    digits_sep(out, 'T', t.hour(), 2);
    digits_sep(out, ':', t.minute(), 2);
    digits_sep(out, ':', t.second(), 2);
    digits_sep(out, '.', nanos, 9);
    out.push('Z');
}

#[cfg(feature = "sqlite")]
fn digits_sep(out: &mut String, sep: char, n: u32, width: u32) {
    out.push(sep);
    push_digits(out, n, width);
}

/// `n` in `width` decimal digits, zero-padded.
#[cfg(feature = "sqlite")]
fn push_digits(out: &mut String, n: u32, width: u32) {
    for k in (0..width).rev() {
        out.push(char::from(b'0' + (n / 10u32.pow(k) % 10) as u8));
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod format_tests {
    use super::*;
    use chrono::TimeZone;

    /// The fast path writes exactly what chrono writes, across years, every field's range and
    /// nanoseconds; the odd cases go through chrono itself.
    #[test]
    fn format_matches_rfc3339_with_nanoseconds() {
        let mut t = Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap();
        let step = chrono::Duration::seconds(7_777_777) + chrono::Duration::nanoseconds(123_456_789);
        while t.year() < 9999 {
            assert_eq!(format(&t), t.to_rfc3339_opts(SecondsFormat::Nanos, true));
            t += step;
        }
        for t in [
            Utc.with_ymd_and_hms(2025, 12, 31, 23, 59, 59).unwrap() + chrono::Duration::nanoseconds(999_999_999),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0).unwrap(),
            chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
                .unwrap()
                .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
                .unwrap()
                .and_utc(),
        ] {
            assert_eq!(format(&t), t.to_rfc3339_opts(SecondsFormat::Nanos, true));
        }
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;

    /// Every form, and near misses, read here exactly as sqlx reads the same text from a column.
    #[tokio::test]
    async fn reads_text_as_sqlx_reads_a_column() {
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.expect("pool");
        let samples = [
            "2025-01-10T09:00:00Z",
            "2025-01-10T09:00:00.123456Z",
            "2025-01-10T09:00:00.123456789+03:00",
            "2025-01-10 09:00:00",
            "2025-01-10 09:00:00.5",
            "2025-01-10 09:00",
            "2025-01-10 09:00Z",
            "2025-01-10 09:00-05:30",
            "2025-01-10 09:00:00Z",
            "2025-01-10 09:00:00.000001+00:00",
            "2025-01-10T09:00",
            "2025-01-10T09:00Z",
            "2025-01-10T09:00+01:00",
            "2025-01-10T09:00:00",
            "2025-01-10T09:00:00.25",
            "2025-01-31T23:59:59.999999-00:00",
            "2025-01-10",
            "2025-01-10T9:00:00Z",
            "09:00:00",
            "yesterday",
            "",
            "2025-13-01 00:00:00",
        ];
        let mut read = 0;
        for text in samples {
            // A text sqlx cannot read as a time is an error there, `None` here.
            let row: (Option<DateTime<Utc>>,) = sqlx::query_as("SELECT ? AS t")
                .bind(text)
                .fetch_one(&pool)
                .await
                .unwrap_or_default();
            assert_eq!(parse(text), row.0, "{text:?}");
            read += usize::from(row.0.is_some());
        }
        // The 16 forms above the date alone, and the one-digit hour, which chrono accepts too.
        assert_eq!(read, 17, "time values among the samples");
    }
}
