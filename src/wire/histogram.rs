//! JSON of native histogram points, as Prometheus 3.8's API writes them.

use super::{push_timestamp, push_value};
use crate::model::histogram::FloatHistogram;

/// `{"count":"…","sum":"…","buckets":[[rule,"lower","upper","count"],…]}`:
/// buckets of count 0 are left out (and `buckets` with them when none is
/// left); `rule` is 0 for (l,u], 1 for [l,u), 2 for (l,u), 3 for [l,u].
pub fn push_histogram(out: &mut String, h: &FloatHistogram) {
    out.push_str("{\"count\":");
    push_value(out, h.count);
    out.push_str(",\"sum\":");
    push_value(out, h.sum);
    let mut first = true;
    for b in h.all_buckets() {
        if b.count == 0.0 {
            continue;
        }
        out.push_str(if first { ",\"buckets\":[" } else { "," });
        first = false;
        let rule = match (b.lower_inclusive, b.upper_inclusive) {
            (false, true) => '0',
            (true, false) => '1',
            (false, false) => '2',
            (true, true) => '3',
        };
        out.push('[');
        out.push(rule);
        out.push(',');
        push_value(out, b.lower);
        out.push(',');
        push_value(out, b.upper);
        out.push(',');
        push_value(out, b.count);
        out.push(']');
    }
    if !first {
        out.push(']');
    }
    out.push('}');
}

/// `[t,{…}]`: one histogram point.
pub fn push_histogram_point(out: &mut String, t: i64, h: &FloatHistogram) {
    out.push('[');
    push_timestamp(out, t);
    out.push(',');
    push_histogram(out, h);
    out.push(']');
}
