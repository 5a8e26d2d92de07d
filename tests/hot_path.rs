//! The hot-path rule (`api::hot_path`): a real promfed server, served in
//! process on its connection threads, answers every kind of request, and
//! nothing that needs parsing, admission, evaluation or a backend read runs
//! on a connection thread (`telemetry::placement` counts any that does),
//! while a cached instant answer is still served there.
//!
//! The backend is a closed loopback port: its requests fail for real (an
//! `execution` error) after the work this test watches has run.

use std::net::TcpListener as StdListener;
use std::time::Duration;

use promfed::config::Config;
use promfed::telemetry::placement;

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_that_needs_the_workers_never_runs_on_a_connection_thread() {
    let yaml = format!(
        "listen: 127.0.0.1:0\n\
         io_threads: 2\n\
         backends:\n  - name: gone\n    url: http://127.0.0.1:{}\n    timeout: 2s\n\
         cache:\n  grid: 10s\n  store: memory\n",
        closed_port()
    );
    let cfg = Config::from_yaml(&yaml, "test").expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        promfed::server::serve(&cfg, listener, async {
            let _ = stopped.await;
        })
        .await
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let get = |path: &str| client.get(format!("{base}{path}")).send();

    // A text seen for the first time is parsed on the workers, evaluated
    // and stored; the same text again is a hit on the connection thread.
    let first = get("/api/v1/query?query=1%2B1&time=100")
        .await
        .expect("query");
    assert_eq!(first.status(), 200);
    let again = get("/api/v1/query?query=1%2B1&time=100")
        .await
        .expect("query");
    assert_eq!(again.status(), 200);
    assert_eq!(
        again.headers().get("x-promfed-cache").map(|v| v.as_bytes()),
        Some(&b"hit"[..])
    );
    // Another spelling of the same query: parsed on the workers, then a hit.
    let other = get("/api/v1/query?query=1%20%2B%201&time=100")
        .await
        .expect("query");
    assert_eq!(other.status(), 200);
    // A miss that reads the backend, as GET and as POST.
    let miss = get("/api/v1/query?query=up&time=100").await.expect("query");
    assert_eq!(miss.status(), 422);
    let post = client
        .post(format!("{base}/api/v1/query"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("query=up%7Bjob%3D%22x%22%7D&time=100")
        .send()
        .await
        .expect("post");
    assert_eq!(post.status(), 422);
    // A query that does not parse, twice (the second time it is memoized
    // as not cacheable).
    for _ in 0..2 {
        let bad = get("/api/v1/query?query=sum(&time=100")
            .await
            .expect("query");
        assert_eq!(bad.status(), 400);
    }
    // Range queries, metadata and the rest always go to the workers.
    for path in [
        "/api/v1/query_range?query=up&start=0&end=100&step=10",
        "/api/v1/query_range?query=1%2B1&start=0&end=100&step=10",
        "/api/v1/labels",
        "/api/v1/series?match[]=up",
        "/api/v1/label/job/values",
        "/api/v1/status/buildinfo",
    ] {
        let r = get(path).await.expect(path);
        assert!(r.status().as_u16() < 500 || r.status() == 503, "{path}");
    }

    let _ = stop.send(());
    server
        .await
        .expect("server task")
        .expect("server stopped cleanly");
    assert_eq!(
        placement::misplaced(),
        0,
        "work that belongs on the workers ran on a connection thread (see the log)"
    );
}
