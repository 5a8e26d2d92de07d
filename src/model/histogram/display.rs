//! Histograms and floats as Go prints them (`FloatHistogram.String`, `%g`).

use super::FloatHistogram;

/// Formats a float as Go's `%g` / `%v` (shortest digits; the exponent form
/// when the decimal exponent is below -4 or at least 6, with a sign and at
/// least two exponent digits, as Go's `strconv.FormatFloat(v, 'g', -1, 64)`).
pub fn go_g(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    // Rust's `{:e}` is the shortest round-trip form too: `2.349209324e6`.
    let e = format!("{v:e}");
    let Some((mantissa, exp)) = e.split_once('e') else {
        return format!("{v}");
    };
    let x: i32 = exp.parse().unwrap_or(0);
    if v != 0.0 && !(-4..6).contains(&x) {
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        let pad = if digits.len() < 2 { "0" } else { "" };
        return format!("{mantissa}e{sign}{pad}{digits}");
    }
    format!("{v}")
}

/// One bucket as Go's `Bucket.String` prints it: `(lower,upper]:count`.
fn push_bucket(
    out: &mut String,
    lower: f64,
    upper: f64,
    lower_incl: bool,
    upper_incl: bool,
    count: f64,
) {
    out.push_str(", ");
    out.push(if lower_incl { '[' } else { '(' });
    out.push_str(&go_g(lower));
    out.push(',');
    out.push_str(&go_g(upper));
    out.push(if upper_incl { ']' } else { ')' });
    out.push(':');
    out.push_str(&go_g(count));
}

impl FloatHistogram {
    /// The histogram as Go's `FloatHistogram.String` prints it (the label
    /// value `count_values` gives a histogram): count, sum, then every
    /// non-empty bucket from the lowest bound up, the zero bucket in between.
    /// Bucket bounds are not clamped to the zero threshold; a bound is
    /// inclusive on the side away from zero (NHCB: upper, and lower of the
    /// first bucket).
    pub fn go_string(&self) -> String {
        let mut out = format!("{{count:{}, sum:{}", go_g(self.count), go_g(self.sum));
        let custom = self.uses_custom_buckets();
        let incl = |lower: f64, upper: f64, index: i32| {
            if custom {
                (index == 0, true)
            } else {
                (lower < 0.0, upper > 0.0)
            }
        };
        for b in self.negative.iter().rev().filter(|b| b.count != 0.0) {
            let lower = -self.bound(b.index);
            let upper = -self.bound(b.index.saturating_sub(1));
            let (li, ui) = incl(lower, upper, b.index);
            push_bucket(&mut out, lower, upper, li, ui, b.count);
        }
        if self.zero_count != 0.0 {
            let zt = self.zero_threshold;
            push_bucket(&mut out, -zt, zt, true, true, self.zero_count);
        }
        for b in self.positive.iter().filter(|b| b.count != 0.0) {
            let lower = self.bound(b.index.saturating_sub(1));
            let upper = self.bound(b.index);
            let (li, ui) = incl(lower, upper, b.index);
            push_bucket(&mut out, lower, upper, li, ui, b.count);
        }
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::histogram::{Span, CUSTOM_BUCKETS_SCHEMA};

    fn spans(s: &[(i32, u32)]) -> Vec<Span> {
        s.iter()
            .map(|&(offset, length)| Span { offset, length })
            .collect()
    }

    /// The cases of Prometheus 3.8's `TestFloatHistogramString`
    /// (model/histogram/float_histogram_test.go), transcribed.
    #[test]
    fn go_string_matches_prometheus_float_histogram_string() {
        let exp = FloatHistogram {
            schema: 1,
            zero_threshold: 0.01,
            zero_count: 5.5,
            count: 3493.3,
            sum: 2349209.324,
            positive: FloatHistogram::buckets_from_spans(
                &spans(&[(-2, 1), (2, 3)]),
                &[1.0, 3.3, 4.2, 0.1],
            )
            .expect("valid spans"),
            negative: FloatHistogram::buckets_from_spans(
                &spans(&[(3, 2), (3, 2)]),
                &[3.1, 3.0, 1.234e5, 1000.0],
            )
            .expect("valid spans"),
            ..FloatHistogram::default()
        };
        assert_eq!(
            exp.go_string(),
            "{count:3493.3, sum:2.349209324e+06, [-22.62741699796952,-16):1000, \
             [-16,-11.31370849898476):123400, [-4,-2.82842712474619):3, \
             [-2.82842712474619,-2):3.1, [-0.01,0.01]:5.5, (0.35355339059327373,0.5]:1, \
             (1,1.414213562373095]:3.3, (1.414213562373095,2]:4.2, (2,2.82842712474619]:0.1}"
        );
        let custom = FloatHistogram {
            schema: CUSTOM_BUCKETS_SCHEMA,
            count: 3493.3,
            sum: 2349209.324,
            positive: FloatHistogram::buckets_from_spans(
                &spans(&[(0, 1), (2, 4)]),
                &[1.0, 3.3, 4.2, 0.1, 5.0],
            )
            .expect("valid spans"),
            custom_values: vec![1.0, 2.0, 5.0, 10.0, 15.0, 20.0].into(),
            ..FloatHistogram::default()
        };
        assert_eq!(
            custom.go_string(),
            "{count:3493.3, sum:2.349209324e+06, [-Inf,1]:1, (5,10]:3.3, (10,15]:4.2, \
             (15,20]:0.1, (20,+Inf]:5}"
        );
        assert_eq!(go_g(100000.0), "100000");
        assert_eq!(go_g(1e6), "1e+06");
        assert_eq!(go_g(-1.5e-5), "-1.5e-05");
        assert_eq!(go_g(0.0001), "0.0001");
        assert_eq!(go_g(1e21), "1e+21");
        // Empty buckets are left out; an empty histogram is count and sum only.
        assert_eq!(FloatHistogram::default().go_string(), "{count:0, sum:0}");
    }
}
