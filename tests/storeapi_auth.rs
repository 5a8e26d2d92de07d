//! The StoreAPI listener is no way around `auth:`: StoreAPI clients
//! (Thanos Query, Ruler, promfed's `thanos_store` backend) send no bearer
//! token or basic auth, so a config with `auth:` and `grpc_listen:` must
//! require client certificates (`tls.client_ca_file`); without them
//! `check-config` and `serve` refuse it, saying so. (With them, a client
//! without a certificate is refused: `promfed_over_promfed_over_mutual_tls`
//! in tests/storeapi_server.rs, whose lower promfed also has `auth:`.)

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::HarnessError;

fn promfed(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_promfed"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting promfed: {e}"));
    // A config it accepted would serve: stop it (by its pid) after 15 s.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(15) {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for promfed: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn auth_and_a_grpc_listener_without_client_certificates_are_refused() -> Result<(), HarnessError> {
    let dir = common::TempDir::new("promfed-storeapi-auth")?;
    let token = dir.path().join("token");
    common::write_file(&token, "s3cret\n")?;
    let cfg = dir.path().join("promfed.yaml");
    common::write_file(
        &cfg,
        &format!(
            "listen: 127.0.0.1:0\ngrpc_listen: 127.0.0.1:0\nauth:\n  bearer_token_files: [{}]\nbackends:\n  - name: a\n    url: http://127.0.0.1:9\n",
            token.display()
        ),
    )?;
    let path = cfg.display().to_string();
    for args in [
        vec!["check-config", path.as_str()],
        vec!["serve", "--config", path.as_str()],
    ] {
        let (code, out) = promfed(&args);
        assert_eq!(code, Some(1), "{args:?} accepted it: {out}");
        assert!(
            out.contains(
                "grpc_listen: \"127.0.0.1:0\" would serve the StoreAPI without authentication"
            ) && out.contains("tls.client_ca_file"),
            "{args:?}: {out}"
        );
        assert!(
            !out.contains("grpc listening on"),
            "{args:?} served gRPC: {out}"
        );
    }
    Ok(())
}
