use super::*;

#[test]
fn durations() {
    assert_eq!(parse_prometheus_duration("30s"), Ok(30_000));
    assert_eq!(parse_prometheus_duration("1h30m"), Ok(5_400_000));
    assert_eq!(parse_prometheus_duration("250ms"), Ok(250));
    assert_eq!(parse_prometheus_duration("0"), Ok(0));
    assert!(parse_prometheus_duration("").is_err());
    assert!(parse_prometheus_duration("30").is_err());
    assert!(parse_prometheus_duration("1m1h").is_err());
    assert!(parse_prometheus_duration("1x").is_err());
    assert!(parse_prometheus_duration("99999999999999999y").is_err());
}

#[test]
fn every_bad_value_is_reported_with_its_path_and_line() {
    let text = "listen: 127.0.0.1:0\nbackends:\n  - name: a\n    url: http://127.0.0.1:1\n    timeout: 5x\n  - name: b\n    url: http://127.0.0.1:2\n    timout: 5s\ncache:\n  grid: soon\n";
    let Err(ConfigError::Invalid { problems, .. }) = Config::from_yaml(text, "t") else {
        panic!("accepted");
    };
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert_eq!(
        problems[0],
        "backends[0].timeout: not a valid duration string: \"5x\" (line 5)"
    );
    assert!(
        problems[1].starts_with("backends[1].timout: unknown field `timout`, expected one of")
            && problems[1].ends_with("(line 8)"),
        "{problems:?}"
    );
    assert_eq!(
        problems[2],
        "cache.grid: not a valid duration string: \"soon\" (line 10)"
    );
}

#[test]
fn identical_external_labels_without_replica_labels_are_flagged() {
    let two = |extra: &str, l2: &str| {
        Config::from_yaml(
            &format!("{extra}backends:\n  - {{name: a, url: 'http://127.0.0.1:1', external_labels: {{cluster: x}}}}\n  - {{name: b, url: 'http://127.0.0.1:2', external_labels: {{cluster: {l2}}}}}\n"),
            "t",
        )
        .expect("valid")
        .warnings()
    };
    let w = two("", "x");
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("\"a\" and \"b\" have identical external_labels"),
        "{w:?}"
    );
    assert!(two("", "y").is_empty());
    assert!(two("replica_labels: [replica]\n", "x").is_empty());
}

#[test]
fn stores_labelled_by_their_info_are_not_flagged_as_identical() {
    let cfg = |b_protocol: &str| {
        Config::from_yaml(
            &format!(
                "backends:\n  - {{name: region-0, url: 'grpc://127.0.0.1:1', protocol: thanos_store}}\n  - {{name: region-1, url: 'grpc://127.0.0.1:2', protocol: thanos_store}}\n  - {{name: c, url: 'http://127.0.0.1:3', external_labels: {{cluster: c}}}}\n  - {{name: d, url: 'http://127.0.0.1:4'{b_protocol}}}\n"
            ),
            "t",
        )
        .expect("valid")
        .warnings()
    };
    // Two stores whose labels come from Info (none configured): no warning.
    assert!(
        cfg(", external_labels: {cluster: d}").is_empty(),
        "{:?}",
        cfg("")
    );
    // Configured backends with the same label set still are.
    let w = cfg(", external_labels: {cluster: c}");
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("\"c\" and \"d\""), "{w:?}");
}

#[test]
fn auth_with_a_grpc_listener_requires_client_certificates() {
    let dir = std::env::temp_dir().join(format!("promfed-grpc-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let token = dir.join("token");
    std::fs::write(&token, "s3cret\n").expect("token");
    let base = format!(
        "grpc_listen: 127.0.0.1:10901\nauth:\n  bearer_token_files: [{}]\nbackends:\n  - {{name: a, url: 'http://127.0.0.1:1'}}\n",
        token.display()
    );
    let problems = |extra: &str| match Config::from_yaml(&format!("{extra}{base}"), "t") {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid { problems, .. }) => problems,
        Err(e) => panic!("{e}"),
    };
    let p = problems("");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with(
            "grpc_listen: \"127.0.0.1:10901\" would serve the StoreAPI without authentication"
        ) && p[0].contains("tls.client_ca_file"),
        "{p:?}"
    );
    // A server certificate alone does not authenticate clients.
    let p = problems("tls:\n  cert_file: /c.pem\n  key_file: /k.pem\n");
    assert!(p.iter().any(|x| x.starts_with("grpc_listen:")), "{p:?}");
    // Client certificates do.
    let p = problems("tls:\n  cert_file: /c.pem\n  key_file: /k.pem\n  client_ca_file: /ca.pem\n");
    assert!(!p.iter().any(|x| x.starts_with("grpc_listen:")), "{p:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::from_yaml(
        "backends:\n  - name: a\n    url: http://127.0.0.1:9091\n",
        "test",
    )
    .expect("valid");
    assert_eq!(c.listen, "0.0.0.0:9090");
    assert_eq!(c.backends[0].timeout, Duration::from_secs(30));
}

#[test]
fn io_threads_default_to_the_cpus_and_are_bounded() {
    let base = "backends:\n  - name: a\n    url: http://127.0.0.1:9091\n";
    let c = Config::from_yaml(base, "test").expect("valid");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(c.io_thread_count(), cpus);
    let c = Config::from_yaml(&format!("io_threads: 3\n{base}"), "test").expect("valid");
    assert_eq!(c.io_thread_count(), 3);
    for bad in ["0", "257"] {
        let e = Config::from_yaml(&format!("io_threads: {bad}\n{base}"), "test")
            .expect_err("out of range");
        assert!(e.to_string().contains("io_threads"), "{e}");
    }
}

#[test]
fn unknown_fields_are_refused() {
    let e = Config::from_yaml(
        "backends:\n  - name: a\n    url: http://x\n    tiemout: 3s\n",
        "test",
    )
    .expect_err("typo must be refused");
    assert!(e.to_string().contains("tiemout"), "{e}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let e = Config::from_yaml(
        "listen: nowhere\nbackends:\n  - name: a\n    url: ftp://x\n  - name: a\n    url: 'not a url'\n    external_labels: {'0bad': x}\n",
        "test",
    )
    .expect_err("invalid");
    let ConfigError::Invalid { problems, .. } = e else {
        panic!("expected Invalid, got {e}");
    };
    assert_eq!(problems.len(), 5, "{problems:#?}");
}

#[test]
fn thanos_store_backends_take_grpc_urls() {
    let c = Config::from_yaml(
        "backends:\n  - name: a\n    url: grpc://127.0.0.1:10901\n    protocol: thanos_store\n",
        "test",
    )
    .expect("valid");
    assert_eq!(c.backends[0].protocol, ReadProtocol::ThanosStore);
    for (url, protocol, want) in [
        ("http://127.0.0.1:10901", "thanos_store", "grpc://host:port"),
        ("grpc://127.0.0.1", "thanos_store", "no port"),
        ("grpc://127.0.0.1:10901", "remote_read", "not http or https"),
    ] {
        let e = Config::from_yaml(
            &format!("backends:\n  - name: a\n    url: {url}\n    protocol: {protocol}\n"),
            "test",
        )
        .expect_err("invalid");
        assert!(e.to_string().contains(want), "{url} {protocol}: {e}");
    }
}

#[test]
fn cache_section_is_optional_and_has_defaults() {
    let base = "backends:\n  - name: a\n    url: http://127.0.0.1:9091\n";
    assert_eq!(Config::from_yaml(base, "test").expect("valid").cache, None);
    let c = Config::from_yaml(&format!("{base}cache: {{}}\n"), "test")
        .expect("valid")
        .cache
        .expect("cache section");
    assert!(c.enabled && c.range.enabled);
    assert_eq!(c.grid, Duration::from_secs(10));
    assert_eq!(c.store, CacheStoreKind::Memory);
    let c = Config::from_yaml(
        &format!("{base}cache:\n  grid: 20s\n  store: redis\n  redis: {{url: 'redis://127.0.0.1:6379/0', timeout: 50ms}}\n  warm_queries: ['sum(up)']\n"),
        "test",
    )
    .expect("valid")
    .cache
    .expect("cache section");
    assert_eq!(c.grid, Duration::from_secs(20));
    assert_eq!(c.redis.map(|r| r.timeout), Some(Duration::from_millis(50)));
}

#[test]
fn cache_problems_are_reported() {
    let e = Config::from_yaml(
        "backends:\n  - name: a\n    url: http://x\ncache:\n  grid: 0s\n  store: redis\n  warm_queries: ['sum(']\n  memory: {max_mib: 0}\n",
        "test",
    )
    .expect_err("invalid");
    let ConfigError::Invalid { problems, .. } = e else {
        panic!("expected Invalid, got {e}");
    };
    assert_eq!(problems.len(), 4, "{problems:#?}");
    let e = Config::from_yaml(
        "backends:\n  - name: a\n    url: http://x\ncache: {gird: 10s}\n",
        "test",
    )
    .expect_err("typo must be refused");
    assert!(e.to_string().contains("gird"), "{e}");
}

#[test]
fn shipped_configs_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("config/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n > 0, "no config files found in {}", dir.display());
}
