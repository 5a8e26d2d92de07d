//! Config reload (SIGHUP, file watch, invalid configs refused) and graceful
//! shutdown draining queries in flight, against the real binary.

mod ops_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ops_support::{client, http_answer, Promfed, RawBackend};

fn config(backends: &[&str]) -> String {
    let mut s = String::from("backends:\n");
    for b in backends {
        s.push_str(&format!(
            "  - name: {b}\n    url: http://127.0.0.1:1\n    external_labels: {{cluster: {b}}}\n    timeout: 1s\n"
        ));
    }
    s
}

async fn stores(p: &Promfed) -> String {
    client()
        .get(p.url("/api/v1/stores"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text")
}

/// Polls `/api/v1/stores` until `want` says yes, at most 10 s.
async fn wait_stores(p: &Promfed, want: impl Fn(&str) -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if want(&stores(p).await) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn metric(p: &Promfed, line_start: &str) -> Option<String> {
    let text = client()
        .get(p.url("/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(line_start))
        .map(str::to_string)
}

#[tokio::test]
async fn sighup_reloads_and_an_invalid_config_is_refused() {
    // The file watch is off: only SIGHUP reloads.
    let p = Promfed::start_with("hup", &config(&["k8s-1"]), &["--reload-interval", "0"]);
    assert!(stores(&p).await.contains("k8s-1"));
    assert!(!stores(&p).await.contains("k8s-2"));

    std::fs::write(&p.config, config(&["k8s-1", "k8s-2"])).expect("write");
    p.signal("HUP");
    assert!(
        wait_stores(&p, |s| s.contains("k8s-2")).await,
        "SIGHUP did not reload: {}",
        p.stderr()
    );
    assert!(p.wait_stderr("config reloaded", Duration::from_secs(5)));

    // An invalid config: refused, logged, the running one kept.
    std::fs::write(&p.config, "backends: []\nlisten: nowhere\n").expect("write");
    p.signal("HUP");
    assert!(
        p.wait_stderr("config reload refused", Duration::from_secs(10)),
        "{}",
        p.stderr()
    );
    let s = stores(&p).await;
    assert!(s.contains("k8s-1") && s.contains("k8s-2"), "{s}");
    assert_eq!(
        metric(&p, "promfed_config_last_reload_successful")
            .await
            .as_deref(),
        Some("promfed_config_last_reload_successful 0")
    );
    // A config that parses but cannot be built (missing token file) is refused too.
    std::fs::write(
        &p.config,
        format!(
            "{}    bearer_token_file: /nonexistent/promfed-token\n",
            config(&["k8s-3"])
        ),
    )
    .expect("write");
    p.signal("HUP");
    let until = Instant::now() + Duration::from_secs(10);
    while p.stderr().matches("config reload refused").count() < 2 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        p.stderr().matches("config reload refused").count(),
        2,
        "{}",
        p.stderr()
    );
    assert!(!stores(&p).await.contains("k8s-3"));
    // The server still answers.
    let r = client().get(p.url("/-/ready")).send().await.expect("send");
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn a_reload_that_changes_listen_says_it_needs_a_restart() {
    let cfg = format!("listen: 127.0.0.1:9\n{}", config(&["k8s-1"]));
    let p = Promfed::start_with("listen", &cfg, &["--reload-interval", "0"]);
    // Answering: the SIGHUP handler is in place.
    assert!(stores(&p).await.contains("k8s-1"));
    let moved = format!("listen: 127.0.0.1:10\n{}", config(&["k8s-1", "k8s-2"]));
    std::fs::write(&p.config, moved).expect("write");
    p.signal("HUP");
    assert!(
        wait_stores(&p, |s| s.contains("k8s-2")).await,
        "the rest of the config applies: {}",
        p.stderr()
    );
    assert!(
        p.wait_stderr("needs a restart", Duration::from_secs(5)),
        "{}",
        p.stderr()
    );
    let log = p.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("needs a restart"))
        .unwrap_or_default();
    assert!(line.contains("listen"), "{line}");
    assert!(
        !log.lines()
            .any(|l| l.contains("config reloaded") && !l.contains("needs a restart")),
        "a plain `config reloaded` while listen changed: {log}"
    );
    // Still served where it started.
    let r = client()
        .get(p.url("/-/healthy"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn a_changed_file_is_reloaded_without_a_signal() {
    let p = Promfed::start_with(
        "watch",
        &config(&["k8s-1"]),
        &["--reload-interval", "100ms"],
    );
    assert!(!stores(&p).await.contains("k8s-2"));
    // Wait past the file's mtime granularity, then change it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    std::fs::write(&p.config, config(&["k8s-1", "k8s-2"])).expect("write");
    assert!(
        wait_stores(&p, |s| s.contains("k8s-2")).await,
        "the file change was not picked up: {}",
        p.stderr()
    );
}

/// A backend that answers every request after `delay` with an empty label list.
async fn slow_backend(delay: Duration) -> RawBackend {
    RawBackend::start(Arc::new(move |_head: &str| {
        (
            delay,
            http_answer(
                200,
                "application/json",
                br#"{"status":"success","data":[]}"#,
            ),
        )
    }))
    .await
}

#[tokio::test]
async fn sigterm_drains_requests_in_flight() {
    let backend = slow_backend(Duration::from_millis(1500)).await;
    let mut p = Promfed::start(
        "drain",
        &format!(
            "backends:\n  - name: slow\n    url: {}\n    timeout: 10s\n",
            backend.url()
        ),
    );
    let url = p.url("/api/v1/labels");
    let in_flight = tokio::spawn(async move {
        let started = Instant::now();
        let r = client().get(url).send().await;
        (started.elapsed(), r.map(|r| r.status().as_u16()))
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    p.signal("TERM");
    let (took, status) = in_flight.await.expect("join");
    assert_eq!(status.expect("the request in flight is answered"), 200);
    assert!(
        took >= Duration::from_millis(1400),
        "answered too early: {took:?}"
    );
    let st = p
        .wait_exit(Duration::from_secs(10))
        .expect("promfed exits after draining");
    assert!(st.success(), "{st:?}: {}", p.stderr());
    assert!(p.stderr().contains("shutting down"));
}
