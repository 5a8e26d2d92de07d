//! Unit tests of the simulation.

use std::collections::BTreeSet;

use super::*;

fn small(canary: Canary) -> SimConfig {
    SimConfig {
        duration_secs: 900,
        background_series: 40,
        canary,
        ..SimConfig::default()
    }
}

fn text(f: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> String {
    let mut buf = Vec::new();
    f(&mut buf).expect("writing to a Vec cannot fail");
    String::from_utf8(buf).expect("OpenMetrics output is UTF-8")
}

/// One sample line split into (name, labels, value, timestamp).
fn parse_line(line: &str) -> (String, Vec<(String, String)>, String, String) {
    let (series, rest) = match line.find('}') {
        Some(i) => (&line[..=i], line[i + 1..].trim_start()),
        None => {
            let i = line.find(' ').expect("sample line has a value");
            (&line[..i], line[i + 1..].trim_start())
        }
    };
    let (name, labels) = match series.find('{') {
        Some(i) => (&series[..i], &series[i + 1..series.len() - 1]),
        None => (series, ""),
    };
    let labels = labels
        .split("\",")
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once("=\"").expect("label has =\"");
            (k.to_string(), v.trim_end_matches('"').to_string())
        })
        .collect();
    let mut parts = rest.split(' ');
    let value = parts.next().expect("value").to_string();
    let ts = parts.next().expect("timestamp").to_string();
    assert!(parts.next().is_none(), "extra fields in {line}");
    (name.to_string(), labels, value, ts)
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let cfg = small(Canary::Good);
    let a = Simulation::generate(&cfg).expect("valid config");
    let b = Simulation::generate(&cfg).expect("valid config");
    let ua = text(|w| a.write_union(w));
    assert_eq!(ua, text(|w| b.write_union(w)));
    assert_eq!(
        text(|w| a.write_cluster(1, w)),
        text(|w| b.write_cluster(1, w))
    );
    let c = Simulation::generate(&SimConfig { seed: 7, ..cfg }).expect("valid config");
    assert_ne!(ua, text(|w| c.write_union(w)));
}

#[test]
fn timestamps_jittered_never_on_a_second_and_ordered() {
    let sim = Simulation::generate(&small(Canary::Good)).expect("valid config");
    let (start, end) = (sim.schedule.start * 1000, sim.schedule.end * 1000);
    let mut phases = BTreeSet::new();
    let mut gaps = BTreeSet::new();
    for c in &sim.clusters {
        for s in &c.series {
            assert!(!s.samples.is_empty(), "{} {} is empty", s.name, s.labels);
            for w in s.samples.windows(2) {
                assert!(w[0].t < w[1].t, "{} out of order", s.labels);
                gaps.insert(w[1].t - w[0].t);
            }
            for x in &s.samples {
                assert_ne!(x.t % 1000, 0, "{} has a sample on a whole second", s.labels);
                assert!(x.t > start && x.t < end);
                assert!(mesh::ts_roundtrips(x.t));
            }
            phases.insert(s.samples[0].t % 15_000);
        }
    }
    // Scrape offsets differ between series, and intervals jitter around 15 s.
    assert!(phases.len() > 50, "only {} distinct offsets", phases.len());
    assert!(gaps.len() > 3, "no jitter: gaps {gaps:?}");
    assert!(
        gaps.iter()
            .filter(|g| (14_990..=15_010).contains(*g))
            .count()
            > 3
    );
}

#[test]
fn printed_timestamps_parse_back_exactly() {
    let sim = Simulation::generate(&small(Canary::Good)).expect("valid config");
    let out = text(|w| sim.write_cluster(0, w));
    let mut n = 0;
    for line in out.lines().filter(|l| !l.starts_with('#')) {
        let (_, _, _, ts) = parse_line(line);
        let (secs, ms) = ts.split_once('.').expect("seconds.millis");
        assert_eq!(ms.len(), 3, "{ts}");
        assert_ne!(ms, "000");
        // promtool stores int64(float * 1000).
        let f: f64 = ts.parse().expect("float timestamp");
        let stored = (f * 1000.0) as i64;
        let want: i64 = format!("{secs}{ms}").parse().expect("digits");
        assert_eq!(stored, want, "{ts}");
        n += 1;
    }
    assert!(n > 10_000);
}

#[test]
fn one_counter_reset_on_the_restarted_ingress_pod() {
    let sim = Simulation::generate(&small(Canary::Good)).expect("valid config");
    let reset = &sim.schedule.counter_reset;
    let (at, back) = (reset.at * 1000, (reset.at + reset.down_seconds) * 1000);
    let mut resets = 0;
    let mut counters = 0;
    for c in &sim.clusters {
        for s in &c.series {
            let fam = &sim.families[s.family];
            let is_counter = fam.kind == Kind::Counter
                || s.name.ends_with("_count")
                || s.name.ends_with("_bucket")
                || s.name.ends_with("_sum");
            if !is_counter {
                continue;
            }
            counters += 1;
            let restarted = c.name == reset.cluster && s.labels.get("pod") == Some(&reset.pod);
            for w in s.samples.windows(2) {
                if w[1].v < w[0].v {
                    assert!(restarted, "{} {} decreases", s.name, s.labels);
                    assert!(w[0].t < at && w[1].t >= back, "reset at the wrong time");
                    if s.name == "istio_requests_total" {
                        resets += 1;
                    }
                }
            }
            if restarted {
                assert!(
                    s.samples.iter().all(|x| x.t < at || x.t >= back),
                    "scraped while down"
                );
            }
        }
    }
    assert!(counters > 100);
    assert!(
        resets >= 2,
        "expected the restart to reset counters, saw {resets}"
    );
    // The restarted pod carries canary traffic.
    assert!(sim.clusters[0].series.iter().any(|s| {
        s.labels.get("pod") == Some(&reset.pod)
            && s.labels.get("destination_version") == Some("v2")
            && s.samples.windows(2).any(|w| w[1].v < w[0].v)
    }));
}

#[test]
fn union_is_the_cluster_files_with_cluster_labels() {
    let sim = Simulation::generate(&small(Canary::Bad)).expect("valid config");
    let union = text(|w| sim.write_union(w));
    assert!(union.ends_with("\n# EOF\n"));
    let mut from_clusters = Vec::new();
    for (i, c) in sim.clusters.iter().enumerate() {
        let out = text(|w| sim.write_cluster(i, w));
        assert!(out.ends_with("\n# EOF\n"));
        for line in out.lines().filter(|l| !l.starts_with('#')) {
            let (name, mut labels, v, ts) = parse_line(line);
            assert!(labels.iter().all(|(k, _)| k != "cluster"), "{line}");
            labels.push(("cluster".to_string(), c.name.clone()));
            labels.sort();
            from_clusters.push((name, labels, v, ts));
        }
    }
    let mut from_union: Vec<_> = union
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (name, mut labels, v, ts) = parse_line(l);
            labels.sort();
            (name, labels, v, ts)
        })
        .collect();
    from_clusters.sort();
    from_union.sort();
    assert_eq!(from_clusters.len(), from_union.len());
    assert!(
        from_clusters == from_union,
        "union differs from the clusters"
    );
}

#[test]
fn openmetrics_families_are_grouped_and_counters_named_total() {
    let sim = Simulation::generate(&small(Canary::Good)).expect("valid config");
    let out = text(|w| sim.write_union(w));
    let types: Vec<&str> = out.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    let unique: BTreeSet<&str> = types.iter().copied().collect();
    assert_eq!(types.len(), unique.len(), "a family is split");
    assert!(types.contains(&"# TYPE istio_requests counter"));
    assert!(types.contains(&"# TYPE istio_request_duration_milliseconds histogram"));
    let mut family = "";
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            family = rest.split(' ').next().unwrap_or("");
        } else if !line.starts_with('#') {
            assert!(
                line.starts_with(family),
                "{line} outside its family {family}"
            );
            if family == "istio_requests" {
                assert!(line.starts_with("istio_requests_total{"));
            }
        }
    }
}

#[test]
fn traffic_matches_the_configured_rates() {
    for canary in [Canary::Good, Canary::Bad] {
        let sim = Simulation::generate(&small(canary)).expect("valid config");
        let last = |labels: &Labels| -> f64 {
            sim.clusters
                .iter()
                .flat_map(|c| c.series.iter())
                .filter(|s| s.name == "istio_requests_total" && &s.labels == labels)
                .map(|s| s.samples.last().map(|x| x.v).unwrap_or(0.0))
                .sum()
        };
        let mut total = 0.0;
        let mut errors = 0.0;
        let mut cross = 0.0;
        for c in &sim.clusters {
            for s in c.series.iter().filter(|s| s.name == "istio_requests_total") {
                let l = &s.labels;
                if l.get("reporter") != Some("destination")
                    || l.get("destination_version") != Some("v2")
                    || l.get("destination_app") != Some("helloworld")
                {
                    continue;
                }
                let v = last(l);
                total += v;
                if l.get("response_code").is_some_and(|c| c.starts_with('5')) {
                    errors += v;
                }
                if l.get("source_cluster") != l.get("destination_cluster") {
                    cross += v;
                }
            }
        }
        assert!(total > 1000.0, "too little canary traffic: {total}");
        let rate = errors / total;
        let want = canary.error_rate();
        assert!(
            (rate - want).abs() < 0.01 + want * 0.2,
            "{canary}: error rate {rate}, configured {want}"
        );
        let share = cross / total;
        assert!(
            (share - CROSS_CLUSTER_SHARE).abs() < 0.05,
            "cross-cluster share {share}"
        );
    }
}

#[test]
fn model_series_carry_name_and_optional_cluster() {
    let sim = Simulation::generate(&small(Canary::Good)).expect("valid config");
    let plain = sim.series(1, false);
    let with = sim.series(1, true);
    assert_eq!(plain.len(), sim.counts(1).series);
    assert!(plain.iter().all(|s| s.labels.get("cluster").is_none()));
    assert!(with
        .iter()
        .all(|s| s.labels.get("cluster") == Some("k8s-2")));
    assert!(with.windows(2).all(|w| w[0].labels < w[1].labels));
    assert!(plain
        .iter()
        .any(|s| s.labels.metric_name() == Some("istio_requests_total")));
}

#[test]
fn config_problems_are_reported_together() {
    let cfg = SimConfig {
        clusters: vec!["k8s-1".into(), "k8s-1".into(), "a b".into()],
        weights: vec![0, 120],
        duration_secs: 10,
        ..SimConfig::default()
    };
    let err = cfg.validate().expect_err("invalid").to_string();
    for part in ["listed twice", "\"a b\"", "weight 120", "too short"] {
        assert!(err.contains(part), "{err} lacks {part}");
    }
    assert!(SimConfig::default().validate().is_ok());
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration_secs("1h").ok(), Some(3600));
    assert_eq!(parse_duration_secs("1h30m").ok(), Some(5400));
    assert_eq!(parse_duration_secs("90s").ok(), Some(90));
    assert_eq!(parse_duration_secs("600").ok(), Some(600));
    for bad in ["", "h", "1x", "0", "-5", "1h5"] {
        assert!(parse_duration_secs(bad).is_err(), "{bad}");
    }
}

#[test]
fn schedule_steps_cover_the_run() {
    let s = SimConfig::default().schedule();
    assert_eq!(s.steps.len(), DEFAULT_WEIGHTS.len());
    assert_eq!(s.steps[0].start, s.start);
    assert_eq!(s.steps.last().map(|x| x.end), Some(s.end));
    assert!(s.steps.windows(2).all(|w| w[0].end == w[1].start));
    let reset_step = s
        .steps
        .iter()
        .find(|st| st.start <= s.counter_reset.at && s.counter_reset.at < st.end)
        .expect("reset inside a step");
    assert!(reset_step.weight > 0, "reset must hit canary traffic");
    assert!((s.counter_reset.at as f64 - reset_step.mid()).abs() > 60.0);
}

/// `ts_roundtrips` decides without text what printing `secs.mmm` and
/// parsing it back as a float (as promtool does) decides.
#[test]
fn ts_roundtrips_agrees_with_the_text_route() {
    let by_text = |t: i64| {
        let s = format!("{}.{:03}", t / 1000, t % 1000);
        s.parse::<f64>().map(|f| (f * 1000.0) as i64 == t) == Ok(true)
    };
    let mut disagree = Vec::new();
    let mut rejected = 0;
    let starts = [
        0,
        DEFAULT_START * 1000,
        1_700_000_000_000,
        4_102_444_800_000,
    ];
    for start in starts {
        for t in start..start + 200_000 {
            if by_text(t) != mesh::ts_roundtrips(t) {
                disagree.push(t);
            }
            rejected += usize::from(!by_text(t));
        }
    }
    assert!(
        disagree.is_empty(),
        "{:?}",
        &disagree[..disagree.len().min(10)]
    );
    // The check is not vacuous: some timestamps do not survive the text.
    assert!(rejected > 1000, "{rejected}");
}

/// `background_mesh_series` adds exactly that many `istio_requests_total`
/// series a cluster, destination-reported by the background services,
/// with unique label sets and counters that never decrease.
#[test]
fn background_mesh_series_are_added() {
    let base = small(Canary::Good);
    let plain = Simulation::generate(&base).expect("valid config");
    let with = Simulation::generate(&SimConfig {
        background_mesh_series: 50,
        ..base
    })
    .expect("valid config");
    for (i, c) in with.clusters.iter().enumerate() {
        let requests = |c: &ClusterData| {
            c.series
                .iter()
                .filter(|s| s.name == "istio_requests_total")
                .count()
        };
        assert_eq!(requests(c), requests(&plain.clusters[i]) + 50);
        let bg: Vec<&SimSeries> = c
            .series
            .iter()
            .filter(|s| s.name == "istio_requests_total")
            .filter(|s| s.labels.get("destination_app") == Some("cart"))
            .collect();
        assert!(!bg.is_empty());
        for s in &bg {
            assert_eq!(s.labels.get("reporter"), Some("destination"));
            assert_eq!(s.labels.get("destination_cluster"), Some(c.name.as_str()));
            assert!(s.samples.windows(2).all(|w| w[0].v <= w[1].v));
        }
        let unique: BTreeSet<String> = c
            .series
            .iter()
            .map(|s| format!("{} {}", s.name, s.labels))
            .collect();
        assert_eq!(unique.len(), c.series.len(), "label sets are unique");
    }
}
