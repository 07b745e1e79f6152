//! When a DynamoDB call may be sent again, and how long to wait first.
//!
//! The SDK's own retries are turned off (see `super::client`): it would
//! also resend a conditional write after a timeout, and a conditional
//! write that did land the first time fails its condition the second time.
//! A stock decrement would then be reported as `insufficient_stock` after
//! it took the units, and a put-if-absent as `already_exists` for its own
//! item. So the store decides per call:
//! - throttling (`ThrottlingException`, `ProvisionedThroughputExceeded…`,
//!   `RequestLimitExceeded`) means the request was refused unapplied, so
//!   every call retries it;
//! - an ambiguous failure (timeout, dropped connection, a 5xx) may have
//!   been applied, so only reads, unconditional puts and transactions
//!   (which carry a client request token, making a resend idempotent)
//!   retry it;
//! - a transaction cancelled only because of `TransactionConflict` or
//!   throttling on some item wrote nothing, so it is retried as a new
//!   attempt with a new token.
//!
//! Waits grow exponentially with "full jitter" (a random wait between zero
//! and the ceiling), so racing writers spread out instead of colliding again.

use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::CancellationReason;
use rand_core::{OsRng, RngCore};

/// Bounded exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts in total, the first included.
    pub attempts: u32,
    /// The ceiling of the first wait; it doubles per attempt.
    pub base: Duration,
    /// No wait is longer than this.
    pub cap: Duration,
}

impl Default for Backoff {
    /// Eight attempts over at most about three seconds of waiting: enough to
    /// ride out a burst of throttling or contention, short enough to answer
    /// well inside the request timeout.
    fn default() -> Self {
        Self { attempts: 8, base: Duration::from_millis(20), cap: Duration::from_millis(1000) }
    }
}

impl Backoff {
    /// The longest wait before retry number `retry` (0 for the first retry).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A random wait in `[0, ceiling(retry)]`.
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = self.ceiling(retry).as_micros().min(u128::from(u64::MAX)) as u64;
        Duration::from_micros(OsRng.next_u64() % (ceiling + 1))
    }
}

/// What a failed call says about sending it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Refused before it was applied: safe to resend.
    Throttled,
    /// May or may not have been applied.
    Ambiguous,
    /// Resending cannot help (a failed condition, a bad request, a missing
    /// table, bad credentials).
    Final,
}

/// Service error codes that mean "slow down", with nothing written.
const THROTTLING: &[&str] = &[
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "Throttling",
];

/// Service error codes of a server-side fault, after which the request may
/// or may not have been applied.
const SERVER_FAULTS: &[&str] = &["InternalServerError", "ServiceUnavailable"];

/// Classifies a failed SDK call.
pub fn classify<E, R>(err: &SdkError<E, R>) -> Failure
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(e) => classify_code(e.err().code()),
        // Nothing was sent: the request could not even be built.
        SdkError::ConstructionFailure(_) => Failure::Final,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Failure::Ambiguous
        }
        _ => Failure::Ambiguous,
    }
}

/// Classifies a service error code.
pub fn classify_code(code: Option<&str>) -> Failure {
    match code {
        Some(c) if THROTTLING.contains(&c) => Failure::Throttled,
        Some(c) if SERVER_FAULTS.contains(&c) => Failure::Ambiguous,
        _ => Failure::Final,
    }
}

/// Cancellation reason codes that wrote nothing and may clear on a retry.
const TRANSIENT_CANCELLATIONS: &[&str] =
    &["TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"];

/// Whether a cancelled transaction failed only for transient reasons (some
/// item was busy or throttled, no condition failed), so the same writes
/// may be tried again.
pub fn cancellation_is_transient(reasons: &[CancellationReason]) -> bool {
    let codes: Vec<&str> = reasons.iter().filter_map(|r| r.code()).collect();
    codes.iter().any(|c| TRANSIENT_CANCELLATIONS.contains(c))
        && codes.iter().all(|c| *c == "None" || TRANSIENT_CANCELLATIONS.contains(c))
}

/// An SDK error with its whole cause chain, for the log.
pub fn describe<E, R>(err: &SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    DisplayErrorContext(err).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_never_overflows() {
        let b = Backoff::default();
        let ms = |r| b.ceiling(r).as_millis();
        let cases = [(0, 20), (1, 40), (2, 80), (5, 640), (6, 1000), (31, 1000), (32, 1000)];
        for (retry, want) in cases {
            assert_eq!(ms(retry), want, "retry {retry}");
        }
        assert_eq!(b.ceiling(u32::MAX), b.cap);
        for retry in 0..b.attempts {
            assert!(b.delay(retry) <= b.ceiling(retry));
        }
        // The whole schedule is bounded, so a caller always answers.
        let total: Duration = (0..b.attempts - 1).map(|r| b.ceiling(r)).sum();
        assert!(total <= Duration::from_secs(4), "{total:?}");
    }

    #[test]
    fn codes_are_classified() {
        let cases = [
            (Some("ThrottlingException"), Failure::Throttled),
            (Some("ProvisionedThroughputExceededException"), Failure::Throttled),
            (Some("RequestLimitExceeded"), Failure::Throttled),
            (Some("InternalServerError"), Failure::Ambiguous),
            (Some("ConditionalCheckFailedException"), Failure::Final),
            (Some("TransactionCanceledException"), Failure::Final),
            (Some("ValidationException"), Failure::Final),
            (Some("ResourceNotFoundException"), Failure::Final),
            (None, Failure::Final),
        ];
        for (code, want) in cases {
            assert_eq!(classify_code(code), want, "{code:?}");
        }
    }

    #[test]
    fn only_purely_transient_cancellations_are_retried() {
        let reasons = |codes: &[&str]| -> Vec<CancellationReason> {
            codes.iter().map(|c| CancellationReason::builder().code(*c).build()).collect()
        };
        let cases: [(&[&str], bool); 7] = [
            (&["None", "TransactionConflict", "None"], true),
            (&["ThrottlingError"], true),
            (&["ProvisionedThroughputExceeded", "TransactionConflict"], true),
            // A failed condition is an answer; retrying would not change it.
            (&["ConditionalCheckFailed", "TransactionConflict"], false),
            (&["None", "ConditionalCheckFailed"], false),
            (&["ValidationError"], false),
            (&["None", "None"], false),
        ];
        for (codes, want) in cases {
            assert_eq!(cancellation_is_transient(&reasons(codes)), want, "{codes:?}");
        }
    }
}
