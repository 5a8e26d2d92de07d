//! The scale benchmark's data: istio-sim's clusters written straight into
//! Prometheus TSDB blocks by `tests/tsdb-writer` (Prometheus 3.8's own
//! `tsdb.BlockWriter`, as `promtool tsdb create-blocks-from` uses it), one
//! block per cluster and one per union, fed a compact binary stream on its
//! stdin: at tens of thousands of series a cluster, OpenMetrics text
//! through promtool takes minutes per cluster (the text is ~300 bytes a
//! sample), and the union Prometheus's own compaction of N clusters'
//! overlapping blocks into one took a minute already at N = 2.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use istio_sim::{ClusterData, Kind, Simulation};

use super::common::HarnessError;
use super::{err, io};

/// The block writer, built by `scripts/bench-scale` (`BENCH_TSDB_WRITER`).
pub fn writer_bin() -> Result<PathBuf, HarnessError> {
    let p = std::env::var_os("BENCH_TSDB_WRITER").map(PathBuf::from);
    match p {
        Some(p) if p.is_file() => Ok(p),
        _ => Err(err(
            "BENCH_TSDB_WRITER",
            "not set to the tsdb-writer binary: run scripts/bench-scale, which builds it",
        )),
    }
}

fn put_str(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    let len = u32::try_from(s.len()).map_err(std::io::Error::other)?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(s.as_bytes())
}

/// The series of clusters `which` with `__name__` and, when `cluster` is
/// set, their `cluster` label, in tsdb-writer's input format (see
/// tests/tsdb-writer/main.go).
fn write_series(
    sim: &Simulation,
    which: &[usize],
    cluster: bool,
    w: &mut impl Write,
) -> std::io::Result<()> {
    for c in which.iter().filter_map(|&i| sim.clusters.get(i)) {
        write_cluster_series(sim, c, cluster, w)?;
    }
    w.write_all(&0u32.to_le_bytes())
}

fn write_cluster_series(
    sim: &Simulation,
    c: &ClusterData,
    cluster: bool,
    w: &mut impl Write,
) -> std::io::Result<()> {
    for s in &c.series {
        let n = s.labels.len() + 1 + usize::from(cluster);
        let n = u32::try_from(n).map_err(std::io::Error::other)?;
        let histogram = sim
            .families
            .get(s.family)
            .is_some_and(|f| f.kind == Kind::Histogram);
        w.write_all(&n.to_le_bytes())?;
        w.write_all(&[u8::from(histogram)])?;
        put_str(w, "__name__")?;
        put_str(w, &s.name)?;
        if cluster {
            put_str(w, "cluster")?;
            put_str(w, &c.name)?;
        }
        for l in s.labels.iter() {
            put_str(w, &l.name)?;
            put_str(w, &l.value)?;
        }
        let count = u32::try_from(s.samples.len()).map_err(std::io::Error::other)?;
        w.write_all(&count.to_le_bytes())?;
        for p in &s.samples {
            w.write_all(&p.t.to_le_bytes())?;
            w.write_all(&p.v.to_bits().to_le_bytes())?;
        }
    }
    Ok(())
}

/// Writes clusters `which` into one block under `tsdb` (one cluster's
/// server, or a union); returns the bytes streamed to the writer. A union
/// holds each series' `cluster` label (`cluster: true`); a cluster's own
/// server does not: as a Prometheus with `external_labels`, promfed's
/// backend `external_labels` add it.
pub fn write_block(
    writer: &Path,
    sim: &Simulation,
    which: &[usize],
    cluster: bool,
    tsdb: &Path,
) -> Result<u64, HarnessError> {
    std::fs::create_dir_all(tsdb).map_err(io(format!("creating {}", tsdb.display())))?;
    let mut child = Command::new(writer)
        .arg(tsdb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io(format!("running {}", writer.display())))?;
    let mut sent = 0u64;
    let wrote = child.stdin.take().map(|stdin| {
        let mut w = CountingWriter {
            inner: BufWriter::with_capacity(1 << 20, stdin),
            count: &mut sent,
        };
        write_series(sim, which, cluster, &mut w).and_then(|()| w.flush())
    });
    // stdin is closed here (dropped with the writer), so the child ends.
    let out = child
        .wait_with_output()
        .map_err(io(format!("waiting for {}", writer.display())))?;
    if !out.status.success() {
        return Err(err(
            "tsdb-writer",
            format!(
                "{}: {}: {}",
                tsdb.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    if let Some(Err(e)) = wrote {
        return Err(err(
            "tsdb-writer",
            format!("{}: writing its input: {e}", tsdb.display()),
        ));
    }
    Ok(sent)
}

struct CountingWriter<'a, W: Write> {
    inner: W,
    count: &'a mut u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        *self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Hard-links every file under `from` into `to` (same tree).
pub fn link_tree(from: &Path, to: &Path) -> Result<(), HarnessError> {
    std::fs::create_dir_all(to).map_err(io(format!("creating {}", to.display())))?;
    for e in std::fs::read_dir(from).map_err(io(format!("reading {}", from.display())))? {
        let e = e.map_err(io("reading a directory entry"))?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            link_tree(&src, &dst)?;
        } else {
            std::fs::hard_link(&src, &dst).map_err(io(format!("linking {}", src.display())))?;
        }
    }
    Ok(())
}

/// Block directories (ULIDs) of a TSDB directory.
pub fn blocks(tsdb: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tsdb)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.join("meta.json").exists())
                .collect()
        })
        .unwrap_or_default()
}

pub fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        dir_bytes(&p)
                    } else {
                        e.metadata().map_or(0, |m| m.len())
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
