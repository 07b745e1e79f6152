//! Helpers shared by the integration tests: locating the official schemas
//! and the Python interpreter of the CI venv, and saying plainly when a test
//! cannot run on this machine.
#![allow(dead_code)]

pub mod ap2_schema;
pub mod schema;

use std::path::PathBuf;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Reports that a test could not run, and why. Under CI that is a failure;
/// elsewhere the test says so on stderr and returns without asserting.
fn unavailable(what: &str, why: &str) {
    if in_ci() {
        panic!("{what} is required under CI but {why}");
    }
    eprintln!("NOT RUN: {what} is not available ({why}); this test did not check anything.");
}

/// The folder of official JSON Schemas (`AGENTGATE_SPECS_DIR`, default
/// `../shared/specs`).
pub fn specs_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("AGENTGATE_SPECS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/specs"));
    if dir.join("ucp").is_dir() {
        Some(dir)
    } else {
        unavailable("the spec schema folder", &format!("{} does not exist", dir.display()));
        None
    }
}

/// The Python interpreter with the test requirements installed
/// (`AGENTGATE_PYTHON`, set by `.ci/run`).
pub fn python() -> Option<PathBuf> {
    match std::env::var_os("AGENTGATE_PYTHON").map(PathBuf::from) {
        Some(p) if p.exists() => Some(p),
        Some(p) => {
            unavailable("the Python test venv", &format!("{} does not exist", p.display()));
            None
        }
        None => {
            unavailable(
                "the Python test venv",
                "AGENTGATE_PYTHON is not set (run .ci/run to create it)",
            );
            None
        }
    }
}

/// The endpoint of a DynamoDB stand-in (`AGENTGATE_DYNAMODB_ENDPOINT`,
/// which `.ci/run` points at the `moto_server` it starts).
pub fn dynamodb_endpoint() -> Option<String> {
    match std::env::var("AGENTGATE_DYNAMODB_ENDPOINT") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            unavailable(
                "a DynamoDB endpoint",
                "AGENTGATE_DYNAMODB_ENDPOINT is not set (run .ci/run, or start \
                 `moto_server -H 127.0.0.1 -p 5000` and set it to http://127.0.0.1:5000)",
            );
            None
        }
    }
}

/// A client and a new, empty table named `<prefix>-<uuid>` on the DynamoDB
/// stand-in, or `None` (after saying why) without an endpoint.
#[cfg(feature = "aws")]
pub async fn dynamodb_table(
    prefix: &str,
) -> Option<(aws_sdk_dynamodb::Client, agentgate::settings::DynamoSettings)> {
    use agentgate::adapters::dynamodb::{self, create_table, CreateOptions};
    let settings = agentgate::settings::DynamoSettings {
        table: format!("{prefix}-{}", uuid::Uuid::now_v7().simple()),
        endpoint_url: Some(dynamodb_endpoint()?),
        region: None,
    };
    let client = dynamodb::client(&settings).await.expect("DynamoDB client");
    let options =
        CreateOptions { point_in_time_recovery: false, wait: std::time::Duration::from_secs(30) };
    create_table(&client, &settings.table, options).await.expect("create table");
    Some((client, settings))
}

/// Runs one pytest file from `tests/python/` with the CI venv, giving it the
/// freshly built binary as `AGENTGATE_BIN` plus `env`, and fails the test
/// with pytest's output if any Python test fails. Returns false (after
/// saying so) when the venv is not available outside CI.
pub fn run_pytest(file: &str, env: &[(&str, &str)]) -> bool {
    let Some(python) = python() else { return false };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = std::process::Command::new(python);
    cmd.current_dir(&root)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(root.join("tests/python").join(file))
        .env("AGENTGATE_BIN", env!("CARGO_BIN_EXE_agentgate"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("pytest starts");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "pytest {file} failed:\n{text}");
    // pytest exits 5 when it collected nothing; success means tests ran.
    assert!(text.contains(" passed"), "pytest {file} ran no test:\n{text}");
    true
}
