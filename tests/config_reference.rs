//! docs/configuration.md is generated from the config schema itself: the
//! serde structs under `src/` (from `Config` down), their `///` docs,
//! `#[serde(...)]` attributes and `default_*` functions, read with `syn`.
//! This test fails when the file differs from what the code says (a field
//! added, renamed, retyped, its default or its doc changed), or when a
//! field has no doc.
//!
//! Regenerate: `scripts/config-reference` (=
//! `PROMFED_WRITE_CONFIG_REFERENCE=1 cargo test --test config_reference`).

mod config_reference_gen;

use std::path::Path;

const DOC: &str = "docs/configuration.md";

#[test]
fn configuration_reference_is_generated_from_the_schema() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let generated = config_reference_gen::generate(&root.join("src"))
        .unwrap_or_else(|e| panic!("generating the configuration reference: {e}"));
    assert!(
        generated.undocumented.is_empty(),
        "config fields without a `///` doc comment: {}",
        generated.undocumented.join(", ")
    );
    let path = root.join(DOC);
    if std::env::var_os("PROMFED_WRITE_CONFIG_REFERENCE").is_some() {
        std::fs::write(&path, &generated.markdown).expect("writing docs/configuration.md");
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    if on_disk != generated.markdown {
        let first = on_disk
            .lines()
            .zip(generated.markdown.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| {
                on_disk
                    .lines()
                    .count()
                    .min(generated.markdown.lines().count())
            });
        panic!(
            "{DOC} is not what the config schema says (first difference at line {}:\n  file: {:?}\n  code: {:?}).\nRegenerate it with scripts/config-reference.",
            first + 1,
            on_disk.lines().nth(first).unwrap_or(""),
            generated.markdown.lines().nth(first).unwrap_or("")
        );
    }
}

#[test]
fn every_top_level_field_appears_with_its_doc_and_default() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let g = config_reference_gen::generate(&root.join("src")).expect("generate");
    // Independent of the generator's walk: the field as YAML accepts it,
    // documented where the reference says.
    let yaml = "backends:\n  - name: a\n    url: http://127.0.0.1:9090\n";
    let cfg = promfed::config::Config::from_yaml(yaml, "test").expect("minimal config");
    assert!(g
        .markdown
        .contains("| `listen` | string | `\"0.0.0.0:9090\"` |"));
    assert_eq!(cfg.listen, "0.0.0.0:9090");
    assert!(g
        .markdown
        .contains("| `backends[].timeout` | duration | `30s` |"));
    assert_eq!(cfg.backends[0].timeout, std::time::Duration::from_secs(30));
    assert!(g
        .markdown
        .contains("| `backends[].max_response_bytes` | integer | `134217728` |"));
    assert_eq!(cfg.backends[0].max_response_bytes, 134_217_728);
    assert!(g
        .markdown
        .contains("| `probe_interval` | duration | `15s` |"));
    assert_eq!(cfg.probe_interval, std::time::Duration::from_secs(15));
    assert!(g
        .markdown
        .contains("`remote_read`, `query_api`, `thanos_store`"));
    assert!(g
        .markdown
        .contains("| `backends[].name` | string | required |"));
}
