//! The one error shape of the public API: `{"error": {"code": "...", "message": "..."}}`.
//! Codes are stable; messages are for people; internals never leak.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the service is not ready: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Unauthorized(String),
    /// A bearer token that is malformed, expired or does not verify.
    #[error("{0}")]
    InvalidToken(String),
    #[error("{0}")]
    Forbidden(String),
    /// A time range longer than the configured limit.
    #[error("{0}")]
    RangeTooLarge(String),
    /// A page (`limit`) larger than the configured limit.
    #[error("{0}")]
    PageTooLarge(String),
    #[error("{0}")]
    Conflict(String),
    #[error("rate limit of tier {tier} exceeded; retry in {retry_after_secs} s")]
    TooManyRequests { tier: String, retry_after_secs: u64 },
    #[error("internal error")]
    Internal(String),
}

/// The stable codes of [`ErrorBody`]; clients may branch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A parameter is missing, unknown or malformed (400).
    BadRequest,
    /// `from`–`to` spans more bars than `api.max_range_bars` (400).
    RangeTooLarge,
    /// `limit` is above `api.max_page_rows` (400).
    PageTooLarge,
    /// No credentials where they are required, or an unknown or revoked API key (401).
    Unauthorized,
    /// A bearer token that is malformed, expired or does not verify (401).
    InvalidToken,
    /// The credentials lack the scope, or their tier is not configured (403).
    Forbidden,
    /// No such route or resource (404).
    NotFound,
    /// The resource exists already, or is not in a state that allows the change (409).
    Conflict,
    /// The tier's rate limit is exhausted; see `Retry-After` (429).
    RateLimited,
    /// The server failed; details are in its log, under the request id (500).
    Internal,
    /// The store, the pipeline or a dependency is not ready (503).
    Unavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::RangeTooLarge => "range_too_large",
            ErrorCode::PageTooLarge => "page_too_large",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// For people; it may change between versions.
    pub message: String,
}

impl ApiError {
    pub fn error_code(&self) -> ErrorCode {
        match self {
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::InvalidToken(_) => ErrorCode::InvalidToken,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::RangeTooLarge(_) => ErrorCode::RangeTooLarge,
            ApiError::PageTooLarge(_) => ErrorCode::PageTooLarge,
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::TooManyRequests { .. } => ErrorCode::RateLimited,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }

    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized(_) | ApiError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::RangeTooLarge(_) | ApiError::PageTooLarge(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<pricestream_store::StoreError> for ApiError {
    fn from(e: pricestream_store::StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(error = %detail, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.error_code(),
                message: self.to_string(),
            },
        };
        let mut resp = (self.status(), Json(body)).into_response();
        if let ApiError::TooManyRequests {
            retry_after_secs, ..
        } = &self
        {
            if let Ok(v) = retry_after_secs.to_string().parse() {
                resp.headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        // RFC 9110 §11.6.1: a 401 names the schemes that would be accepted
        let challenges: &[&'static str] = match &self {
            ApiError::Unauthorized(_) => &[
                "ApiKey header=\"X-API-Key\"",
                "Bearer realm=\"pricestream\"",
            ],
            ApiError::InvalidToken(_) => &["Bearer realm=\"pricestream\", error=\"invalid_token\""],
            _ => &[],
        };
        for c in challenges {
            resp.headers_mut().append(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(c),
            );
        }
        resp
    }
}

pub type Result<T> = std::result::Result<T, ApiError>;
