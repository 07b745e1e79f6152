//! A real MCP client, the Python SDK (`mcp` 2.x), shops at the real binary
//! over streamable HTTP and over stdio: `tests/python/test_mcp_client.py`.
//!
//! This test makes a user key with `agentgate keys generate`, starts
//! `agentgate serve` on a free loopback port with a temporary data dir and
//! that key trusted, and hands pytest the URL and the key; the Python side
//! starts its own `agentgate stdio` processes and signs mandates with
//! `agentgate mandate intent|payment`.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Kills the server when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private copy of the binary under test. The target dir may be shared
/// with other checkouts whose builds replace `target/debug/agentgate` at
/// any moment, so the test copies it once and runs only the copy.
fn private_binary(dir: &std::path::Path) -> std::path::PathBuf {
    let copy = dir.join("agentgate");
    std::fs::copy(env!("CARGO_BIN_EXE_agentgate"), &copy).expect("copy the binary");
    let help = Command::new(&copy).arg("--help").output().expect("the binary runs");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("stdio"),
        "{} is not this branch's build (no stdio command); rebuild and rerun",
        env!("CARGO_BIN_EXE_agentgate")
    );
    copy
}

/// Starts `agentgate serve` on port 0, trusting the user keys in `jwks`,
/// and reads the bound address from its JSON log on stderr.
fn serve(
    bin: &std::path::Path,
    data_dir: &std::path::Path,
    jwks: &std::path::Path,
) -> (Running, String) {
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--data-dir"])
        .arg(data_dir)
        .env("AGENTGATE_TRUSTED_AGENT_JWKS_FILE", jwks)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agentgate starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let running = Running(child);
    let (tx, rx) = mpsc::channel();
    // Keep draining stderr for the server's whole life, so a full pipe can
    // never stall it.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if let Some(addr) = v.get("address").and_then(|a| a.as_str()) {
                    let _ = tx.send(addr.to_owned());
                }
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).expect("the server logs its address");
    (running, format!("http://{addr}/mcp"))
}

#[test]
fn the_python_sdk_shops_over_http_and_stdio() {
    if support::python().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = private_binary(dir.path());
    // The user's key, made with the binary's own CLI; the merchant trusts
    // its public half.
    let (key, jwks) = (dir.path().join("user.pem"), dir.path().join("user.jwks.json"));
    let made = Command::new(&bin)
        .args(["keys", "generate", "--out"])
        .arg(&key)
        .arg("--jwks-out")
        .arg(&jwks)
        .output()
        .expect("agentgate keys generate runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let (_server, url) = serve(&bin, &dir.path().join("http"), &jwks);
    let stdio_dir = dir.path().join("stdio");
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    support::run_pytest(
        "test_mcp_client.py",
        &[
            ("AGENTGATE_BIN", &path(&bin)),
            ("AGENTGATE_MCP_URL", url.as_str()),
            ("AGENTGATE_TEST_STDIO_DATA", &path(&stdio_dir)),
            ("AGENTGATE_TEST_USER_KEY", &path(&key)),
            ("AGENTGATE_TEST_USER_JWKS", &path(&jwks)),
        ],
    );
}
