//! The one error type of the gateway, with stable machine codes.
//!
//! Every failure anywhere in the gateway ends up as an [`Error`] carrying an
//! [`ErrorCode`]. The code is the contract with clients: its string form never
//! changes once published, and it decides the HTTP status and whether a retry
//! can help. Transports map codes to the wire here and nowhere else.

use std::fmt;

/// Stable, machine-readable error codes. The `snake_case` string of each is
/// what clients see in `error.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    // Input and protocol.
    InvalidInput,
    MalformedJson,
    PayloadTooLarge,
    UnsupportedMediaType,
    NotFound,
    MethodNotAllowed,
    // Concurrency and idempotency.
    AlreadyExists,
    VersionConflict,
    IdempotencyKeyRequired,
    IdempotencyConflict,
    IdempotencyInProgress,
    // Domain rules.
    IllegalTransition,
    MoneyOverflow,
    CurrencyMismatch,
    InvalidCurrency,
    InsufficientStock,
    SessionExpired,
    PriceMismatch,
    QuantityLimitExceeded,
    OrderTotalLimitExceeded,
    VelocityLimitExceeded,
    // Mandates (AP2).
    MandateRequired,
    MandateMalformed,
    MandateInvalidSignature,
    MandateExpired,
    MandateNotYetValid,
    MandateReplayed,
    MandateScopeMismatch,
    UnknownKid,
    AlgNotAllowed,
    ChainHashMismatch,
    AmountExceedsIntent,
    PaymentAmountMismatch,
    MerchantNotAllowed,
    SkuNotAllowed,
    AgentMissingKey,
    MerchantAuthorizationInvalid,
    MerchantAuthorizationMissing,
    // Access.
    Unauthorized,
    Forbidden,
    InsufficientScope,
    RateLimited,
    // Payments.
    PaymentDeclined,
    PaymentRequiresAction,
    PaymentFailed,
    /// A processor webhook whose signature is missing, wrong or stale.
    WebhookSignatureInvalid,
    // UCP negotiation (UCP 2026-04-08, "Negotiation" error codes).
    InvalidProfileUrl,
    ProfileUnreachable,
    ProfileMalformed,
    VersionUnsupported,
    // Infrastructure.
    StoreUnavailable,
    UpstreamUnavailable,
    Timeout,
    Internal,
}

impl ErrorCode {
    /// Every code, for tables and exhaustive tests.
    pub const ALL: &'static [ErrorCode] = &[
        Self::InvalidInput,
        Self::MalformedJson,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::AlreadyExists,
        Self::VersionConflict,
        Self::IdempotencyKeyRequired,
        Self::IdempotencyConflict,
        Self::IdempotencyInProgress,
        Self::IllegalTransition,
        Self::MoneyOverflow,
        Self::CurrencyMismatch,
        Self::InvalidCurrency,
        Self::InsufficientStock,
        Self::SessionExpired,
        Self::PriceMismatch,
        Self::QuantityLimitExceeded,
        Self::OrderTotalLimitExceeded,
        Self::VelocityLimitExceeded,
        Self::MandateRequired,
        Self::MandateMalformed,
        Self::MandateInvalidSignature,
        Self::MandateExpired,
        Self::MandateNotYetValid,
        Self::MandateReplayed,
        Self::MandateScopeMismatch,
        Self::UnknownKid,
        Self::AlgNotAllowed,
        Self::ChainHashMismatch,
        Self::AmountExceedsIntent,
        Self::PaymentAmountMismatch,
        Self::MerchantNotAllowed,
        Self::SkuNotAllowed,
        Self::AgentMissingKey,
        Self::MerchantAuthorizationInvalid,
        Self::MerchantAuthorizationMissing,
        Self::Unauthorized,
        Self::Forbidden,
        Self::InsufficientScope,
        Self::RateLimited,
        Self::PaymentDeclined,
        Self::PaymentRequiresAction,
        Self::PaymentFailed,
        Self::WebhookSignatureInvalid,
        Self::InvalidProfileUrl,
        Self::ProfileUnreachable,
        Self::ProfileMalformed,
        Self::VersionUnsupported,
        Self::StoreUnavailable,
        Self::UpstreamUnavailable,
        Self::Timeout,
        Self::Internal,
    ];

    /// The stable wire string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid_input",
            Self::MalformedJson => "malformed_json",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::AlreadyExists => "already_exists",
            Self::VersionConflict => "version_conflict",
            Self::IdempotencyKeyRequired => "idempotency_key_required",
            Self::IdempotencyConflict => "idempotency_conflict",
            Self::IdempotencyInProgress => "idempotency_in_progress",
            Self::IllegalTransition => "illegal_transition",
            Self::MoneyOverflow => "money_overflow",
            Self::CurrencyMismatch => "currency_mismatch",
            Self::InvalidCurrency => "invalid_currency",
            Self::InsufficientStock => "insufficient_stock",
            Self::SessionExpired => "session_expired",
            Self::PriceMismatch => "price_mismatch",
            Self::QuantityLimitExceeded => "quantity_limit_exceeded",
            Self::OrderTotalLimitExceeded => "order_total_limit_exceeded",
            Self::VelocityLimitExceeded => "velocity_limit_exceeded",
            Self::MandateRequired => "mandate_required",
            Self::MandateMalformed => "mandate_malformed",
            Self::MandateInvalidSignature => "mandate_invalid_signature",
            Self::MandateExpired => "mandate_expired",
            Self::MandateNotYetValid => "mandate_not_yet_valid",
            Self::MandateReplayed => "mandate_replayed",
            Self::MandateScopeMismatch => "mandate_scope_mismatch",
            Self::UnknownKid => "unknown_kid",
            Self::AlgNotAllowed => "alg_not_allowed",
            Self::ChainHashMismatch => "chain_hash_mismatch",
            Self::AmountExceedsIntent => "amount_exceeds_intent",
            Self::PaymentAmountMismatch => "payment_amount_mismatch",
            Self::MerchantNotAllowed => "merchant_not_allowed",
            Self::SkuNotAllowed => "sku_not_allowed",
            Self::AgentMissingKey => "agent_missing_key",
            Self::MerchantAuthorizationInvalid => "merchant_authorization_invalid",
            Self::MerchantAuthorizationMissing => "merchant_authorization_missing",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::InsufficientScope => "insufficient_scope",
            Self::RateLimited => "rate_limited",
            Self::PaymentDeclined => "payment_declined",
            Self::PaymentRequiresAction => "payment_requires_action",
            Self::PaymentFailed => "payment_failed",
            Self::WebhookSignatureInvalid => "webhook_signature_invalid",
            Self::InvalidProfileUrl => "invalid_profile_url",
            Self::ProfileUnreachable => "profile_unreachable",
            Self::ProfileMalformed => "profile_malformed",
            Self::VersionUnsupported => "version_unsupported",
            Self::StoreUnavailable => "store_unavailable",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::Timeout => "timeout",
            Self::Internal => "internal",
        }
    }

    /// Whether the same request may succeed if simply sent again later.
    pub const fn retryable(self) -> bool {
        matches!(
            self,
            Self::VersionConflict
                | Self::IdempotencyInProgress
                | Self::RateLimited
                | Self::ProfileUnreachable
                | Self::StoreUnavailable
                | Self::UpstreamUnavailable
                | Self::Timeout
                | Self::PaymentFailed
        )
    }

    /// The HTTP status this code maps to. This is the single place where
    /// codes meet HTTP; the HTTP edge reads it and does not decide on its own.
    pub const fn http_status(self) -> u16 {
        match self {
            Self::InvalidInput
            | Self::MalformedJson
            | Self::IdempotencyKeyRequired
            | Self::InvalidCurrency
            | Self::InvalidProfileUrl
            | Self::WebhookSignatureInvalid => 400,
            Self::Unauthorized => 401,
            Self::PaymentDeclined | Self::PaymentRequiresAction => 402,
            Self::Forbidden | Self::InsufficientScope => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::AlreadyExists
            | Self::VersionConflict
            | Self::IdempotencyConflict
            | Self::IdempotencyInProgress
            | Self::IllegalTransition => 409,
            Self::SessionExpired => 410,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::MoneyOverflow
            | Self::CurrencyMismatch
            | Self::InsufficientStock
            | Self::PriceMismatch
            | Self::QuantityLimitExceeded
            | Self::OrderTotalLimitExceeded
            | Self::VelocityLimitExceeded
            | Self::MandateRequired
            | Self::MandateMalformed
            | Self::MandateInvalidSignature
            | Self::MandateExpired
            | Self::MandateNotYetValid
            | Self::MandateReplayed
            | Self::MandateScopeMismatch
            | Self::UnknownKid
            | Self::AlgNotAllowed
            | Self::ChainHashMismatch
            | Self::AmountExceedsIntent
            | Self::PaymentAmountMismatch
            | Self::MerchantNotAllowed
            | Self::SkuNotAllowed
            | Self::AgentMissingKey
            | Self::MerchantAuthorizationInvalid
            | Self::MerchantAuthorizationMissing
            | Self::ProfileMalformed
            | Self::VersionUnsupported => 422,
            Self::ProfileUnreachable => 424,
            Self::RateLimited => 429,
            Self::PaymentFailed | Self::Internal => 500,
            Self::UpstreamUnavailable => 502,
            Self::StoreUnavailable => 503,
            Self::Timeout => 504,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure with a stable code and a message fit to show a user or agent.
///
/// The message never carries secrets or internal detail (SQL, stack traces,
/// upstream bodies); those go to the log at the point of failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: ErrorCode,
    message: String,
    /// Seconds after which a retry may succeed (rate limits, contention).
    retry_after: Option<u64>,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after: None }
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn retryable(&self) -> bool {
        self.code.retryable()
    }

    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message)
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, what)
    }

    /// An internal failure. The detail is logged here and never shown to the
    /// caller, who sees a generic message.
    pub fn internal(detail: impl fmt::Display) -> Self {
        tracing::error!(detail = %detail, "internal error");
        Self::new(ErrorCode::Internal, "internal error")
    }

    /// The store could not be reached or failed; retryable.
    pub fn store(detail: impl fmt::Display) -> Self {
        tracing::error!(detail = %detail, "store error");
        Self::new(ErrorCode::StoreUnavailable, "storage is temporarily unavailable")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case_and_listed() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{s}");
            let status = code.http_status();
            assert!((400..600).contains(&status), "{s} -> {status}");
        }
        assert_eq!(seen.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn only_transient_codes_are_retryable() {
        assert!(ErrorCode::RateLimited.retryable());
        assert!(ErrorCode::StoreUnavailable.retryable());
        assert!(!ErrorCode::IdempotencyConflict.retryable());
        assert!(!ErrorCode::MandateInvalidSignature.retryable());
        assert!(!ErrorCode::InsufficientStock.retryable());
    }

    #[test]
    fn internal_errors_hide_their_detail() {
        let e = Error::internal("SELECT secret FROM keys failed");
        assert_eq!(e.code(), ErrorCode::Internal);
        assert!(!e.message().contains("SELECT"));
    }
}
