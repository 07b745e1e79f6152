//! Independent implementations checking the gateway's wire formats: the
//! Python tests in `tests/python/`, run with the CI venv.

mod support;

/// An agent built from `docs/mandates.md` alone with PyJWT and
/// `cryptography` gets its chain accepted, and tampered chains refused.
#[test]
fn python_jose_mandates_are_accepted() {
    support::run_pytest("test_mandates_interop.py", &[]);
}
