//! Errors as the API answers them: `{"error": {"code", "message"}}` with a fitting status.

use axum::Json;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use payout_core::error::{BankFileError, Error, WebhookError};

use crate::auth::AuthError;
use crate::wire::{ErrorBody, ErrorDetail};

/// An error response.
#[derive(Debug)]
pub enum ApiError {
    /// 401: missing or invalid credentials.
    Unauthorized(AuthError),
    /// 403: authenticated, but not allowed.
    Forbidden(String),
    /// 400: the request is malformed or invalid.
    BadRequest(String),
    /// 413: the body is too large.
    TooLarge,
    /// 429: too many requests; answered with `Retry-After` (whole seconds, at least 1).
    RateLimited {
        /// How long the client must wait.
        retry_after: std::time::Duration,
    },
    /// An error from the engine.
    Core(Error),
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::Core(e)
    }
}

impl ApiError {
    /// The status and the machine-readable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_input"),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Core(e) => match e {
                Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
                Error::RunNotFound(_) => (StatusCode::NOT_FOUND, "run_not_found"),
                Error::DoctorNotHeld(_) => (StatusCode::NOT_FOUND, "doctor_not_held"),
                Error::RunConflict(_) => (StatusCode::CONFLICT, "run_conflict"),
                Error::OnHold { .. } => (StatusCode::CONFLICT, "on_hold"),
                Error::DoctorAlreadyHeld(_) => (StatusCode::CONFLICT, "doctor_already_held"),
                Error::FundsShortfall { .. } => (StatusCode::CONFLICT, "funds_shortfall"),
                Error::UnknownReference { .. } => (StatusCode::CONFLICT, "unknown_reference"),
                Error::InvalidTransition { .. } => (StatusCode::CONFLICT, "invalid_transition"),
                Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
                Error::DuplicateEvent { .. } => (StatusCode::OK, "duplicate_event"),
                Error::InvalidInput(_) | Error::Money(_) => (StatusCode::BAD_REQUEST, "invalid_input"),
                Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
                Error::PremiumRequired { .. } => (StatusCode::FORBIDDEN, "premium_required"),
                // Both are answered the same way, by a re-approval.
                Error::DetailsChanged { .. } | Error::ApprovalPredatesDetailsCheck { .. } => {
                    (StatusCode::CONFLICT, "details_changed")
                }
                Error::ApprovalRequired(_) => (StatusCode::CONFLICT, "approval_required"),
                Error::ResolutionRefused(_) => (StatusCode::CONFLICT, "resolution_refused"),
                Error::MissingRecipient { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "missing_recipient"),
                Error::ProviderNotConfigured(_) => (StatusCode::UNPROCESSABLE_ENTITY, "provider_not_configured"),
                Error::Provider(_) => (StatusCode::BAD_GATEWAY, "provider_error"),
                Error::Webhook(WebhookError::Malformed(_)) => (StatusCode::BAD_REQUEST, "malformed_webhook"),
                Error::Webhook(WebhookError::Contradicted(_)) => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "webhook_contradicted_by_provider")
                }
                Error::Webhook(WebhookError::Unavailable(_)) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "webhook_verification_unavailable")
                }
                Error::Webhook(_) => (StatusCode::UNAUTHORIZED, "invalid_webhook_signature"),
                Error::NotSupported(_) => (StatusCode::NOT_IMPLEMENTED, "not_supported"),
                Error::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
                Error::BankFile(e) => match e {
                    BankFileError::NotFound(_) => (StatusCode::NOT_FOUND, "bank_file_not_found"),
                    BankFileError::Empty(_) => (StatusCode::UNPROCESSABLE_ENTITY, "nothing_to_send"),
                    BankFileError::Unwritable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "bank_file_unwritable"),
                    BankFileError::NotConfigured(_) => (StatusCode::UNPROCESSABLE_ENTITY, "bank_file_not_configured"),
                    BankFileError::UnknownItem { .. } => (StatusCode::BAD_REQUEST, "unknown_item"),
                    BankFileError::Settled { .. } => (StatusCode::CONFLICT, "bank_file_settled"),
                    _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
                },
                Error::Store(_) | Error::Source(_) | Error::Io(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            },
        }
    }

    /// The human-readable message (never internal details of stores).
    pub fn message(&self) -> String {
        match self {
            ApiError::Unauthorized(e) => e.to_string(),
            ApiError::Forbidden(m) | ApiError::BadRequest(m) => m.clone(),
            ApiError::TooLarge => "request body too large".into(),
            ApiError::RateLimited { .. } => "too many requests; slow down".into(),
            ApiError::Core(Error::Store(_) | Error::Source(_) | Error::Io(_)) => {
                "temporarily unavailable; nothing was changed, try again".into()
            }
            ApiError::Core(e) => e.to_string(),
        }
    }
}

impl ApiError {
    /// The code and message, as the answer's `error` holds them.
    pub fn detail(&self) -> ErrorDetail {
        ErrorDetail {
            code: self.status_and_code().1.to_string(),
            message: self.message(),
        }
    }
}

impl ErrorBody {
    /// An error answer with this `code` and `message`.
    pub fn new(code: &str, message: &str) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message: message.to_string(),
            },
        }
    }

    /// This error answered with `status`.
    pub fn into_response_with(self, status: StatusCode) -> Response {
        (status, Json(self)).into_response()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            if let ApiError::Core(e) = &self {
                tracing::error!(error = %e, "request failed");
            }
        }
        let mut response = ErrorBody::new(code, &self.message()).into_response_with(status);
        if let ApiError::RateLimited { retry_after } = self {
            // Whole seconds, rounded up: a client that waits that long is admitted.
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}
