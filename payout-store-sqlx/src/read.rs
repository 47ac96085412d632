//! The reading half of the store, written once for both dialects.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc};
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use payout_core::domain::{AuditEntry, Payout, PayoutAttempt, PayoutId, PayoutItem, Provider};
use payout_core::provider::EventReference;
use payout_core::status::PayoutStatus;
use payout_core::store::{CarryOver, Cursor, ExportRow, Page, PayoutFilter, PayoutPage};
use payout_core::{Error, Result};

use crate::db::{Args, Db, RowExt, args};
use crate::error::db;
use crate::rows::{
    self, ATTEMPT_COLUMNS, AUDIT_COLUMNS, CARRY_OVER_COLUMNS, CARRY_OVER_IS_OPEN, Currencies, EXPORT_COLUMNS,
    ExportRowExt, ITEM_COLUMNS, PAYOUT_COLUMNS,
};

/// How many rows [`stream()`] reads per query.
pub(crate) const STREAM_CHUNK: i64 = 1000;

/// How [`export_rows`] reads: 10,000 rows per query (starting a query takes about as long as
/// reading one or two thousand rows; two chunks of rows are a few MB), handed over 1,000 at a time.
const EXPORT_CHUNKS: Chunking = Chunking {
    rows: 10_000,
    batch: 1_000,
};

/// The list order: newest first, ties broken by id.
const NEWEST_FIRST: &str = "ORDER BY created_at DESC, id DESC";

pub(crate) async fn get<D: Db>(d: &D, id: &PayoutId) -> Result<Payout> {
    let sql = format!("SELECT {PAYOUT_COLUMNS} FROM payouts WHERE id = $1");
    match d.fetch_optional(&sql, args![id.as_str()]).await.map_err(db)? {
        Some(row) => rows::payout(&row),
        None => Err(Error::NotFound(id.clone())),
    }
}

/// `NotFound` unless the payout exists.
async fn require<D: Db>(d: &D, id: &PayoutId) -> Result<()> {
    let found = d
        .fetch_optional("SELECT 1 AS one FROM payouts WHERE id = $1", args![id.as_str()])
        .await
        .map_err(db)?;
    found.map(|_| ()).ok_or_else(|| Error::NotFound(id.clone()))
}

/// The `WHERE` clause of `filter` (empty when it filters nothing), its values pushed onto `args`.
fn filter_clause(filter: &PayoutFilter, after: Option<&Cursor>, args: &mut Args) -> String {
    let mut conditions = Vec::new();
    if let Some(status) = filter.status {
        conditions.push(format!("status = {}", args.push(status.as_str())));
    }
    if let Some(doctor) = &filter.doctor_id {
        conditions.push(format!("doctor_id = {}", args.push(doctor.as_str())));
    }
    if let Some(provider) = filter.provider {
        conditions.push(format!("provider = {}", args.push(provider.as_str())));
    }
    if let Some(from) = filter.created_from {
        conditions.push(format!("created_at >= {}", args.push(start_of(from))));
    }
    if let Some(to) = filter.created_to {
        // Through the end of that day: before the next one starts.
        if let Some(next) = to.checked_add_days(Days::new(1)) {
            conditions.push(format!("created_at < {}", args.push(start_of(next))));
        }
    }
    if let Some(c) = after {
        let at = args.push(c.created_at);
        let id = args.push(c.id.as_str());
        conditions.push(format!("(created_at, id) < ({at}, {id})"));
    }
    if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    }
}

fn start_of(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

pub(crate) async fn list<D: Db>(d: &D, filter: &PayoutFilter, page: &Page) -> Result<PayoutPage> {
    let limit = page.limit.min(Page::MAX_LIMIT);

    let total = count(d, filter).await?;

    let mut args = Args::new();
    let clause = filter_clause(filter, page.after.as_ref(), &mut args);
    let skip = if page.after.is_some() {
        0
    } else {
        i64::try_from(page.skip).unwrap_or(i64::MAX)
    };
    let limit_ph = args.push(i64::from(limit));
    let skip_ph = args.push(skip);
    let sql = format!("SELECT {PAYOUT_COLUMNS} FROM payouts {clause} {NEWEST_FIRST} LIMIT {limit_ph} OFFSET {skip_ph}");
    let payouts = d
        .fetch_all(&sql, args)
        .await
        .map_err(db)?
        .iter()
        .map(rows::payout)
        .collect::<Result<Vec<_>>>()?;
    let next = if limit > 0 && payouts.len() == limit as usize {
        payouts.last().map(Cursor::after)
    } else {
        None
    };
    Ok(PayoutPage { payouts, total, next })
}

/// How many payouts match `filter`.
///
/// Whole months come from `payout_tallies` (kept by triggers, see the migration), so a broad
/// filter reads a few hundred tallies instead of counting up to every payout; the days of a
/// partial month at either end of a date range, and a doctor's payouts (few, and not tallied), are
/// counted in `payouts` through their indexes.
async fn count<D: Db>(d: &D, filter: &PayoutFilter) -> Result<u64> {
    if filter.doctor_id.is_some() {
        return count_rows(d, filter).await;
    }
    // Tallied: the months from `full_from` (inclusive) to `full_to` (exclusive); `None` is open.
    let full_from = filter.created_from.map(|from| {
        if from.day() == 1 {
            from
        } else {
            first_of_month(from)
                .checked_add_months(Months::new(1))
                .unwrap_or(NaiveDate::MAX)
        }
    });
    // The day after `created_to`; without one (`NaiveDate::MAX`) the range is open, as in `filter_clause`.
    let end = filter.created_to.and_then(|to| to.checked_add_days(Days::new(1)));
    let full_to = end.map(first_of_month);
    if matches!((full_from, full_to), (Some(a), Some(b)) if a >= b) {
        return count_rows(d, filter).await;
    }
    let mut total = count_tallies(d, filter, full_from, full_to).await?;
    if let (Some(from), Some(a)) = (filter.created_from, full_from) {
        if from < a {
            total += count_rows(d, &days(filter, from, a)).await?;
        }
    }
    if let (Some(b), Some(end)) = (full_to, end) {
        if b < end {
            total += count_rows(d, &days(filter, b, end)).await?;
        }
    }
    Ok(total)
}

fn first_of_month(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

/// `filter` narrowed to the days from `from` up to (not including) `until`.
fn days(filter: &PayoutFilter, from: NaiveDate, until: NaiveDate) -> PayoutFilter {
    PayoutFilter {
        created_from: Some(from),
        created_to: until.pred_opt(),
        ..filter.clone()
    }
}

/// `COUNT(*)` of the payouts matching `filter`.
async fn count_rows<D: Db>(d: &D, filter: &PayoutFilter) -> Result<u64> {
    let mut args = Args::new();
    let sql = format!(
        "SELECT COUNT(*) AS n FROM payouts {}",
        filter_clause(filter, None, &mut args)
    );
    read_count(d, &sql, args).await
}

/// The tallied payouts of `filter`'s status and provider created in the months from `from` up to
/// (not including) `until`.
async fn count_tallies<D: Db>(
    d: &D,
    filter: &PayoutFilter,
    from: Option<NaiveDate>,
    until: Option<NaiveDate>,
) -> Result<u64> {
    let mut args = Args::new();
    let mut conditions = Vec::new();
    if let Some(status) = filter.status {
        conditions.push(format!("status = {}", args.push(status.as_str())));
    }
    if let Some(provider) = filter.provider {
        conditions.push(format!("provider = {}", args.push(provider.as_str())));
    }
    if let Some(from) = from {
        conditions.push(format!("month >= {}", args.push(from)));
    }
    if let Some(until) = until {
        conditions.push(format!("month < {}", args.push(until)));
    }
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    // SUM of BIGINT is NUMERIC in Postgres: cast back.
    let sql = format!("SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) AS n FROM payout_tallies {clause}");
    read_count(d, &sql, args).await
}

async fn read_count<D: Db>(d: &D, sql: &str, args: Args) -> Result<u64> {
    Ok(match d.fetch_optional(sql, args).await.map_err(db)? {
        Some(row) => u64::try_from(row.int("n").map_err(db)?).unwrap_or(0),
        None => 0,
    })
}

/// One chunk of the stream: at most [`STREAM_CHUNK`] rows after `after`.
async fn chunk<D: Db>(d: &D, filter: &PayoutFilter, after: Option<&Cursor>) -> Result<Vec<Payout>> {
    let mut args = Args::new();
    let clause = filter_clause(filter, after, &mut args);
    let limit = args.push(STREAM_CHUNK);
    let sql = format!("SELECT {PAYOUT_COLUMNS} FROM payouts {clause} {NEWEST_FIRST} LIMIT {limit}");
    d.fetch_all(&sql, args)
        .await
        .map_err(db)?
        .iter()
        .map(rows::payout)
        .collect()
}

/// Every matching payout, newest first, read in keyset chunks.
///
/// Each chunk is its own short query, so no connection (and, in SQLite, no read snapshot that
/// holds back the WAL checkpoint) is kept while the consumer writes its export, and a
/// single-connection pool (`sqlite::memory:`) can serve other calls between chunks. The keyset
/// (`created_at`, `id`) never changes for a row, so no row is read twice.
pub(crate) fn stream<D: Db>(d: D, filter: PayoutFilter) -> BoxStream<'static, Result<Payout>> {
    enum Next {
        After(Option<Cursor>),
        Done,
    }
    stream::unfold(Next::After(None), move |next| {
        let d = d.clone();
        let filter = filter.clone();
        async move {
            let after = match next {
                Next::After(after) => after,
                Next::Done => return None,
            };
            match chunk(&d, &filter, after.as_ref()).await {
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let next = if rows.len() < STREAM_CHUNK as usize {
                        Next::Done
                    } else {
                        Next::After(rows.last().map(Cursor::after))
                    };
                    Some((stream::iter(rows.into_iter().map(Ok)).boxed(), next))
                }
                Err(e) => Some((stream::iter([Err(e)]).boxed(), Next::Done)),
            }
        }
    })
    .flatten()
    .boxed()
}

/// How many rows each of [`export_rows`]' queries reads, and how many it hands over together.
#[derive(Debug, Clone, Copy)]
struct Chunking {
    rows: usize,
    batch: usize,
}

impl Chunking {
    /// The batches of one chunk.
    fn batches(&self) -> usize {
        self.rows.div_ceil(self.batch)
    }
}

/// What the reader of [`export_rows`] hands over.
enum ExportBatch {
    Rows(Vec<ExportRow>),
    Failed(Error),
    /// Every row was handed over.
    End,
}

/// The export's few columns of every matching payout, newest first: the rows of [`stream()`],
/// decoded by position.
///
/// A reader task reads them in keyset chunks of [`EXPORT_CHUNKS`], each chunk one query whose rows
/// are decoded as they arrive and handed over in batches; it runs up to one chunk ahead of its
/// consumer, so the database reads while the consumer writes. Before each query the reader waits
/// until the consumer has room for the whole chunk, so a query never waits on the consumer: a
/// connection is held only while a chunk arrives, never while the consumer writes (a
/// single-connection pool serves the consumer's own calls in between), and each snapshot lasts
/// one chunk. At most two chunks' rows wait for the consumer; dropping the stream stops the
/// reader.
pub(crate) fn export_rows<D>(d: D, filter: PayoutFilter) -> BoxStream<'static, Result<ExportRow>>
where
    D: Db,
    D::Row: ExportRowExt,
{
    export_rows_in(d, filter, EXPORT_CHUNKS)
}

/// [`export_rows`] in chunks of `chunking`.
fn export_rows_in<D>(d: D, filter: PayoutFilter, chunking: Chunking) -> BoxStream<'static, Result<ExportRow>>
where
    D: Db,
    D::Row: ExportRowExt,
{
    // Room for two chunks: one the consumer works through while the next one arrives.
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<ExportBatch>(2 * chunking.batches());
    let mut reader = Some(async move {
        let last = match read_export(&d, &filter, chunking, &sender).await {
            Ok(()) => ExportBatch::End,
            Err(e) => ExportBatch::Failed(e),
        };
        let _ = sender.send(last).await;
    });
    let mut ended = false;
    stream::poll_fn(move |cx| {
        // Started on first poll, so building the stream needs no runtime.
        if let Some(reader) = reader.take() {
            tokio::spawn(reader);
        }
        if ended {
            return std::task::Poll::Ready(None);
        }
        receiver.poll_recv(cx).map(|batch| match batch {
            Some(ExportBatch::Rows(rows)) => Some(stream::iter(rows.into_iter().map(Ok)).left_stream()),
            Some(ExportBatch::End) => {
                ended = true;
                None
            }
            Some(ExportBatch::Failed(e)) => {
                ended = true;
                Some(stream::iter(vec![Err(e)]).right_stream())
            }
            // The reader stopped without saying it had read everything (it panicked, or its
            // runtime shut down): an export must not look complete when it is not.
            None => {
                ended = true;
                let e = Error::Store("the export's reader stopped before the last row".into());
                Some(stream::iter(vec![Err(e)]).right_stream())
            }
        })
    })
    .flatten()
    .boxed()
}

/// The reader of [`export_rows`]: sends every matching row, chunk by chunk, to `sender`; stops
/// early (with `Ok`) when the stream was dropped.
async fn read_export<D>(
    d: &D,
    filter: &PayoutFilter,
    chunking: Chunking,
    sender: &tokio::sync::mpsc::Sender<ExportBatch>,
) -> Result<()>
where
    D: Db,
    D::Row: ExportRowExt,
{
    let mut after: Option<Cursor> = None;
    let mut currencies = Currencies::default();
    loop {
        // Room for the whole chunk first: then nothing below waits for the consumer.
        let Ok(mut room) = sender.reserve_many(chunking.batches()).await else {
            return Ok(());
        };
        let mut args = Args::new();
        let clause = filter_clause(filter, after.as_ref(), &mut args);
        let limit = args.push(i64::try_from(chunking.rows).unwrap_or(i64::MAX));
        let sql = format!("SELECT {EXPORT_COLUMNS} FROM payouts {clause} {NEWEST_FIRST} LIMIT {limit}");
        let mut rows = d.fetch_stream(&sql, args);
        let mut batch = Vec::with_capacity(chunking.batch);
        let mut read = 0;
        while let Some(row) = rows.next().await {
            let row = row.map_err(db)?;
            batch.push(row.export_row(&mut currencies)?);
            read += 1;
            if read == chunking.rows {
                // The chunk's last row: the next chunk starts after it.
                after = Some(Cursor {
                    created_at: row.ts("created_at").map_err(db)?,
                    id: row.text("id").map_err(db)?.into(),
                });
            }
            if batch.len() == chunking.batch {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(chunking.batch));
                hand_over(&mut room, full)?;
            }
        }
        drop(rows);
        if !batch.is_empty() {
            hand_over(&mut room, batch)?;
        }
        if read < chunking.rows {
            return Ok(());
        }
    }
}

/// Sends one batch into the room reserved for it.
fn hand_over(room: &mut tokio::sync::mpsc::PermitIterator<'_, ExportBatch>, rows: Vec<ExportRow>) -> Result<()> {
    match room.next() {
        Some(permit) => {
            permit.send(ExportBatch::Rows(rows));
            Ok(())
        }
        // A chunk never holds more batches than were reserved for it.
        None => Err(Error::Store("an export chunk outgrew the room reserved for it".into())),
    }
}

pub(crate) async fn items<D: Db>(d: &D, id: &PayoutId) -> Result<Vec<PayoutItem>> {
    require(d, id).await?;
    let sql = format!("SELECT {ITEM_COLUMNS} FROM payout_items WHERE payout_id = $1 ORDER BY position");
    d.fetch_all(&sql, args![id.as_str()])
        .await
        .map_err(db)?
        .iter()
        .map(rows::item)
        .collect()
}

pub(crate) async fn attempts<D: Db>(d: &D, id: &PayoutId) -> Result<Vec<PayoutAttempt>> {
    let sql = format!("SELECT {ATTEMPT_COLUMNS} FROM payout_attempts WHERE payout_id = $1 ORDER BY attempt_no");
    let attempts: Vec<PayoutAttempt> = d
        .fetch_all(&sql, args![id.as_str()])
        .await
        .map_err(db)?
        .iter()
        .map(rows::attempt)
        .collect::<Result<_>>()?;
    // An attempt's foreign key proves its payout exists; only an empty answer needs the check (one
    // round trip fewer on a webhook's path).
    if attempts.is_empty() {
        require(d, id).await?;
    }
    Ok(attempts)
}

pub(crate) async fn find_attempt<D: Db>(
    d: &D,
    provider: Provider,
    reference: &EventReference,
) -> Result<Option<PayoutAttempt>> {
    let column = match reference {
        EventReference::ProviderReference(_) => "provider_reference",
        EventReference::IdempotencyKey(_) => "idempotency_key",
        other => return Err(Error::NotSupported(format!("finding an attempt by {other:?}"))),
    };
    // Several attempts may share a provider reference (a batch id): the newest wins.
    let sql = format!(
        "SELECT {ATTEMPT_COLUMNS} FROM payout_attempts WHERE provider = $1 AND {column} = $2 \
         ORDER BY created_at DESC, payout_id DESC, attempt_no DESC LIMIT 1"
    );
    d.fetch_optional(&sql, args![provider.as_str(), reference.as_str()])
        .await
        .map_err(db)?
        .as_ref()
        .map(rows::attempt)
        .transpose()
}

pub(crate) async fn webhook_event_seen<D: Db>(d: &D, provider: Provider, event_id: &str) -> Result<bool> {
    let row = d
        .fetch_optional(
            "SELECT 1 AS one FROM webhook_events WHERE provider = $1 AND event_id = $2",
            args![provider.as_str(), event_id],
        )
        .await
        .map_err(db)?;
    Ok(row.is_some())
}

pub(crate) async fn audit_trail<D: Db>(d: &D, id: &PayoutId) -> Result<Vec<AuditEntry>> {
    require(d, id).await?;
    // The identity column is the append order.
    let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_entries WHERE payout_id = $1 ORDER BY id");
    d.fetch_all(&sql, args![id.as_str()])
        .await
        .map_err(db)?
        .iter()
        .map(rows::audit)
        .collect()
}

pub(crate) async fn stuck_processing<D: Db>(d: &D, updated_before: DateTime<Utc>, limit: u32) -> Result<Vec<Payout>> {
    let sql = format!(
        "SELECT {PAYOUT_COLUMNS} FROM payouts WHERE status = $1 AND updated_at < $2 \
         ORDER BY updated_at, id LIMIT $3"
    );
    d.fetch_all(
        &sql,
        args![PayoutStatus::Processing.as_str(), updated_before, i64::from(limit)],
    )
    .await
    .map_err(db)?
    .iter()
    .map(rows::payout)
    .collect()
}

/// Never consumed, or consumed by a payout cancelled since; returned with `consumed_by: None`.
pub(crate) async fn open_carry_overs<D: Db>(d: &D, before: NaiveDate) -> Result<Vec<CarryOver>> {
    let sql = format!(
        "SELECT {CARRY_OVER_COLUMNS} FROM carry_overs WHERE period_end < $1 AND {CARRY_OVER_IS_OPEN} \
         ORDER BY doctor_id, period_start, period_end"
    );
    d.fetch_all(&sql, args![before])
        .await
        .map_err(db)?
        .iter()
        .map(|row| rows::carry_over(row).map(|c| CarryOver { consumed_by: None, ..c }))
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use futures::TryStreamExt;
    use payout_core::PayoutStore;
    use payout_core::status::PayoutStatus;
    use payout_core::store::PeriodBatch;
    use payout_core::testkit::fixtures::{self, at, month};

    use super::*;

    const ROWS: usize = 53;

    /// `ROWS` payouts in runs of four with one `created_at`, so chunks end inside a tie.
    async fn seed(store: &dyn PayoutStore) {
        let payouts = (0..ROWS)
            .map(|i| {
                let new = fixtures::new_payout(&format!("po_{i:03}"), &format!("dr-{i}"), month(2025, 1), &["500"]);
                fixtures::created_at(new, at(0) + Duration::seconds((i / 4) as i64))
            })
            .collect();
        store
            .create_period(PeriodBatch {
                payouts,
                carry_overs: Vec::new(),
            })
            .await
            .expect("seeding");
        let first = store.get(&"po_005".into()).await.expect("get");
        store
            .apply(fixtures::status_change(&first, PayoutStatus::Approved, at(1)))
            .await
            .expect("approve");
    }

    /// Runs a check that must not hang (a reader that loops forever without rows would).
    async fn within(check: impl std::future::Future<Output = ()>) {
        tokio::time::timeout(std::time::Duration::from_secs(60), check)
            .await
            .expect("the check finishes within a minute");
    }

    /// Every chunking reads the rows of `stream`, in order: chunks and batches of one row, chunks
    /// that end inside a tie, a last chunk that is exactly full, batches that do not divide a
    /// chunk; and the store serves other calls between the rows.
    async fn export_rows_match_stream_in_any_chunking<D>(store: &dyn PayoutStore, pool: D)
    where
        D: Db,
        D::Row: ExportRowExt,
    {
        seed(store).await;
        let chunkings = [(1, 1), (4, 4), (7, 3), (10, 5), (53, 10), (53, 53), (100, 7)];
        for filter in [
            PayoutFilter::default(),
            PayoutFilter {
                status: Some(PayoutStatus::Pending),
                ..Default::default()
            },
        ] {
            let streamed: Vec<ExportRow> = store
                .stream(filter.clone())
                .map_ok(ExportRow::from)
                .try_collect()
                .await
                .expect("stream");
            for (rows, batch) in chunkings {
                // One row more than expected at most, so a reader that repeats rows fails instead of
                // hanging (one that loops without rows times out, see `within`).
                let exported: Vec<ExportRow> = export_rows_in(pool.clone(), filter.clone(), Chunking { rows, batch })
                    .take(streamed.len() + 1)
                    .try_collect()
                    .await
                    .expect("export_rows");
                assert_eq!(exported, streamed, "chunks of {rows}, batches of {batch}, {filter:?}");
            }
        }
        let mut rows = export_rows_in(pool.clone(), PayoutFilter::default(), Chunking { rows: 7, batch: 3 });
        let mut n = 0;
        while let Some(row) = rows.try_next().await.expect("export_rows") {
            store.get(&row.id).await.expect("get while an export is read");
            n += 1;
            assert!(n <= ROWS, "more rows than were written");
        }
        assert_eq!(n, ROWS);
        // Dropped half-way, the reader stops and the store goes on serving.
        let mut rows = export_rows_in(pool.clone(), PayoutFilter::default(), Chunking { rows: 4, batch: 2 });
        rows.try_next().await.expect("export_rows").expect("a row");
        drop(rows);
        assert_eq!(
            store
                .list(&PayoutFilter::default(), &Page::new(1, 0))
                .await
                .expect("list")
                .total,
            ROWS as u64
        );
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn sqlite_export_rows_match_stream_in_any_chunking() {
        // One connection only: the reader must never hold it while the consumer needs it.
        let store = crate::SqliteStore::connect("sqlite::memory:").await.expect("store");
        within(export_rows_match_stream_in_any_chunking(&store, store.pool().clone())).await;
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn a_row_that_does_not_read_ends_the_export_with_an_error() {
        let store = crate::SqliteStore::connect("sqlite::memory:").await.expect("store");
        seed(&store).await;
        // The 21st row, newest first, in a currency this version does not know.
        sqlx::query("UPDATE payouts SET currency = 'XYZ' WHERE id = 'po_032'")
            .execute(store.pool())
            .await
            .expect("update");
        let read: Vec<Result<ExportRow>> = within_collect(export_rows_in(
            store.pool().clone(),
            PayoutFilter::default(),
            Chunking { rows: 7, batch: 3 },
        ))
        .await;
        assert_eq!(
            read.len(),
            21,
            "the rows before the bad one, then its error, then nothing"
        );
        assert!(read[..20].iter().all(Result::is_ok));
        assert!(
            matches!(&read[20], Err(Error::Store(m)) if m.contains("currency")),
            "{:?}",
            read[20]
        );
    }

    /// Every item of `rows`, failing instead of hanging if it never ends.
    async fn within_collect<T>(rows: BoxStream<'static, T>) -> Vec<T> {
        tokio::time::timeout(std::time::Duration::from_secs(60), rows.collect())
            .await
            .expect("the stream ends within a minute")
    }

    #[cfg(feature = "postgres")]
    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_export_rows_match_stream_in_any_chunking() {
        use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
        use std::str::FromStr;

        let Ok(url) = std::env::var("PAYOUTS_TEST_POSTGRES_URL") else {
            println!("skipped: PAYOUTS_TEST_POSTGRES_URL not set");
            return;
        };
        let options = PgConnectOptions::from_str(&url).expect("a Postgres URL");
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .expect("connecting");
        let schema = format!("payouts_test_export_{}", std::process::id());
        for statement in [
            format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
            format!("CREATE SCHEMA {schema}"),
        ] {
            sqlx::query(&statement).execute(&admin).await.expect("a schema");
        }
        // One connection here too.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.options([("search_path", schema.as_str())]))
            .await
            .expect("connecting to the schema");
        crate::postgres::setup(&pool).await.expect("migrations");
        let store = crate::PgStore::new(pool.clone());
        within(export_rows_match_stream_in_any_chunking(&store, pool.clone())).await;
        pool.close().await;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&admin)
            .await
            .expect("dropping the schema");
    }
}
