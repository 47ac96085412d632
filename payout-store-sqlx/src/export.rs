//! Reading every matching payout as a stream: whole payouts ([`stream()`]) and the export's few
//! columns ([`export_rows`]), both in keyset chunks so no query holds a connection while the
//! consumer works.

use futures::StreamExt;
use futures::stream::{self, BoxStream};
use payout_core::domain::Payout;
use payout_core::store::{Cursor, ExportRow, PayoutFilter};
use payout_core::{Error, Result};

use crate::db::{Args, Db, RowExt};
use crate::error::{broken, db};
use crate::read::{NEWEST_FIRST, filter_clause};
use crate::rows::{self, Currencies, EXPORT_COLUMNS, ExportRowExt, PAYOUT_READ_COLUMNS};

/// How many rows [`stream()`] reads per query.
pub(crate) const STREAM_CHUNK: i64 = 1000;

/// How [`export_rows`] reads by default: 10,000 rows per query (starting a query takes about as
/// long as reading one or two thousand rows; two chunks of rows are a few MB), handed over 1,000
/// at a time.
pub(crate) const EXPORT_CHUNKS: Chunking = Chunking {
    rows: 10_000,
    batch: 1_000,
};

/// One chunk of the stream: at most [`STREAM_CHUNK`] rows after `after`.
async fn chunk<D: Db>(d: &D, filter: &PayoutFilter, after: Option<&Cursor>) -> Result<Vec<Payout>> {
    let mut args = Args::new();
    let clause = filter_clause(d.dialect(), filter, after, &mut args);
    let limit = args.push(STREAM_CHUNK);
    let sql = format!("SELECT {PAYOUT_READ_COLUMNS} FROM payouts {clause} {NEWEST_FIRST} LIMIT {limit}");
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
pub(crate) struct Chunking {
    pub(crate) rows: usize,
    pub(crate) batch: usize,
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
/// A reader task reads them in keyset chunks of `chunking` (by default [`EXPORT_CHUNKS`]), each
/// chunk one query whose rows are decoded as they arrive and handed over in batches; it runs up to
/// one chunk ahead of its
/// consumer, so the database reads while the consumer writes. Before each query the reader waits
/// until the consumer has room for the whole chunk, so a query never waits on the consumer: a
/// connection is held only while a chunk arrives, never while the consumer writes (a
/// single-connection pool serves the consumer's own calls in between), and each snapshot lasts
/// one chunk. At most two chunks' rows wait for the consumer; dropping the stream stops the
/// reader.
pub(crate) fn export_rows<D>(d: D, filter: PayoutFilter, chunking: Chunking) -> BoxStream<'static, Result<ExportRow>>
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
                let e = broken("the export's reader stopped before the last row");
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
        let clause = filter_clause(d.dialect(), filter, after.as_ref(), &mut args);
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
        None => Err(broken("an export chunk outgrew the room reserved for it")),
    }
}
