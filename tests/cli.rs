//! The command line as an operator meets it: `serve` and `check-config`
//! with bad or doubtful configs.

use std::process::Command;

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write config");
    p
}

fn scratch(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("promfed-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

const BAD: &str = "listen: 127.0.0.1:0\nbackends:\n  - name: a\n    url: http://127.0.0.1:1\n    timeout: 5x\n  - name: b\n    url: http://127.0.0.1:2\n    timeout: 1y2q\n";

#[test]
fn serve_with_a_bad_config_says_so_once_without_colour_codes() {
    let dir = scratch("serve");
    let cfg = write(&dir, "bad.yaml", BAD);
    let out = Command::new(env!("CARGO_BIN_EXE_promfed"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .expect("run promfed serve");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains('\u{1b}'), "colour codes on a pipe: {err:?}");
    assert_eq!(
        err.matches("backends[0].timeout: not a valid duration string: \"5x\" (line 5)")
            .count(),
        1,
        "{err}"
    );
    assert_eq!(err.matches("backends[1].timeout:").count(), 1, "{err}");
    assert!(err.contains("(line 8)"), "{err}");
}

#[test]
fn check_config_reports_every_bad_value_and_flags_indistinguishable_backends() {
    let dir = scratch("check");
    let bad = write(&dir, "bad.yaml", BAD);
    let twins = write(
        &dir,
        "twins.yaml",
        "backends:\n  - {name: a, url: 'http://127.0.0.1:1'}\n  - {name: b, url: 'http://127.0.0.1:2'}\n",
    );
    let run = |p: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_promfed"))
            .arg("check-config")
            .arg(p)
            .output()
            .expect("run promfed check-config")
    };
    let (bad_out, twins_out) = (run(&bad), run(&twins));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!bad_out.status.success());
    let err = String::from_utf8_lossy(&bad_out.stderr);
    assert!(
        err.contains("backends[0].timeout") && err.contains("backends[1].timeout"),
        "{err}"
    );
    assert!(twins_out.status.success(), "twins are valid, only doubtful");
    let warn = String::from_utf8_lossy(&twins_out.stderr);
    assert!(
        warn.contains("warning: backends \"a\" and \"b\" have identical external_labels"),
        "{warn}"
    );
}
