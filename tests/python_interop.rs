//! Independent implementations checking the gateway's wire formats: the
//! Python tests in `tests/python/`, run with the CI venv. Also the check
//! that the DynamoDB stand-in the DynamoDB tests run against keeps
//! DynamoDB's semantics.

mod support;

/// An agent built from `docs/mandates.md` alone with PyJWT and
/// `cryptography` gets its chain accepted, and tampered chains refused.
#[test]
fn python_jose_mandates_are_accepted() {
    support::run_pytest("test_mandates_interop.py", &[]);
}

/// Stripe webhooks signed by the official `stripe` library's
/// `WebhookSignature.generate_signature_header`, posted to the running
/// binary with payments through Stripe: valid ones act once, duplicates
/// and unknown types are acknowledged, forged, stale and unsigned ones are
/// 400.
#[test]
fn stripe_library_signed_webhooks_are_verified() {
    support::run_pytest("test_stripe_webhooks.py", &[]);
}

/// An agent built from the v0.2 section of `docs/mandates.md` with the PyPI
/// `sd-jwt` library (on `jwcrypto`) gets its SD-JWT mandates accepted by
/// `agentgate mandate verify-v2`, and tampered ones refused with their codes.
#[test]
fn python_sd_jwt_mandates_are_accepted() {
    support::run_pytest("test_sdjwt_interop.py", &[]);
}

/// The DynamoDB stand-in (`tests/python/moto_serial.py`, moto with
/// item-level transaction snapshots and client request tokens): a
/// cancelled or refused transaction leaves every item it names as it was,
/// a successful one is applied once per token (another set of items under
/// the same token is `IdempotentParameterMismatchException`), no table is
/// copied or kept per transaction, and requests are served in arrival
/// order.
#[test]
fn dynamodb_stand_in_keeps_transactions_all_or_nothing_and_once_per_token() {
    support::run_pytest("test_moto_serial.py", &[]);
}
