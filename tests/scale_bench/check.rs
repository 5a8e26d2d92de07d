//! The block writer against promtool: the same simulation written by
//! `tests/tsdb-writer` and backfilled from OpenMetrics text by promtool
//! 3.8 must dump (`promtool tsdb dump`) the same samples. Ignored like the
//! benchmark (it needs the writer `scripts/bench-scale` builds), so every
//! benchmark run checks its data first.

use std::path::Path;
use std::process::Command;

use istio_sim::{SimConfig, Simulation};

use super::common::{self, HarnessError, TempDir, Tools};
use super::{data, err, io};

/// Every sample of the TSDB at `db`, one `{labels} value timestamp` line
/// each, sorted.
fn dump(tools: &Tools, db: &Path) -> Result<Vec<String>, HarnessError> {
    // A read-only open wants a WAL directory; blocks alone have none.
    std::fs::create_dir_all(db.join("wal")).map_err(io("creating wal"))?;
    let out = Command::new(&tools.promtool)
        .args(["tsdb", "dump"])
        .arg(db)
        .output()
        .map_err(io(format!("running {}", tools.promtool.display())))?;
    if !out.status.success() {
        return Err(err(
            "promtool tsdb dump",
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    Ok(lines)
}

#[test]
#[ignore = "needs BENCH_TSDB_WRITER: scripts/bench-scale"]
fn tsdb_writer_writes_what_promtool_backfills() -> Result<(), HarnessError> {
    let tools = Tools::find()?;
    let writer = data::writer_bin()?;
    let dir = TempDir::new("promfed-scale-check")?;
    let sim = Simulation::generate(&SimConfig {
        duration_secs: 900,
        background_series: 40,
        background_mesh_series: 24,
        ..SimConfig::default()
    })?;
    let om = dir.path().join("union.om");
    {
        let f = std::fs::File::create(&om).map_err(io("creating union.om"))?;
        let mut w = std::io::BufWriter::new(f);
        sim.write_union(&mut w)
            .and_then(|()| std::io::Write::flush(&mut w))
            .map_err(io("writing union.om"))?;
    }
    let text = dir.path().join("text");
    common::process::backfill(&tools, &om, &text)?;
    let bin = dir.path().join("bin");
    data::write_block(&writer, &sim, &[0, 1], true, &bin)?;
    let (want, got) = (dump(&tools, &text)?, dump(&tools, &bin)?);
    let samples: usize = (0..2).map(|i| sim.counts(i).samples).sum();
    assert_eq!(want.len(), samples, "promtool's block holds every sample");
    if let Some((w, g)) = want.iter().zip(&got).find(|(w, g)| w != g) {
        return Err(err(
            "tsdb-writer",
            format!("promtool has {w}\n tsdb-writer has {g}"),
        ));
    }
    assert_eq!(
        got.len(),
        want.len(),
        "tsdb-writer's block holds as many samples"
    );
    Ok(())
}
