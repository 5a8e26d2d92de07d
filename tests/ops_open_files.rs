//! promfed raises its soft open-file limit to the hard one at start, as
//! Prometheus and Thanos (Go programs) do: with a system default of 1024
//! soft, client connections and backend sockets would be capped at a few
//! hundred (and `connections.max_open` lowered to fit).

mod ops_support;

use ops_support::Promfed;

/// (soft, hard) "Max open files" of a process, from /proc.
fn open_files(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files line");
    let mut f = line["Max open files".len()..].split_whitespace();
    let soft = f.next().and_then(|v| v.parse().ok()).expect("soft");
    let hard = f.next().and_then(|v| v.parse().ok()).expect("hard");
    (soft, hard)
}

#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    let me = std::process::id();
    let (soft0, hard) = open_files(me);
    assert!(hard > 600, "hard limit {hard} too low for this test");
    // promfed inherits a soft limit of 512 from this process.
    let lowered = std::process::Command::new("prlimit")
        .arg(format!("--pid={me}"))
        .arg("--nofile=512:")
        .status()
        .expect("run prlimit");
    assert!(lowered.success(), "prlimit refused");
    assert_eq!(open_files(me).0, 512);
    let p = Promfed::start(
        "open-files",
        "backends:\n  - name: k8s-1\n    url: http://127.0.0.1:1\n",
    );
    let (soft, promfed_hard) = open_files(p.child.id());
    // Give this process its limit back before asserting.
    let restored = std::process::Command::new("prlimit")
        .arg(format!("--pid={me}"))
        .arg(format!("--nofile={soft0}:"))
        .status()
        .expect("run prlimit");
    assert!(restored.success());
    assert_eq!(promfed_hard, hard);
    assert_eq!(soft, hard, "promfed kept a soft open-file limit of {soft}");
}
