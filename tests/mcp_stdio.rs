//! `agentgate stdio`: stdout carries protocol messages and nothing else,
//! even with every log level on; logs go to stderr.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

#[test]
fn stdout_is_only_json_rpc_even_when_logging_everything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = dir.path().join("agentgate");
    std::fs::copy(env!("CARGO_BIN_EXE_agentgate"), &bin).expect("copy the binary");
    let mut child = Command::new(&bin)
        .args(["stdio", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "trace")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agentgate stdio starts");
    let messages = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "scout_inventory", "arguments": {"query": "linen", "limit": 1}}}),
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
            "name": "manage_cart", "arguments": {"action": "nope"}}}),
    ];
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for m in &messages {
            writeln!(stdin, "{m}").expect("write a message");
        }
        // Dropping stdin ends the session once the answers are out.
    }
    let out = child.wait_with_output().expect("the server exits");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let replies: Vec<Value> = stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON-RPC: {line:?} ({e})"))
        })
        .collect();
    assert!(replies.iter().all(|r| r["jsonrpc"] == "2.0"), "{stdout}");
    let by_id = |id: i64| replies.iter().find(|r| r["id"] == id).cloned().unwrap_or_default();
    assert_eq!(by_id(1)["result"]["protocolVersion"], "2025-11-25", "{stdout}\n{stderr}");
    assert_eq!(by_id(2)["result"]["tools"].as_array().map(Vec::len), Some(5));
    assert_eq!(by_id(3)["result"]["isError"], false);
    assert_eq!(by_id(4)["result"]["structuredContent"]["code"], "invalid_input");
    assert!(stderr.contains("tool call"), "logs go to stderr:\n{stderr}");
}
