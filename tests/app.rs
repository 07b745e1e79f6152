//! The whole application as a newcomer runs it: built from settings on a
//! data dir, served on a real socket, stopped, and started again.

mod support;

use std::time::Duration;

use agentgate::domain::VariantId;
use agentgate::gateway::{Caller, CartChange};
use agentgate::ports::SearchQuery;
use agentgate::settings::Settings;

/// Starts the HTTP server for `settings` on a free loopback port and
/// returns its base URL and a handle that stops it.
async fn start(
    settings: Settings,
) -> (String, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let app = agentgate::bootstrap::build(settings).await.expect("build");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let router = agentgate::http::app(app.state);
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (format!("http://{addr}"), tx, task)
}

#[tokio::test]
async fn data_and_keys_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let caller = Caller::subject("agent-1");

    // First life: create a cart through the gateway.
    let (cart_id, kid) = {
        let app = agentgate::bootstrap::build(Settings::for_data_dir(dir.path())).await.unwrap();
        let page = app
            .gateway
            .search(&SearchQuery { in_stock_only: true, limit: 2, ..Default::default() })
            .await
            .unwrap();
        let variant = page.products[0].variants[0].id.clone();
        let cart = app.gateway.create_cart(&caller, &[(variant.clone(), 2)]).await.unwrap();
        let cart = app
            .gateway
            .update_cart(&caller, &cart.id, CartChange::SetQuantity { variant, quantity: 3 })
            .await
            .unwrap();
        assert_eq!(cart.lines[0].quantity, 3);
        (cart.id, app.keys.active_kid().to_owned())
    };

    // Second life on the same data dir: same cart, same key, catalog not
    // imported twice.
    let app = agentgate::bootstrap::build(Settings::for_data_dir(dir.path())).await.unwrap();
    let cart = app.gateway.get_cart(&caller, &cart_id).await.unwrap();
    assert_eq!(cart.lines.len(), 1);
    assert_eq!(cart.lines[0].quantity, 3);
    assert_eq!(app.keys.active_kid(), kid, "the generated key is reused, not regenerated");
    let other = Caller::subject("agent-2");
    let err = app.gateway.get_cart(&other, &cart_id).await.unwrap_err();
    assert_eq!(err.code().as_str(), "not_found", "another caller's cart does not leak");
    let missing = VariantId::parse("no-such-variant").unwrap();
    let err = app
        .gateway
        .update_cart(&caller, &cart_id, CartChange::Add { variant: missing, quantity: 1 })
        .await
        .unwrap_err();
    assert_eq!(err.code().as_str(), "not_found");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            std::fs::metadata(dir.path().join("merchant-key.pem")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the private key file is readable by its owner only");
    }
}

#[tokio::test]
async fn serves_health_profile_and_jwks_over_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let (base, stop, task) = start(Settings::for_data_dir(dir.path())).await;
    let http = reqwest::Client::new();

    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.headers().contains_key("request-id"));
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["store"], "ok");

    let profile = http.get(format!("{base}/.well-known/ucp")).send().await.unwrap();
    assert_eq!(profile.status(), 200);
    assert_eq!(profile.headers()["cache-control"], "public, max-age=300");
    let profile: serde_json::Value = profile.json().await.unwrap();
    assert_eq!(profile["ucp"]["version"], agentgate::ucp::VERSION);

    let jwks: serde_json::Value = http
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], profile["signing_keys"][0]["kid"]);
    assert!(jwks["keys"][0].get("d").is_none(), "no private key material is served");

    // Unknown routes and wrong methods answer with the error body.
    let resp =
        http.delete(format!("{base}/health")).header("request-id", "t-1").send().await.unwrap();
    assert_eq!(resp.status(), 405);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    assert_eq!(body["error"]["trace_id"], "t-1");

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
}

/// The real binary starts, answers, and exits cleanly on SIGTERM.
#[cfg(unix)]
#[test]
fn the_binary_serves_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentgate"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--log-format", "json"])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("AGENTGATE_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut ready = false;
    for line in lines.by_ref().take(50) {
        let line = line.unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).expect("json log lines");
        if v["message"] == "agentgate listening" {
            ready = true;
            break;
        }
    }
    assert!(ready, "the server logged that it listens");
    let body = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert!(body.contains("\"ok\""), "health answered: {body}");
    // SIGTERM: a graceful stop with exit code 0.
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("agentgate stopped")), "{rest:?}");
}
