//! Proves the container image runs: builds it with `scripts/image` (from
//! the debug binary that `cargo test` has built, see below), lists its
//! files and checks it holds no shell, compiler or package manager, checks
//! its runtime config against the Dockerfile and the chart, then starts its
//! entrypoint as user 65532 with a read-only root and a read-only config
//! directory, over real Prometheus 3.8 servers, and asks it the seed query.
//!
//! Which binary: this test builds the image from the **debug** binary
//! (`CARGO_BIN_EXE_promfed`), so `scripts/test` needs no release build (one
//! costs 8-10 minutes on two cores). Everything else is `scripts/image`'s
//! own recipe, the one users run with the release binary; the libraries,
//! files and config are the same for both profiles. To run the same test
//! on the release binary (the one `scripts/image` uses by default):
//! `PROMFED_IMAGE_BINARY=target/release/promfed cargo test --test image`.
//!
//! How it runs: `podman run` fails on these machines (`crun: setrlimit
//! RLIMIT_NOFILE` / `RLIMIT_NPROC: Operation not permitted` inside the
//! sandbox), so the test does what a runtime does, by hand: `buildah mount`
//! gives the image's root filesystem; a private mount namespace (`unshare
//! --mount`) binds it read-only (the chart's `readOnlyRootFilesystem`),
//! binds the config directory read-only at the chart's mount path and a
//! tmpfs at /tmp (the chart's emptyDir); `chroot --userspec=USER` (the
//! image's `User`, 65532:65532) then execs the image's Entrypoint + Cmd. The network is the host's, so
//! promfed listens on 127.0.0.1 (the config's `listen`). Needs root and
//! Debian's buildah (`scripts/test` installs it).

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{harness, query, HarnessError, Promfed, TempDir};
use istio_sim::SUCCESS_RATE_QUERY;
use serde_json::Value;

/// The chart mounts its ConfigMap here (helm/promfed/templates/deployment.yaml).
const CONFIG_DIR: &str = "/etc/promfed/config";

/// Names that must not be in the image: shells, compilers and linkers,
/// package managers, interpreters.
const FORBIDDEN: &[&str] = &[
    "sh", "bash", "dash", "ash", "zsh", "busybox", "toybox", "cc", "gcc", "g++", "c++", "clang",
    "rustc", "cargo", "ld", "ld.bfd", "ld.gold", "as", "make", "go", "apt", "apt-get", "dpkg",
    "rpm", "yum", "dnf", "microdnf", "apk", "pip", "pip3", "perl", "python", "python3",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `program args` bounded to 120 s; panics with its output on failure.
fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = Command::new("timeout")
        .arg("120")
        .arg(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// An image built for this test and one working container of it, mounted;
/// unmounted and removed (container and image) on drop.
struct Image {
    tag: String,
    /// The image's ID, to remove an untagged copy too.
    id: String,
    container: String,
    rootfs: PathBuf,
    /// `STORAGE_DRIVER` as scripts/image chose it.
    env: Vec<(&'static str, &'static str)>,
}

impl Image {
    fn build() -> Image {
        let uid = Command::new("id").arg("-u").output().map(|o| text(&o));
        assert_eq!(
            uid.as_deref().ok(),
            Some("0"),
            "tests/image.rs needs root (buildah mount, chroot, mount namespaces)"
        );
        assert!(
            Command::new("buildah").arg("--version").output().is_ok(),
            "buildah not found: apt-get install -y buildah (scripts/test installs it)"
        );
        let tag = format!("localhost/promfed-image-test:{}", std::process::id());
        let binary = std::env::var("PROMFED_IMAGE_BINARY")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_promfed").to_string());
        println!("image test: building the image from {binary}");
        let out = run(
            "bash",
            &["scripts/image", "--binary", &binary, "--tag", &tag],
            &[],
        );
        let log = text(&out);
        println!("{log}");
        let env = if log.contains("storage driver: vfs") {
            vec![("STORAGE_DRIVER", "vfs")]
        } else {
            vec![]
        };
        let id = text(&run(
            "buildah",
            &["images", "--no-trunc", "--quiet", &tag],
            &env,
        ));
        assert!(
            !id.is_empty() && !id.contains('\n'),
            "image id of {tag}: {id:?}"
        );
        let container = text(&run("buildah", &["from", "--quiet", &tag], &env));
        let mut image = Image {
            tag,
            id,
            container,
            rootfs: PathBuf::new(),
            env,
        };
        image.rootfs = PathBuf::from(text(&run(
            "buildah",
            &["mount", &image.container],
            &image.env,
        )));
        image
    }

    /// The image's OCI config (`User`, `Entrypoint`, `Cmd`, `Labels`, ...).
    fn config(&self) -> Value {
        let out = run(
            "buildah",
            &["inspect", "--type", "image", &self.tag],
            &self.env,
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("buildah inspect: JSON");
        v["OCIv1"]["config"].clone()
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        for args in [
            vec!["umount", self.container.as_str()],
            vec!["rm", self.container.as_str()],
            vec!["rmi", self.tag.as_str()],
            // An untagged copy, if one stayed (never --force: another tag
            // on the same id would be someone's image).
            vec!["rmi", self.id.as_str()],
        ] {
            let _ = Command::new("timeout")
                .arg("120")
                .arg("buildah")
                .args(&args)
                .envs(self.env.iter().copied())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Every path under `dir` (relative, with a leading `/`), with its metadata.
fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, std::fs::Metadata)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry"))
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = format!("{rel}/{name}");
        let md = e.path().symlink_metadata().expect("metadata");
        let is_dir = md.is_dir();
        out.push((path.clone(), md));
        if is_dir {
            walk(&e.path(), &path, out);
        }
    }
}

fn string_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The Dockerfile's final stage: instruction -> its (continued) arguments,
/// with `${VERSION}` replaced by its `ARG` default.
fn dockerfile_final_stage() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("reading Dockerfile");
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let last_from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("Dockerfile has a FROM");
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in &lines[last_from..] {
        let (ins, rest) = l.split_once(' ').unwrap_or((l, ""));
        m.entry(ins.to_string())
            .or_default()
            .push(rest.trim().to_string());
    }
    let version = m["ARG"]
        .iter()
        .find_map(|a| a.strip_prefix("VERSION="))
        .expect("ARG VERSION=... in the final stage")
        .to_string();
    for v in m.values_mut() {
        for s in v.iter_mut() {
            *s = s.replace("${VERSION}", &version);
        }
    }
    m
}

fn cargo_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

#[test]
fn dockerfile_and_chart_agree_on_version_and_config_path() {
    let d = dockerfile_final_stage();
    assert_eq!(
        d["ARG"].iter().find_map(|a| a.strip_prefix("VERSION=")),
        Some(cargo_version().as_str()),
        "Dockerfile ARG VERSION != Cargo.toml version"
    );
    let cmd: Vec<String> = serde_json::from_str(&d["CMD"][0]).expect("CMD is a JSON array");
    assert_eq!(
        cmd,
        ["serve", "--config", &format!("{CONFIG_DIR}/promfed.yaml")]
    );
    let deployment = std::fs::read_to_string(root().join("helm/promfed/templates/deployment.yaml"))
        .expect("reading the chart's deployment");
    assert!(
        deployment.contains(&format!("mountPath: {CONFIG_DIR}\n")),
        "the chart no longer mounts its ConfigMap at {CONFIG_DIR}"
    );
    assert!(
        deployment.contains(&format!("- --config={CONFIG_DIR}/promfed.yaml")),
        "the chart's args no longer name {CONFIG_DIR}/promfed.yaml"
    );
    let chart =
        std::fs::read_to_string(root().join("helm/promfed/Chart.yaml")).expect("Chart.yaml");
    assert!(
        chart.contains(&format!("appVersion: \"{}\"", cargo_version())),
        "Chart.yaml appVersion (the default image tag) != Cargo.toml version"
    );
}

#[tokio::test]
async fn image_runs_as_65532_from_a_read_only_root_and_answers_like_one_prometheus(
) -> Result<(), HarnessError> {
    let h = harness();
    let image = Image::build();

    // What is inside: listed, then checked.
    let mut files = Vec::new();
    walk(&image.rootfs, "", &mut files);
    let listing: Vec<String> = files
        .iter()
        .map(|(p, md)| {
            format!(
                "{:o} {}:{} {:>9} {p}",
                md.mode() & 0o7777,
                md.uid(),
                md.gid(),
                md.len()
            )
        })
        .collect();
    let listing = listing.join("\n");
    println!("image contents:\n{listing}");
    let fixed = [
        "/usr/local/bin/promfed",
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/passwd",
        "/etc/group",
        "/etc/nsswitch.conf",
    ];
    for f in fixed {
        assert!(
            files.iter().any(|(p, _)| p == f),
            "{f} missing from the image:\n{listing}"
        );
    }
    for (path, md) in &files {
        let name = path.rsplit('/').next().unwrap_or("");
        assert!(
            !FORBIDDEN.contains(&name),
            "{path}: no shell, compiler or package manager belongs in the image:\n{listing}"
        );
        assert!(
            !md.file_type().is_symlink(),
            "{path} is a symlink:\n{listing}"
        );
        if md.is_file() {
            let is_lib =
                (path.starts_with("/lib") || path.starts_with("/usr/lib")) && name.contains(".so");
            assert!(
                fixed.contains(&path.as_str()) || is_lib,
                "{path}: not the binary, a library it loads, the CA bundle or /etc/{{passwd,group,nsswitch.conf}}:\n{listing}"
            );
            if md.mode() & 0o111 != 0 {
                assert!(
                    path == "/usr/local/bin/promfed" || is_lib,
                    "{path} is executable; only promfed and its libraries may be:\n{listing}"
                );
            }
        }
    }
    let passwd = std::fs::read_to_string(image.rootfs.join("etc/passwd")).expect("/etc/passwd");
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("nonroot:x:65532:65532:")),
        "/etc/passwd has no 65532 entry:\n{passwd}"
    );

    // Its runtime config: the Dockerfile's, and what the chart expects.
    let cfg = image.config();
    let d = dockerfile_final_stage();
    let entrypoint = string_list(&cfg["Entrypoint"]);
    let cmd = string_list(&cfg["Cmd"]);
    let docker_ep: Vec<String> =
        serde_json::from_str(&d["ENTRYPOINT"][0]).expect("ENTRYPOINT JSON");
    let docker_cmd: Vec<String> = serde_json::from_str(&d["CMD"][0]).expect("CMD JSON");
    assert_eq!(
        entrypoint, docker_ep,
        "Entrypoint differs from the Dockerfile's"
    );
    assert_eq!(cmd, docker_cmd, "Cmd differs from the Dockerfile's");
    assert_eq!(cfg["User"], "65532:65532");
    assert_eq!(d["USER"], ["65532:65532"]);
    assert_eq!(d["EXPOSE"], ["9090"]);
    assert!(
        cfg["ExposedPorts"].get("9090/tcp").is_some(),
        "image does not expose 9090/tcp: {}",
        cfg["ExposedPorts"]
    );
    let label_re = regex::Regex::new(r#"([A-Za-z0-9_.\-]+)="([^"]*)""#).expect("regex");
    let docker_labels: Vec<(String, String)> = d["LABEL"]
        .iter()
        .flat_map(|l| {
            label_re
                .captures_iter(l)
                .map(|c| (c[1].to_string(), c[2].to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        docker_labels.len() >= 4,
        "Dockerfile labels: {docker_labels:?}"
    );
    for (k, v) in &docker_labels {
        assert_eq!(cfg["Labels"][k.as_str()], v.as_str(), "label {k}");
    }
    assert_eq!(
        cfg["Labels"]["org.opencontainers.image.version"],
        cargo_version().as_str()
    );

    // Run it: the entrypoint as 65532, root and config read-only.
    let dir = TempDir::new("promfed-image-test")?;
    let cfg_dir = dir.path().join("config");
    std::fs::create_dir(&cfg_dir).expect("config dir");
    common::write_file(&cfg_dir.join("promfed.yaml"), &h.promfed_config(""))?;
    std::fs::set_permissions(
        cfg_dir.join("promfed.yaml"),
        std::fs::Permissions::from_mode(0o444),
    )
    .expect("chmod config");
    std::fs::set_permissions(&cfg_dir, std::fs::Permissions::from_mode(0o555)).expect("chmod dir");
    let script = r#"
        set -e
        root=$1; cfg=$2; mnt=$3; user=$4; shift 4
        mount --bind "$root" "$root"
        mount -o remount,bind,ro "$root"
        mount --bind "$cfg" "$root$mnt"
        mount -o remount,bind,ro "$root$mnt"
        mount -t tmpfs -o size=64m,mode=1777 tmpfs "$root/tmp"
        exec env -i RUST_LOG=warn "$(command -v chroot)" --userspec="$user" "$root" "$@"
    "#;
    let mut run_cmd = Command::new("unshare");
    run_cmd
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
            "image-run",
        ])
        .arg(&image.rootfs)
        .arg(&cfg_dir)
        .arg(CONFIG_DIR)
        .arg(cfg["User"].as_str().expect("User"))
        .args(entrypoint.iter().chain(&cmd).map(OsString::from))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    let mut pf = Promfed::spawn(run_cmd, dir)?;

    let pid = pf.pid().expect("running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let ids = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|r| r.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(ids("Uid:"), ["65532"; 4], "promfed runs as:\n{status}");
    assert_eq!(ids("Gid:"), ["65532"; 4], "promfed runs as:\n{status}");
    let exe = std::fs::metadata(format!("/proc/{pid}/exe")).expect("exe");
    let bin = std::fs::metadata(image.rootfs.join("usr/local/bin/promfed")).expect("binary");
    assert_eq!(
        (exe.dev(), exe.ino()),
        (bin.dev(), bin.ino()),
        "pid {pid} does not run the image's /usr/local/bin/promfed"
    );

    // Its root and its config directory are read-only mounts, as in the
    // chart (mountinfo: field 5 is the mount point, 6 its options).
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    for point in ["/", CONFIG_DIR] {
        let opts = mountinfo
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f.get(4) == Some(&point)).then(|| f.get(5).copied().unwrap_or(""))
            })
            .next_back();
        assert!(
            opts.is_some_and(|o| o.split(',').any(|x| x == "ro")),
            "{point} is not mounted read-only for promfed:\n{mountinfo}"
        );
    }

    // `/-/ready` answered 200 in Promfed::spawn; the seed query now.
    let t = h.schedule.steps[3].mid();
    let direct = query(&h.union.url, SUCCESS_RATE_QUERY, t).await?;
    let got = query(&pf.url, SUCCESS_RATE_QUERY, t).await?;
    assert!(direct.is_success(), "union: {}", direct.body);
    assert!(got.is_success(), "image: {}", got.body);
    let want = direct.first_value().expect("union value");
    assert!(want > 0.0 && want <= 1.0, "union success rate {want}");
    assert_eq!(got.first_value(), Some(want), "image: {}", got.body);

    // Stop it (by its pid) before the image is unmounted.
    pf.stop();
    drop(pf);
    drop(image);
    Ok(())
}
