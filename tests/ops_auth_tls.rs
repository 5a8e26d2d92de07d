//! Client auth, TLS serving and backend TLS/credentials, with certificates
//! made at test time and a real Prometheus serving TLS and basic auth.

mod ops_support;
#[path = "common/peers.rs"]
mod peers;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ops_support::{client, Promfed, TempDir};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

const TOKEN: &str = "tok-9f8e7d6c5b4a";
const PASSWORD: &str = "pw-correct-horse-battery";
const BACKEND_PASSWORD: &str = "pw-backend-staple-41";

/// A CA, a server certificate for 127.0.0.1/localhost and a client
/// certificate, all signed by the CA, written as PEM files in `dir`.
fn pki(dir: &TempDir, prefix: &str) {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("{prefix} test CA"));
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    dir.write(&format!("{prefix}ca.pem"), ca_cert.pem());

    let server_key = KeyPair::generate().expect("key");
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("params");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server
        .signed_by(&server_key, &ca_cert, &ca_key)
        .expect("server cert");
    dir.write(&format!("{prefix}server.pem"), server_cert.pem());
    dir.write(&format!("{prefix}server.key"), server_key.serialize_pem());

    let client_key = KeyPair::generate().expect("key");
    let mut cl = CertificateParams::new(Vec::<String>::new()).expect("params");
    cl.distinguished_name.push(DnType::CommonName, "promfed");
    cl.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = cl
        .signed_by(&client_key, &ca_cert, &ca_key)
        .expect("client cert");
    dir.write(&format!("{prefix}client.pem"), client_cert.pem());
    dir.write(&format!("{prefix}client.key"), client_key.serialize_pem());
}

fn https_client(dir: &TempDir, identity: bool) -> reqwest::Client {
    https_client_trusting(dir, "ca.pem", identity)
}

fn https_client_trusting(dir: &TempDir, ca_file: &str, identity: bool) -> reqwest::Client {
    let ca = std::fs::read(dir.path().join(ca_file)).expect("ca");
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("ca pem"));
    if identity {
        let mut pem = std::fs::read(dir.path().join("client.pem")).expect("cert");
        pem.extend(std::fs::read(dir.path().join("client.key")).expect("key"));
        b = b.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    b.build().expect("client")
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        promfed::auth::base64_encode(format!("{user}:{password}").as_bytes())
    )
}

fn start_secured(mutual: bool) -> Promfed {
    let dir = TempDir::new("tls");
    pki(&dir, "");
    let token = dir.write("token", format!("{TOKEN}\n"));
    let hash = bcrypt::hash_with_salt(PASSWORD, 4, [3u8; 16])
        .expect("hash")
        .to_string();
    let d = dir.path().display();
    let client_ca = if mutual {
        format!("\n  client_ca_file: {d}/ca.pem")
    } else {
        String::new()
    };
    let cfg = dir.write(
        "promfed.yaml",
        format!(
            "backends:\n  - name: k8s-1\n    url: http://127.0.0.1:1\n    timeout: 1s\n\
             tls:\n  cert_file: {d}/server.pem\n  key_file: {d}/server.key{client_ca}\n\
             auth:\n  bearer_token_files: [{}]\n  basic_auth_users:\n    grafana: '{hash}'\n",
            token.display()
        ),
    );
    Promfed::start_in(dir, cfg, &[]).unwrap_or_else(|e| panic!("{e}"))
}

fn https(p: &Promfed, path: &str) -> String {
    format!("https://{}{path}", p.addr)
}

#[tokio::test]
async fn tls_serving_and_client_auth() {
    let p = start_secured(false);
    let c = https_client(&p.dir, false);
    let url = https(&p, "/api/v1/status/buildinfo");

    let r = c.get(&url).send().await.expect("send");
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    for (auth, want) in [
        (format!("Bearer {TOKEN}"), 200),
        (format!("Bearer {TOKEN}x"), 401),
        ("Bearer ".to_string(), 401),
        (basic("grafana", PASSWORD), 200),
        (basic("grafana", "wrong"), 401),
        (basic("admin", PASSWORD), 401),
    ] {
        let r = c
            .get(&url)
            .header("authorization", &auth)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), want, "{auth}");
    }
    // POST queries authenticate the same way.
    let r = c
        .post(https(&p, "/api/v1/query"))
        .header("authorization", basic("grafana", PASSWORD))
        .form(&[("query", "1+1"), ("time", "4")])
        .send()
        .await
        .expect("send");
    assert_ne!(r.status().as_u16(), 401);
    // The web UI and its analysis runs sit behind the same authentication.
    for path in ["/", "/ui/app.js", "/api/v1/status/cache"] {
        let r = c.get(https(&p, path)).send().await.expect("send");
        assert_eq!(r.status().as_u16(), 401, "{path}");
        let r = c
            .get(https(&p, path))
            .header("authorization", basic("grafana", PASSWORD))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    let r = c
        .post(https(&p, "/ui/analyze"))
        .form(&[
            ("template", "kind: AnalysisTemplate"),
            ("from", "0"),
            ("to", "1"),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 401);
    // Probes need no credentials.
    for path in ["/-/healthy", "/-/ready"] {
        let r = c.get(https(&p, path)).send().await.expect("send");
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    // Plain HTTP on the TLS port gets no answer.
    let plain = client().get(p.url("/-/healthy")).send().await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
    // Secrets appear in no status endpoint and no log line.
    let stores = c
        .get(https(&p, "/api/v1/stores"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    let metrics = c
        .get(https(&p, "/metrics"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("promfed_http_unauthorized_total"),
        "{metrics}"
    );
    for text in [stores, metrics, p.stderr()] {
        assert!(!text.contains(TOKEN) && !text.contains(PASSWORD), "{text}");
    }
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate() {
    let p = start_secured(true);
    let url = https(&p, "/-/healthy");
    assert!(
        https_client(&p.dir, false).get(&url).send().await.is_err(),
        "a client without a certificate must be refused"
    );
    let r = https_client(&p.dir, true)
        .get(&url)
        .send()
        .await
        .expect("send with a client certificate");
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn the_debug_form_of_a_config_hides_secrets() {
    let cfg = promfed::config::Config::from_yaml(
        &format!(
            "backends:\n  - name: a\n    url: https://127.0.0.1:1\n    basic_auth: {{username: u, password: {BACKEND_PASSWORD}}}\n\
             auth:\n  basic_auth_users: {{grafana: '$2b$04$abcdefghijklmnopqrstuu0123456789012345678901234567890'}}\n"
        ),
        "test",
    )
    .expect("valid");
    let shown = format!("{cfg:?}");
    assert!(!shown.contains(BACKEND_PASSWORD), "{shown}");
    assert!(!shown.contains("$2b$04$"), "{shown}");
}

#[test]
fn backend_urls_with_credentials_are_refused() {
    let e = promfed::config::Config::from_yaml(
        "backends:\n  - name: a\n    url: http://u:secretpw@127.0.0.1:1\n",
        "test",
    )
    .expect_err("credentials in the URL");
    let msg = e.to_string();
    assert!(
        msg.contains("basic_auth") && !msg.contains("secretpw"),
        "{msg}"
    );
}

/// A real Prometheus serving TLS (client certificate required) and basic auth.
struct TlsPrometheus {
    child: Child,
    port: u16,
}

impl Drop for TlsPrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn start_tls_prometheus(dir: &TempDir) -> TlsPrometheus {
    pki(dir, "");
    let d = dir.path().display();
    let hash = bcrypt::hash_with_salt(BACKEND_PASSWORD, 4, [5u8; 16])
        .expect("hash")
        .to_string();
    dir.write(
        "web.yml",
        format!(
            "tls_server_config:\n  cert_file: {d}/server.pem\n  key_file: {d}/server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {d}/ca.pem\n\
             basic_auth_users:\n  promfed: '{hash}'\n"
        ),
    );
    dir.write(
        "prometheus.yml",
        "global:\n  external_labels: {cluster: k8s-1}\n",
    );
    std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
    let child = Command::new(peers::prometheus())
        .arg(format!("--config.file={d}/prometheus.yml"))
        .arg(format!("--storage.tsdb.path={d}/data"))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--web.config.file={d}/web.yml"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus (Debian package `prometheus`)");
    let prom = TlsPrometheus { child, port };
    let c = https_client(dir, true);
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let r = c
            .get(format!("https://127.0.0.1:{port}/-/ready"))
            .header("authorization", basic("promfed", BACKEND_PASSWORD))
            .send()
            .await;
        if r.is_ok_and(|r| r.status().is_success()) {
            break prom;
        }
        assert!(
            Instant::now() < until,
            "prometheus did not get ready: {}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn backends_over_tls_with_client_certificates_and_basic_auth() {
    let pdir = TempDir::new("tls-prom");
    let prom = start_tls_prometheus(&pdir).await;
    let d = pdir.path().display();
    let pwfile = pdir.write("backend-password", format!("{BACKEND_PASSWORD}\n"));
    let wrong = pdir.write("wrong-password", "nope\n");
    let backend = |tls: &str, password_file: &std::path::Path| {
        format!(
            "backends:\n  - name: k8s-1\n    url: https://127.0.0.1:{}\n    timeout: 10s\n    \
             tls: {tls}\n    basic_auth: {{username: promfed, password_file: {}}}\n",
            prom.port,
            password_file.display()
        )
    };
    let full =
        format!("{{ca_file: {d}/ca.pem, cert_file: {d}/client.pem, key_file: {d}/client.key}}");
    let skip = format!(
        "{{insecure_skip_verify: true, cert_file: {d}/client.pem, key_file: {d}/client.key}}"
    );
    let no_cert = format!("{{ca_file: {d}/ca.pem}}");

    for (name, cfg, ok) in [
        ("verified", backend(&full, &pwfile), true),
        ("skip-verify", backend(&skip, &pwfile), true),
        ("wrong-password", backend(&full, &wrong), false),
        ("no-client-cert", backend(&no_cert, &pwfile), false),
    ] {
        let p = Promfed::start(name, &cfg);
        let r = client()
            .get(p.url("/api/v1/labels"))
            .send()
            .await
            .expect("send");
        let status = r.status().as_u16();
        let body = r.text().await.expect("body");
        if ok {
            assert_eq!(status, 200, "{name}: {body}");
            assert!(body.contains("\"status\":\"success\""), "{name}: {body}");
        } else {
            assert_ne!(status, 200, "{name}: {body}");
            assert!(
                body.contains("k8s-1"),
                "{name}: the error must name the backend: {body}"
            );
        }
        assert!(!body.contains(BACKEND_PASSWORD), "{name}: {body}");
        assert!(
            !p.stderr().contains(BACKEND_PASSWORD),
            "{name}: {}",
            p.stderr()
        );
    }
}

#[test]
fn hash_password_prints_a_hash_that_verifies() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_promfed"))
        .args(["hash-password", "--cost", "4"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).expect("utf-8");
    let hash = hash.trim();
    assert!(hash.starts_with("$2"), "{hash}");
    assert!(!hash.contains(PASSWORD));
    assert!(bcrypt::verify(PASSWORD, hash).expect("verify"));
    assert!(!bcrypt::verify("other", hash).expect("verify"));
}

#[tokio::test]
async fn rotated_certificates_are_picked_up_by_a_reload() {
    let dir = TempDir::new("rotate");
    pki(&dir, "");
    let d = dir.path().display();
    let cfg = dir.write(
        "promfed.yaml",
        format!(
            "backends:\n  - name: k8s-1\n    url: http://127.0.0.1:1\n\
             tls:\n  cert_file: {d}/server.pem\n  key_file: {d}/server.key\n"
        ),
    );
    let p = Promfed::start_in(dir, cfg, &["--reload-interval", "100ms"])
        .unwrap_or_else(|e| panic!("{e}"));
    // A fresh client (and so a fresh connection and handshake) per check.
    let healthy = |ca: &'static str| {
        let c = https_client_trusting(&p.dir, ca, false);
        let url = https(&p, "/-/healthy");
        async move {
            c.get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    };
    assert!(healthy("ca.pem").await);

    // A broken certificate is refused; the running one keeps serving.
    std::fs::write(p.dir.path().join("server.pem"), "not a certificate").expect("write");
    assert!(
        p.wait_stderr("config reload refused", Duration::from_secs(10)),
        "{}",
        p.stderr()
    );
    assert!(healthy("ca.pem").await);

    // A certificate from a new CA, written over the old files.
    pki(&p.dir, "new");
    std::fs::copy(
        p.dir.path().join("newserver.key"),
        p.dir.path().join("server.key"),
    )
    .expect("copy key");
    std::fs::copy(
        p.dir.path().join("newserver.pem"),
        p.dir.path().join("server.pem"),
    )
    .expect("copy cert");
    let until = Instant::now() + Duration::from_secs(10);
    while !healthy("newca.pem").await {
        assert!(
            Instant::now() < until,
            "new certificate not served: {}",
            p.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !healthy("ca.pem").await,
        "the old certificate is still served"
    );
}
