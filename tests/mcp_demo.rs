//! `agentgate demo` runs a whole purchase by itself and says so.

use std::process::Command;

#[test]
fn the_demo_buys_tracks_and_cleans_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A private copy: the shared target dir's binary may be replaced by
    // another checkout's build at any moment.
    let bin = dir.path().join("agentgate");
    std::fs::copy(env!("CARGO_BIN_EXE_agentgate"), &bin).expect("copy the binary");
    let out =
        Command::new(&bin).arg("demo").env("TMPDIR", dir.path()).output().expect("the demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for needle in [
        "scout_inventory",
        "cart mandate for exactly USD",
        "is paid: charged USD",
        "receipt verified against the merchant's JWKS",
        "replayed: true, charges in total: 1",
        "status changed from created to paid",
        "A complete purchase in",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    assert!(!stderr.contains("ERROR"), "{stderr}");
    // The temporary data dir is gone; only the binary copy is left.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().filter_map(Result::ok).collect();
    assert_eq!(left.len(), 1, "{left:?}");
}
