use super::*;

#[test]
fn base64_round_trips() {
    for s in ["", "a", "ab", "abc", "abcd", "user:pässword", "x:y:z"] {
        assert_eq!(
            base64_decode(&base64_encode(s.as_bytes())).as_deref(),
            Some(s.as_bytes()),
            "{s}"
        );
    }
    assert_eq!(
        base64_encode(b"Aladdin:open sesame"),
        "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
    assert!(base64_decode("not base64!").is_none());
}

#[test]
fn secrets_never_show_in_debug() {
    let cfg: BasicAuthConfig =
        serde_yaml_ng::from_str("username: u\npassword: hunter2\n").expect("parses");
    let shown = format!("{cfg:?}");
    assert!(
        !shown.contains("hunter2") && shown.contains("<secret>"),
        "{shown}"
    );
}

#[tokio::test]
async fn bearer_and_basic_credentials() {
    let dir = std::env::temp_dir().join(format!("promfed-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let token = dir.join("token");
    std::fs::write(&token, "s3cret-token\n").expect("write");
    let hash = bcrypt::hash_with_salt("pw", 4, [7u8; 16])
        .expect("hash")
        .to_string();
    let cfg = AuthConfig {
        bearer_token_files: vec![token],
        basic_auth_users: [("grafana".to_string(), Secret::new(hash))].into(),
        ..AuthConfig::default()
    };
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
    let a = Authenticator::load(&cfg).expect("load");
    let h = |v: &str| {
        let mut m = HeaderMap::new();
        m.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(v).expect("header"),
        );
        m
    };
    assert!(a.allows(&h("Bearer s3cret-token")).await);
    assert!(!a.allows(&h("Bearer s3cret-tokeN")).await);
    assert!(!a.allows(&h("Bearer ")).await);
    let basic = |u: &str, p: &str| {
        h(&format!(
            "Basic {}",
            base64_encode(format!("{u}:{p}").as_bytes())
        ))
    };
    assert!(a.allows(&basic("grafana", "pw")).await);
    // A second time comes from the cache, and still only for the right password.
    assert!(a.allows(&basic("grafana", "pw")).await);
    assert!(!a.allows(&basic("grafana", "pw2")).await);
    assert!(!a.allows(&basic("nobody", "pw")).await);
    assert!(!a.allows(&HeaderMap::new()).await);
    assert!(!a.allows(&h("Digest abc")).await);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_hashes_are_refused() {
    let cfg = AuthConfig {
        bearer_token_files: vec![],
        basic_auth_users: [("u".to_string(), Secret::new("plaintext"))].into(),
        ..AuthConfig::default()
    };
    assert_eq!(cfg.validate().len(), 1, "{:?}", cfg.validate());
}
