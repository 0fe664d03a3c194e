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
    /// A time range or page larger than the configured limits.
    #[error("{0}")]
    RangeTooLarge(String),
    #[error("rate limit of tier {tier} exceeded; retry in {retry_after_secs} s")]
    TooManyRequests { tier: String, retry_after_secs: u64 },
    #[error("internal error")]
    Internal(String),
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: String,
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::InvalidToken(_) => "invalid_token",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::RangeTooLarge(_) => "range_too_large",
            ApiError::TooManyRequests { .. } => "rate_limited",
            ApiError::Internal(_) => "internal",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized(_) | ApiError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::RangeTooLarge(_) => StatusCode::BAD_REQUEST,
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
        let body = Body {
            error: Detail {
                code: self.code(),
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
