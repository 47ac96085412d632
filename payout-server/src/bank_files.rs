//! Bank files (feature `bank-files`): finance downloads the selected bank payouts as a CSV,
//! pain.001 or NACHA file, which marks them sent by that file, uploads it to the bank, and records
//! the bank's confirmation.
//!
//! | route | what |
//! |---|---|
//! | `GET /api/admin/bank-files?format=…&status=&doctor=&provider=&startDate=&endDate=` | makes a file of the selection's `APPROVED` payouts whose doctor has bank details, marks them `PROCESSING` (the file's id as reference, audited) and streams it |
//! | `GET /api/admin/bank-files/{file}?format=…` | the same file again, from its stored attempts: the same members, keys, amounts and accounts (nothing is marked) |
//! | `POST /api/admin/bank-files/{file}/settle` | the bank's confirmation: `{"action":"all_paid"}` or `{"action":"returned","items":[{"reference","reason"}]}` |
//! | `GET /api/admin/runs/{id}/bank-file?format=…` | the run's file: its `APPROVED` members whose doctor's method is `BANK_TRANSFER` (each result stored on the run) |
//! | `GET /api/admin/runs/{id}/bank-file/{file}?format=…`, `POST …/{file}/settle` | as above, for a file of that run (another run's file is not found) |
//!
//! A file is answered with `Content-Disposition: attachment; filename="{file}.{csv|xml|ach}"`,
//! `X-Bank-File-Id`, `X-Bank-File-Transfers` (how many), `X-Bank-File-Total` (the exact sum per
//! currency) and `X-Bank-File-Left-Out` (selected payouts not in it, unchanged: no bank details, the
//! approval policy, changed meanwhile). Its totals are checked before its first byte is sent: the
//! written file is read back, and its transfers, its sums and its own control records (pain.001's
//! headers, NACHA's file control) must be exactly what was marked, or it is refused. The payer's
//! settings come from [`ServerConfig::bank_files`](crate::ServerConfig::bank_files)
//! ([`BankFileConfig`], the `PAYOUTS_DEBTOR_*` and `PAYOUTS_NACHA_*` variables in the demo); a format that
//! is not configured is refused before anything is marked.
//!
//! Reading a file again gives the same transfers, so a lost download is not lost money; it is also
//! a second copy of an instruction to pay: upload one file once (pain.001 banks refuse a second
//! `MsgId`, the file's id; NACHA and CSV uploads rely on finance).

use std::convert::Infallible;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::NaiveDate;
use payout_core::domain::{BankFileId, Provider, RunId};
use payout_core::error::{BankFileError, Error};
use payout_core::service::{BankFile, BankFileRequest, BankPayouts, ReturnedItem, Settlement, SettlementReport};
use payout_core::status::PayoutStatus;
use payout_providers::bank::{BankFileConfig, BankFileFormat, FileError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::AppState;
use crate::api::{ApiJson, ApiPath, ApiQuery, ListQuery, query_value};
use crate::auth::Admin;
use crate::error::ApiError;
use crate::wire::ErrorBody;

/// The bank file routes that change payouts (making a file, settling one), for the rate-limited
/// mutations of [`api_router`](crate::api_router).
pub(crate) fn mutations() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/admin/bank-files", get(make_file))
        .route("/api/admin/bank-files/{file}/settle", post(settle))
        .route("/api/admin/runs/{id}/bank-file", get(make_run_file))
        .route("/api/admin/runs/{id}/bank-file/{file}/settle", post(settle_run_file))
}

/// The bank file routes that only read.
pub(crate) fn reads() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/admin/bank-files/{file}", get(read_file))
        .route("/api/admin/runs/{id}/bank-file/{file}", get(read_run_file))
}

/// The bank file routes' part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(make_file, read_file, settle, make_run_file, read_run_file, settle_run_file),
    components(schemas(
        FileFormat,
        SettleBankFile,
        ReturnedItemBody,
        SettlementBody,
        SettlementView,
        NotRecorded
    ))
)]
pub struct BankFilesDoc;

/// A bank file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// The original system's CSV (`text/csv`).
    Csv,
    /// ISO 20022 `pain.001.001.03` (`application/xml`).
    Pain001,
    /// NACHA, US ACH credits (`text/plain`).
    Nacha,
}

impl From<FileFormat> for BankFileFormat {
    fn from(f: FileFormat) -> Self {
        match f {
            FileFormat::Csv => BankFileFormat::Csv,
            FileFormat::Pain001 => BankFileFormat::Pain001,
            FileFormat::Nacha => BankFileFormat::Nacha,
        }
    }
}

/// A new bank file: its format and the selection (the admin list's filters; only `APPROVED`
/// payouts are sent, so `status` may only be `APPROVED`).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MakeFileQuery {
    /// The file's format.
    pub format: FileFormat,
    /// Only this status (`APPROVED`, the default).
    #[serde(default, deserialize_with = "query_value::status")]
    #[param(value_type = Option<crate::openapi::PayoutStatusName>)]
    pub status: Option<PayoutStatus>,
    /// Only this doctor id.
    #[serde(default, deserialize_with = "query_value::text")]
    pub doctor: Option<String>,
    /// Only this provider (a payout's provider is set once it was sent).
    #[serde(default, deserialize_with = "query_value::provider")]
    #[param(value_type = Option<crate::openapi::ProviderName>)]
    pub provider: Option<Provider>,
    /// Created on or after this day (UTC).
    #[serde(default, deserialize_with = "query_value::date")]
    pub start_date: Option<NaiveDate>,
    /// Created on or before this day (UTC).
    #[serde(default, deserialize_with = "query_value::date")]
    pub end_date: Option<NaiveDate>,
}

/// The format of a file read again.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FileFormatQuery {
    /// The file's format.
    pub format: FileFormat,
}

/// The bank's confirmation of a file, named by `action`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum SettleBankFile {
    /// Every transfer of the file was paid: each still unconfirmed becomes `PAID`.
    AllPaid {},
    /// These transfers came back and every other was paid. A return before payment was confirmed
    /// makes the payout `FAILED` (it may be retried); one after an earlier settlement made it
    /// `PAID` makes it `RETURNED`.
    Returned {
        /// The returned transfers (at least one).
        items: Vec<ReturnedItemBody>,
    },
}

impl From<SettleBankFile> for Settlement {
    fn from(body: SettleBankFile) -> Self {
        match body {
            SettleBankFile::AllPaid {} => Settlement::AllPaid,
            SettleBankFile::Returned { items } => Settlement::Returned {
                items: items
                    .into_iter()
                    .map(|i| ReturnedItem {
                        reference: i.reference,
                        reason: i.reason,
                    })
                    .collect(),
            },
        }
    }
}

/// A transfer the bank returned.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnedItemBody {
    /// The payout's id, the attempt's idempotency key, or the file's end-to-end id for it.
    pub reference: String,
    /// The bank's reason (1 to 500 characters).
    pub reason: String,
}

/// What recording a settlement did.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettlementBody {
    /// The settlement.
    pub data: SettlementView,
}

/// What recording a settlement did, by payout.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettlementView {
    /// The file.
    pub file_id: String,
    /// Now `PAID`.
    pub paid: Vec<String>,
    /// Returned before payment was confirmed: now `FAILED`.
    pub failed: Vec<String>,
    /// Returned after they were recorded paid: now `RETURNED`.
    pub returned: Vec<String>,
    /// Confirmed before: left as they were.
    pub unchanged: Vec<String>,
    /// Changed concurrently, so not recorded: settling again records them.
    pub not_recorded: Vec<NotRecorded>,
}

/// A member a settlement could not record.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotRecorded {
    /// The payout.
    pub id: String,
    /// Why.
    pub error: String,
}

impl SettlementView {
    fn new(file: &BankFileId, r: SettlementReport) -> Self {
        let ids = |v: Vec<payout_core::domain::PayoutId>| v.into_iter().map(|id| id.to_string()).collect();
        SettlementView {
            file_id: file.to_string(),
            paid: ids(r.paid),
            failed: ids(r.failed),
            returned: ids(r.returned),
            unchanged: ids(r.unchanged),
            not_recorded: r
                .not_recorded
                .into_iter()
                .map(|(id, error)| NotRecorded {
                    id: id.to_string(),
                    error,
                })
                .collect(),
        }
    }
}

/// A format's refusal as the engine's error: not configured, or unwritable.
fn file_error(e: FileError) -> Error {
    match e {
        FileError::NotConfigured(why) => BankFileError::NotConfigured(why),
        other => BankFileError::Unwritable(other.to_string()),
    }
    .into()
}

fn file_id(raw: &str) -> Result<BankFileId, ApiError> {
    BankFileId::parse(raw).map_err(ApiError::from)
}

/// `GET /api/admin/bank-files`: a new bank file of the selection's bank payouts, which marks them
/// sent by it.
#[utoipa::path(
    get, path = "/api/admin/bank-files", tag = "admin", summary = "Make a bank file (marks its payouts sent)",
    params(MakeFileQuery),
    responses(
        (status = 200, description = "The file, streamed once its totals are checked. Its payouts are PROCESSING with the file's id as reference; `X-Bank-File-Left-Out` counts selected payouts left out (unchanged)",
         content((String = "text/csv"), (String = "application/xml"), (String = "text/plain")),
         headers(
            ("X-Bank-File-Id" = String, description = "The file's id: its members' reference, and how it is read again and settled"),
            ("X-Bank-File-Transfers" = u64, description = "How many transfers it holds"),
            ("X-Bank-File-Total" = String, description = "The exact sum per currency, e.g. `1520.51 USD`"),
            ("X-Bank-File-Left-Out" = u64, description = "Selected payouts not in it"),
            ("Content-Disposition" = String, description = "attachment; filename=\"{file}.{csv|xml|ach}\""),
         )),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, description = "Nothing to send, a format not configured, or a file the format refuses; nothing was marked", body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "Marked, but the file could not be written: read it again by its id (X-Bank-File-Id)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn make_file(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiQuery(q): ApiQuery<MakeFileQuery>,
) -> Result<Response, ApiError> {
    let format = BankFileFormat::from(q.format);
    let config = &state.config.bank_files;
    config.require(format).map_err(file_error)?;
    let selection = ListQuery {
        status: q.status,
        doctor: q.doctor,
        provider: q.provider,
        start_date: q.start_date,
        end_date: q.end_date,
        ..Default::default()
    }
    .filter()?;
    let request = BankFileRequest {
        selection,
        payouts: BankPayouts::WithBankDetails,
    };
    // The whole file, written and its totals checked, before any payout is marked.
    let check = |planned: &BankFile| config.write(format, planned).map(drop).map_err(|e| e.to_string());
    let file = state.service.send_by_file(&user.actor(), &request, check).await?;
    Ok(file_response(config, format, &file))
}

/// `GET /api/admin/bank-files/{file}`: a file again, exactly as it was made.
#[utoipa::path(
    get, path = "/api/admin/bank-files/{file}", tag = "admin", summary = "Read a bank file again",
    params(("file" = String, Path, description = "The file's id (`bf-` and 32 hex digits)"), FileFormatQuery),
    responses(
        (status = 200, description = "The same transfers as when it was made (nothing is marked)",
         content((String = "text/csv"), (String = "application/xml"), (String = "text/plain")),
         headers(
            ("X-Bank-File-Id" = String, description = "The file's id"),
            ("X-Bank-File-Transfers" = u64, description = "How many transfers it holds"),
            ("X-Bank-File-Total" = String, description = "The exact sum per currency"),
            ("Content-Disposition" = String, description = "attachment; filename=\"{file}.{csv|xml|ach}\""),
         )),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such file", body = ErrorBody),
        (status = 422, description = "A format not configured", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn read_file(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath(raw): ApiPath<String>,
    ApiQuery(q): ApiQuery<FileFormatQuery>,
) -> Result<Response, ApiError> {
    let id = file_id(&raw)?;
    let format = BankFileFormat::from(q.format);
    let config = &state.config.bank_files;
    config.require(format).map_err(file_error)?;
    let file = state.service.bank_file(&user.actor(), &id).await?;
    Ok(file_response(config, format, &file))
}

/// `POST /api/admin/bank-files/{file}/settle`: the bank's confirmation.
#[utoipa::path(
    post, path = "/api/admin/bank-files/{file}/settle", tag = "admin", summary = "Record a bank file's settlement",
    params(("file" = String, Path, description = "The file's id")),
    request_body = SettleBankFile,
    responses(
        (status = 200, description = "What was recorded, by payout", body = SettlementBody),
        (status = 400, description = "A bad body, an item that is not in the file (`unknown_item`), an item named twice", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such file", body = ErrorBody),
        (status = 409, description = "Recorded already, or an item was settled otherwise since (`bank_file_settled`); nothing changed", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("bearer" = []))
)]
pub async fn settle(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<SettleBankFile>,
) -> Result<Json<SettlementBody>, ApiError> {
    let id = file_id(&raw)?;
    let report = state.service.settle_bank_file(&user.actor(), &id, &body.into()).await?;
    Ok(Json(SettlementBody {
        data: SettlementView::new(&id, report),
    }))
}

fn run_id(raw: &str) -> Result<RunId, ApiError> {
    if raw.is_empty() || raw.len() > 128 {
        return Err(ApiError::BadRequest("invalid run id".into()));
    }
    Ok(RunId::new(raw))
}

/// `GET /api/admin/runs/{id}/bank-file`: the run's bank file, which marks its bank payouts sent.
#[utoipa::path(
    get, path = "/api/admin/runs/{id}/bank-file", tag = "admin", summary = "Make a run's bank file (marks its bank payouts sent)",
    params(("id" = String, Path, description = "The run's id"), FileFormatQuery),
    responses(
        (status = 200, description = "The file of the run's APPROVED members whose doctor's method is BANK_TRANSFER, streamed once its totals are checked; each result is stored on the run. `X-Bank-File-Left-Out` counts members left out (held, refused by the approval policy, no method), unchanged",
         content((String = "text/csv"), (String = "application/xml"), (String = "text/plain")),
         headers(
            ("X-Bank-File-Id" = String, description = "The file's id"),
            ("X-Bank-File-Transfers" = u64, description = "How many transfers it holds"),
            ("X-Bank-File-Total" = String, description = "The exact sum per currency"),
            ("X-Bank-File-Left-Out" = u64, description = "Members not in it"),
            ("Content-Disposition" = String, description = "attachment; filename=\"{file}.{csv|xml|ach}\""),
         )),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 422, description = "Nothing to send, a format not configured, or a file the format refuses; nothing was marked", body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 500, description = "Marked, but the file could not be written: read it again by its id (X-Bank-File-Id)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn make_run_file(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath(raw): ApiPath<String>,
    ApiQuery(q): ApiQuery<FileFormatQuery>,
) -> Result<Response, ApiError> {
    let run = run_id(&raw)?;
    let format = BankFileFormat::from(q.format);
    let config = &state.config.bank_files;
    config.require(format).map_err(file_error)?;
    let check = |planned: &BankFile| config.write(format, planned).map(drop).map_err(|e| e.to_string());
    let file = state.service.send_run_by_file(&user.actor(), &run, check).await?;
    Ok(file_response(config, format, &file))
}

/// `GET /api/admin/runs/{id}/bank-file/{file}`: a file of the run again.
#[utoipa::path(
    get, path = "/api/admin/runs/{id}/bank-file/{file}", tag = "admin", summary = "Read a run's bank file again",
    params(("id" = String, Path, description = "The run's id"), ("file" = String, Path, description = "The file's id"), FileFormatQuery),
    responses(
        (status = 200, description = "The same transfers as when it was made (nothing is marked)",
         content((String = "text/csv"), (String = "application/xml"), (String = "text/plain")),
         headers(
            ("X-Bank-File-Id" = String, description = "The file's id"),
            ("X-Bank-File-Transfers" = u64, description = "How many transfers it holds"),
            ("X-Bank-File-Total" = String, description = "The exact sum per currency"),
            ("Content-Disposition" = String, description = "attachment; filename=\"{file}.{csv|xml|ach}\""),
         )),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such run, or no such file of the run", body = ErrorBody),
        (status = 422, description = "A format not configured", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn read_run_file(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath((raw_run, raw_file)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<FileFormatQuery>,
) -> Result<Response, ApiError> {
    let (run, id) = (run_id(&raw_run)?, file_id(&raw_file)?);
    let format = BankFileFormat::from(q.format);
    let config = &state.config.bank_files;
    config.require(format).map_err(file_error)?;
    let file = state.service.run_bank_file(&user.actor(), &run, &id).await?;
    Ok(file_response(config, format, &file))
}

/// `POST /api/admin/runs/{id}/bank-file/{file}/settle`: the bank's confirmation of a run's file.
#[utoipa::path(
    post, path = "/api/admin/runs/{id}/bank-file/{file}/settle", tag = "admin", summary = "Record a run's bank file settlement",
    params(("id" = String, Path, description = "The run's id"), ("file" = String, Path, description = "The file's id")),
    request_body = SettleBankFile,
    responses(
        (status = 200, description = "What was recorded, by payout (and a run event)", body = SettlementBody),
        (status = 400, description = "A bad body, an item that is not in the file (`unknown_item`), an item named twice", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such run, or no such file of the run", body = ErrorBody),
        (status = 409, description = "Recorded already, or an item was settled otherwise since (`bank_file_settled`); nothing changed", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("bearer" = []))
)]
pub async fn settle_run_file(
    State(state): State<AppState>,
    Admin(user): Admin,
    ApiPath((raw_run, raw_file)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<SettleBankFile>,
) -> Result<Json<SettlementBody>, ApiError> {
    let (run, id) = (run_id(&raw_run)?, file_id(&raw_file)?);
    let report = state
        .service
        .settle_run_bank_file(&user.actor(), &run, &id, &body.into())
        .await?;
    Ok(Json(SettlementBody {
        data: SettlementView::new(&id, report),
    }))
}

/// How much of a file one body chunk carries.
const CHUNK: usize = 64 * 1024;

/// `file` written in `format` and streamed, with its headers. The whole file is written and its
/// totals checked before its first byte is sent: pain.001 states them in its first element, and a
/// file cut short by an error half way would be worse than none. A file that cannot be written now
/// was marked already (the check before marking wrote it): a 500 naming the file, to read again.
fn file_response(config: &BankFileConfig, format: BankFileFormat, file: &BankFile) -> Response {
    let text = match config.write(format, file) {
        Ok(text) => text,
        Err(e) => {
            tracing::error!(bank_file = %file.id, error = %e, "a marked bank file could not be written");
            let message = format!(
                "the payouts were marked sent by bank file {}, but it could not be written ({e}); read it again with \
                 GET /api/admin/bank-files/{}",
                file.id, file.id
            );
            let mut response =
                ErrorBody::new("bank_file_unwritable", &message).into_response_with(StatusCode::INTERNAL_SERVER_ERROR);
            insert(&mut response, FILE_ID, file.id.as_str());
            return response;
        }
    };
    let total = file
        .totals()
        .map(|t| t.sums.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    let bytes = Bytes::from(text);
    let chunks: Vec<Result<Bytes, Infallible>> = (0..bytes.len())
        .step_by(CHUNK)
        .map(|at| Ok(bytes.slice(at..(at + CHUNK).min(bytes.len()))))
        .collect();
    let mut response = Body::from_stream(futures::stream::iter(chunks)).into_response();
    let disposition = format!("attachment; filename=\"{}.{}\"", file.id, format.extension());
    insert(&mut response, CONTENT_TYPE, format.content_type());
    insert(&mut response, CONTENT_DISPOSITION, &disposition);
    insert(&mut response, FILE_ID, file.id.as_str());
    insert(
        &mut response,
        HeaderName::from_static("x-bank-file-transfers"),
        &file.members.len().to_string(),
    );
    insert(&mut response, HeaderName::from_static("x-bank-file-total"), &total);
    insert(
        &mut response,
        HeaderName::from_static("x-bank-file-left-out"),
        &file.left_out.len().to_string(),
    );
    response
}

/// The header naming a file's id.
const FILE_ID: HeaderName = HeaderName::from_static("x-bank-file-id");

/// Sets a header whose value is ours (ids, numbers, amounts: always valid header text).
fn insert(response: &mut Response, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}
