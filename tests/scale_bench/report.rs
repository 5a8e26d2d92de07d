//! The scale benchmark's rows and tables.

/// One side's figures for one query at one N (medians and means over the
/// timed runs).
#[derive(Default, Clone, Copy)]
pub struct Side {
    pub ms: f64,
    /// This process's own CPU per query, ms.
    pub cpu_ms: f64,
    /// The N cluster servers' CPU per query, ms (0 for the union).
    pub backend_cpu_ms: f64,
    /// Peak RSS (VmHWM) and RSS before the first query, MB.
    pub rss_mb: f64,
    pub idle_rss_mb: f64,
    /// `promfed_backend_bytes_received_total` per query.
    pub received: f64,
    /// What the cluster servers sent for one query (their
    /// `prometheus_http_response_size_bytes_sum`).
    pub sent: f64,
    /// Connections the cluster servers accepted during a second (warm)
    /// query: 0 when promfed's pool reuses them.
    pub conns: f64,
    /// Timed runs.
    pub runs: usize,
    pub equal: bool,
}

pub struct Row {
    pub n: usize,
    pub name: &'static str,
    pub raw: Side,
    pub push: Side,
    pub union: Side,
    /// Raw samples the query touches (`count_over_time` on the union).
    pub touched: f64,
}

fn over_idle(s: &Side) -> f64 {
    s.rss_mb - s.idle_rss_mb
}

pub fn print_line(r: &Row) {
    let side = |what: &str, s: &Side| {
        format!(
            "{what} {:.1} ms over {} runs (CPU {:.1} ms, backends {:.1} ms), peak RSS {:.1} MB (idle {:.1}), {:.0} kB received, {:.0} kB sent by backends, {} new connections on a warm query, {}",
            s.ms,
            s.runs,
            s.cpu_ms,
            s.backend_cpu_ms,
            s.rss_mb,
            s.idle_rss_mb,
            s.received / 1e3,
            s.sent / 1e3,
            s.conns,
            if s.equal { "equal" } else { "DIFFERS" }
        )
    };
    println!(
        "N={} {}: {}; {}; union {:.1} ms (CPU {:.1} ms); {} samples touched",
        r.n,
        r.name,
        side("raw", &r.raw),
        side("pushdown", &r.push),
        r.union.ms,
        r.union.cpu_ms,
        r.touched
    );
}

pub fn print_tables(rows: &[Row], ns: &[usize], names: &[&'static str]) {
    println!("\nRaw selects (pushdown off) against the union:\n");
    println!(
        "| N | query | median ms promfed / union | ratio | CPU ms per query: promfed + backends (union) | promfed peak RSS over idle, MB | touched samples × 16 B, MB | RSS over idle / touched bytes | kB received per query | answers |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in rows {
        let touched_mb = r.touched * 16.0 / 1e6;
        println!(
            "| {} | {} | {:.1} / {:.1} | {:.2} | {:.1} + {:.1} ({:.1}) | {:.1} | {:.3} | {:.1} | {:.0} | {} |",
            r.n,
            r.name,
            r.raw.ms,
            r.union.ms,
            r.raw.ms / r.union.ms,
            r.raw.cpu_ms,
            r.raw.backend_cpu_ms,
            r.union.cpu_ms,
            over_idle(&r.raw),
            touched_mb,
            over_idle(&r.raw) * 1.048_576 / touched_mb.max(f64::MIN_POSITIVE),
            r.raw.received / 1e3,
            if r.raw.equal { "equal" } else { "differ" }
        );
    }
    println!("\nPushdown on against raw selects:\n");
    println!(
        "| N | query | median ms pushdown / raw | latency ratio | pushdown / union | kB sent by backends, pushdown / raw | bytes ratio | CPU ms per query, pushdown: promfed + backends | peak RSS over idle MB, pushdown / raw | answers |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in rows {
        println!(
            "| {} | {} | {:.1} / {:.1} | {:.2} | {:.2} | {:.0} / {:.0} | {:.3} | {:.1} + {:.1} | {:.1} / {:.1} | {} |",
            r.n,
            r.name,
            r.push.ms,
            r.raw.ms,
            r.push.ms / r.raw.ms,
            r.push.ms / r.union.ms,
            r.push.sent / 1e3,
            r.raw.sent / 1e3,
            r.push.sent / r.raw.sent.max(f64::MIN_POSITIVE),
            r.push.cpu_ms,
            r.push.backend_cpu_ms,
            over_idle(&r.push),
            over_idle(&r.raw),
            if r.push.equal { "equal" } else { "differ" }
        );
    }
    // Latency growth: the ratio at the largest N over the ratio at the
    // smallest, per query (goal ≤ 1.5).
    let (Some(&lo), Some(&hi)) = (ns.first(), ns.last()) else {
        return;
    };
    println!();
    for name in names {
        let find = |n: usize| rows.iter().find(|r| r.n == n && r.name == *name);
        if let (Some(a), Some(b)) = (find(lo), find(hi)) {
            println!(
                "{name}: ratio to the union at N={hi} / at N={lo}: raw {:.2}, pushdown {:.2}",
                (b.raw.ms / b.union.ms) / (a.raw.ms / a.union.ms),
                (b.push.ms / b.union.ms) / (a.push.ms / a.union.ms)
            );
        }
    }
}
