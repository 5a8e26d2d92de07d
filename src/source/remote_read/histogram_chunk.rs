//! Decodes Prometheus TSDB native histogram chunks (the HISTOGRAM and
//! FLOAT_HISTOGRAM encodings) into float histograms.
//!
//! Layout of a chunk: a 2-byte big-endian sample count, one flags byte whose
//! top two bits are the counter-reset header (`00` unknown, `01` no reset,
//! `10` reset, `11` gauge), then a bit stream. The stream opens with the
//! layout every sample of the chunk shares: the zero threshold (one byte:
//! 0 for 0, 255 followed by 64 raw bits, else `0.5·2^(byte-243)`), the
//! schema as a varbit int, the positive then negative spans (a varbit uint
//! count, then per span a varbit uint length and a varbit int offset) and,
//! for custom-bucket schemas, the bounds (a varbit uint count, then per
//! bound a varbit uint `b`: `b > 0` is `(b-1)/1000`, `0` is followed by 64
//! raw bits).
//!
//! A varbit number is a prefix of up to eight ones ended by a zero (`0`,
//! `10`, `110`, ... `11111110`, or eight ones) choosing a field of 0, 3, 6,
//! 9, 12, 18, 25, 56 or 64 bits; signed fields above the middle of their
//! range are negative.
//!
//! Integer histograms: the first sample is its timestamp (varbit int),
//! count and zero count (varbit uint), sum (64 raw bits) and each bucket
//! as a varbit int (the delta from the previous bucket of its side). Later
//! samples carry a delta of deltas (varbit int) for the timestamp, count,
//! zero count and each bucket, and the sum XORed with the previous one as
//! in float chunks. Float histograms: the first sample is the timestamp
//! then 64 raw bits for count, zero count, sum and each absolute bucket
//! count; later samples a timestamp delta of deltas and every other field
//! XORed with its previous value, each with its own window. A sample whose
//! sum is the staleness marker ends there (no buckets follow).

use std::sync::Arc;

use super::chunk::{BitReader, OutOfBits};
use super::xor_value::{XorValue, XorValueError};
use crate::model::histogram::{
    Bucket, CounterResetHint, FloatHistogram, HistogramError, HistogramSample, Span,
    CUSTOM_BUCKETS_SCHEMA, EXPONENTIAL_SCHEMA_MAX, EXPONENTIAL_SCHEMA_MIN,
};
use crate::model::is_stale_nan;

/// The largest schema a newer Prometheus may write; such histograms are
/// reduced to [`EXPONENTIAL_SCHEMA_MAX`] on reading, as 3.8 does.
const EXPONENTIAL_SCHEMA_MAX_RESERVED: i64 = 52;

/// Why a histogram chunk could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HistogramChunkError {
    /// The data ended before the samples its header announced.
    #[error("histogram chunk truncated: {decoded} of {expected} samples decoded")]
    Truncated { decoded: usize, expected: usize },
    /// The chunk has no flags byte after its sample count.
    #[error("histogram chunk shorter than its 3-byte header")]
    NoHeader,
    /// The schema is neither exponential nor custom buckets.
    #[error("histogram chunk has unknown schema {0}")]
    UnknownSchema(i64),
    /// A span length or offset does not fit its type.
    #[error("histogram chunk has a span out of range (length {length}, offset {offset})")]
    SpanOutOfRange { length: u64, offset: i64 },
    /// The layout announces more spans, buckets or bounds than the chunk
    /// has bits left to hold them.
    #[error("histogram chunk announces {announced} {what} but has {bits} bits left")]
    TooMany {
        what: &'static str,
        announced: u64,
        bits: usize,
    },
    /// The spans do not make a valid bucket layout.
    #[error("histogram chunk layout: {0}")]
    Layout(#[from] HistogramError),
    /// A value window claims more than 64 bits.
    #[error("histogram chunk has a value window of {leading} leading zeros and {bits} bits")]
    BadWindow { leading: u32, bits: u32 },
}

/// What went wrong inside the bit stream.
enum ReadError {
    OutOfBits,
    BadWindow { leading: u32, bits: u32 },
    Chunk(HistogramChunkError),
}

impl From<OutOfBits> for ReadError {
    fn from(_: OutOfBits) -> Self {
        ReadError::OutOfBits
    }
}

impl From<XorValueError> for ReadError {
    fn from(e: XorValueError) -> Self {
        match e {
            XorValueError::OutOfBits => ReadError::OutOfBits,
            XorValueError::BadWindow { leading, bits } => ReadError::BadWindow { leading, bits },
        }
    }
}

impl From<HistogramChunkError> for ReadError {
    fn from(e: HistogramChunkError) -> Self {
        ReadError::Chunk(e)
    }
}

impl From<HistogramError> for ReadError {
    fn from(e: HistogramError) -> Self {
        ReadError::Chunk(HistogramChunkError::Layout(e))
    }
}

/// A varbit number's field width and its raw bits.
fn read_varbit_raw(r: &mut BitReader<'_>) -> Result<(u32, u64), OutOfBits> {
    let mut ones = 0;
    while ones < 8 && r.read_bit()? {
        ones += 1;
    }
    let size = [0, 3, 6, 9, 12, 18, 25, 56, 64][ones];
    let bits = if size == 0 { 0 } else { r.read_bits(size)? };
    Ok((size, bits))
}

fn read_varbit_uint(r: &mut BitReader<'_>) -> Result<u64, OutOfBits> {
    Ok(read_varbit_raw(r)?.1)
}

fn read_varbit_int(r: &mut BitReader<'_>) -> Result<i64, OutOfBits> {
    let (size, bits) = read_varbit_raw(r)?;
    if size == 0 || size == 64 {
        return Ok(bits as i64);
    }
    // A field of `size` bits holds [-(2^(size-1) - 1), 2^(size-1)].
    Ok(if bits > 1u64 << (size - 1) {
        bits as i64 - (1i64 << size)
    } else {
        bits as i64
    })
}

/// The layout every sample of a chunk shares.
struct Layout {
    schema: i32,
    zero_threshold: f64,
    positive: Vec<i32>,
    negative: Vec<i32>,
    custom_values: Arc<[f64]>,
}

fn read_zero_threshold(r: &mut BitReader<'_>) -> Result<f64, OutOfBits> {
    Ok(match r.read_byte()? {
        0 => 0.0,
        255 => f64::from_bits(r.read_bits(64)?),
        b => 0.5 * 2f64.powi(i32::from(b) - 243),
    })
}

/// A count announced by the chunk, refused when the bits left could not
/// hold that many items of at least `min_bits` each.
fn bounded_count(
    r: &mut BitReader<'_>,
    what: &'static str,
    min_bits: usize,
) -> Result<usize, ReadError> {
    let announced = read_varbit_uint(r)?;
    let bits = r.bits_left();
    match usize::try_from(announced) {
        Ok(n) if n.saturating_mul(min_bits) <= bits => Ok(n),
        _ => Err(HistogramChunkError::TooMany {
            what,
            announced,
            bits,
        }
        .into()),
    }
}

/// Reads one side's spans and returns the bucket indexes they cover.
fn read_spans(r: &mut BitReader<'_>) -> Result<Vec<i32>, ReadError> {
    // A span is at least two bits (a zero length and a zero offset).
    let n = bounded_count(r, "spans", 2)?;
    let mut spans = Vec::with_capacity(n);
    let mut buckets: u64 = 0;
    for _ in 0..n {
        let length = read_varbit_uint(r)?;
        let offset = read_varbit_int(r)?;
        let (Ok(l), Ok(o)) = (u32::try_from(length), i32::try_from(offset)) else {
            return Err(HistogramChunkError::SpanOutOfRange { length, offset }.into());
        };
        buckets = buckets.saturating_add(length);
        spans.push(Span {
            offset: o,
            length: l,
        });
    }
    // Every sample spends at least one bit on each bucket.
    let bits = r.bits_left();
    if buckets > bits as u64 {
        return Err(HistogramChunkError::TooMany {
            what: "buckets",
            announced: buckets,
            bits,
        }
        .into());
    }
    let zeros = vec![0.0; buckets as usize];
    Ok(FloatHistogram::buckets_from_spans(&spans, &zeros)?
        .into_iter()
        .map(|b| b.index)
        .collect())
}

fn read_layout(r: &mut BitReader<'_>) -> Result<Layout, ReadError> {
    let zero_threshold = read_zero_threshold(r)?;
    let schema = read_varbit_int(r)?;
    let known = schema == i64::from(CUSTOM_BUCKETS_SCHEMA)
        || (i64::from(EXPONENTIAL_SCHEMA_MIN)..=EXPONENTIAL_SCHEMA_MAX_RESERVED).contains(&schema);
    if !known {
        return Err(HistogramChunkError::UnknownSchema(schema).into());
    }
    let positive = read_spans(r)?;
    let negative = read_spans(r)?;
    let mut custom = Vec::new();
    if schema == i64::from(CUSTOM_BUCKETS_SCHEMA) {
        let n = bounded_count(r, "custom bounds", 1)?;
        custom.reserve(n);
        for _ in 0..n {
            custom.push(match read_varbit_uint(r)? {
                0 => f64::from_bits(r.read_bits(64)?),
                b => (b - 1) as f64 / 1000.0,
            });
        }
    }
    Ok(Layout {
        // Checked above to lie within -53..=52.
        schema: schema as i32,
        zero_threshold,
        positive,
        negative,
        custom_values: custom.into(),
    })
}

/// The changing fields of an integer histogram chunk.
#[derive(Default)]
struct IntState {
    count: u64,
    count_delta: i64,
    zero_count: u64,
    zero_delta: i64,
    /// Per side: each bucket's delta from the previous bucket, and the
    /// change of that delta since the previous sample.
    buckets: [Vec<i64>; 2],
    bucket_deltas: [Vec<i64>; 2],
}

/// The changing fields of a float histogram chunk.
#[derive(Default)]
struct FloatState {
    count: XorValue,
    zero_count: XorValue,
    buckets: [Vec<XorValue>; 2],
}

/// Decoding state of either encoding.
enum Fields {
    Int(IntState),
    Float(FloatState),
}

impl Fields {
    /// Reads everything after the timestamp of sample `i`; `sum` is shared.
    fn read(
        &mut self,
        r: &mut BitReader<'_>,
        i: usize,
        sum: &mut XorValue,
        sizes: [usize; 2],
    ) -> Result<(), ReadError> {
        match self {
            Fields::Int(s) if i == 0 => {
                s.count = read_varbit_uint(r)?;
                s.zero_count = read_varbit_uint(r)?;
                *sum = XorValue::first(r)?;
                for (side, &n) in sizes.iter().enumerate() {
                    s.buckets[side] = vec![0; n];
                    s.bucket_deltas[side] = vec![0; n];
                    for b in s.buckets[side].iter_mut() {
                        *b = read_varbit_int(r)?;
                    }
                }
            }
            Fields::Int(s) => {
                s.count_delta = s.count_delta.wrapping_add(read_varbit_int(r)?);
                s.count = s.count.wrapping_add_signed(s.count_delta);
                s.zero_delta = s.zero_delta.wrapping_add(read_varbit_int(r)?);
                s.zero_count = s.zero_count.wrapping_add_signed(s.zero_delta);
                sum.read(r)?;
                if is_stale_nan(sum.value()) {
                    return Ok(());
                }
                for side in 0..2 {
                    for (b, d) in s.buckets[side].iter_mut().zip(&mut s.bucket_deltas[side]) {
                        *d = d.wrapping_add(read_varbit_int(r)?);
                        *b = b.wrapping_add(*d);
                    }
                }
            }
            Fields::Float(s) if i == 0 => {
                s.count = XorValue::first(r)?;
                s.zero_count = XorValue::first(r)?;
                *sum = XorValue::first(r)?;
                for (side, &n) in sizes.iter().enumerate() {
                    s.buckets[side] = Vec::with_capacity(n);
                    for _ in 0..n {
                        s.buckets[side].push(XorValue::first(r)?);
                    }
                }
            }
            Fields::Float(s) => {
                s.count.read(r)?;
                s.zero_count.read(r)?;
                sum.read(r)?;
                if is_stale_nan(sum.value()) {
                    return Ok(());
                }
                for side in 0..2 {
                    for b in s.buckets[side].iter_mut() {
                        b.read(r)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Count, zero count and each side's absolute bucket counts.
    fn values(&self, side: usize) -> Vec<f64> {
        match self {
            Fields::Int(s) => {
                let mut cur: i64 = 0;
                s.buckets[side]
                    .iter()
                    .map(|d| {
                        cur = cur.wrapping_add(*d);
                        cur as f64
                    })
                    .collect()
            }
            Fields::Float(s) => s.buckets[side].iter().map(XorValue::value).collect(),
        }
    }

    fn counts(&self) -> (f64, f64) {
        match self {
            Fields::Int(s) => (s.count as f64, s.zero_count as f64),
            Fields::Float(s) => (s.count.value(), s.zero_count.value()),
        }
    }
}

/// The number of samples a chunk announces in its header (0 when the chunk
/// is too short to have one).
pub fn histogram_sample_count(data: &[u8]) -> usize {
    match data {
        [hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
        _ => 0,
    }
}

/// Decodes the samples of a histogram chunk (`float`: FLOAT_HISTOGRAM,
/// else HISTOGRAM) with timestamps in `[min_t, max_t]` and appends them to
/// `out`, in time order. A staleness marker comes out as a histogram whose
/// sum is the marker and which holds nothing else, as Prometheus reads it.
pub fn decode_histogram_into(
    data: &[u8],
    float: bool,
    min_t: i64,
    max_t: i64,
    out: &mut Vec<HistogramSample>,
) -> Result<(), HistogramChunkError> {
    let expected = histogram_sample_count(data);
    if expected == 0 {
        return Ok(());
    }
    let Some(&flags) = data.get(2) else {
        return Err(HistogramChunkError::NoHeader);
    };
    let hint_of = |i: usize| match flags >> 6 {
        3 => CounterResetHint::Gauge,
        // In a counter chunk no reset happens after the first sample; the
        // first one's hint is unknown (the previous chunk may be gone).
        _ if i > 0 => CounterResetHint::NotCounterReset,
        _ => CounterResetHint::Unknown,
    };
    let mut r = BitReader::new(data.get(3..).unwrap_or_default());
    let err = |e: ReadError, decoded: usize| match e {
        ReadError::OutOfBits => HistogramChunkError::Truncated { decoded, expected },
        ReadError::BadWindow { leading, bits } => HistogramChunkError::BadWindow { leading, bits },
        ReadError::Chunk(e) => e,
    };
    let layout = read_layout(&mut r).map_err(|e| err(e, 0))?;
    let sizes = [layout.positive.len(), layout.negative.len()];
    let mut fields = if float {
        Fields::Float(FloatState::default())
    } else {
        Fields::Int(IntState::default())
    };
    let (mut t, mut t_delta) = (0i64, 0i64);
    let mut sum = XorValue::default();
    for i in 0..expected {
        let step = (|| -> Result<(), ReadError> {
            let dt = read_varbit_int(&mut r)?;
            if i == 0 {
                t = dt;
            } else {
                t_delta = t_delta.wrapping_add(dt);
                t = t.wrapping_add(t_delta);
            }
            fields.read(&mut r, i, &mut sum, sizes)
        })();
        step.map_err(|e| err(e, i))?;
        if t > max_t {
            // Timestamps only grow within a chunk: nothing later can match.
            break;
        }
        if t < min_t {
            continue;
        }
        let h = if is_stale_nan(sum.value()) {
            FloatHistogram {
                sum: sum.value(),
                ..FloatHistogram::default()
            }
        } else {
            build(&layout, &fields, sum.value(), hint_of(i))
        };
        out.push(HistogramSample { t, h: Arc::new(h) });
    }
    Ok(())
}

/// One sample's histogram from the chunk's layout and the current fields.
fn build(layout: &Layout, fields: &Fields, sum: f64, hint: CounterResetHint) -> FloatHistogram {
    let side = |indexes: &[i32], s: usize| -> Vec<Bucket> {
        indexes
            .iter()
            .zip(fields.values(s))
            .map(|(&index, count)| Bucket { index, count })
            .collect()
    };
    let (count, zero_count) = fields.counts();
    let mut h = FloatHistogram {
        counter_reset_hint: hint,
        schema: layout.schema,
        zero_threshold: layout.zero_threshold,
        zero_count,
        count,
        sum,
        positive: side(&layout.positive, 0),
        negative: side(&layout.negative, 1),
        custom_values: layout.custom_values.clone(),
    };
    if h.schema > EXPONENTIAL_SCHEMA_MAX {
        h.reduce_resolution(EXPONENTIAL_SCHEMA_MAX);
    }
    h
}

/// Decodes every sample of a histogram chunk.
pub fn decode_histogram_chunk(
    data: &[u8],
    float: bool,
) -> Result<Vec<HistogramSample>, HistogramChunkError> {
    let mut out = Vec::with_capacity(histogram_sample_count(data).min(512));
    decode_histogram_into(data, float, i64::MIN, i64::MAX, &mut out)?;
    Ok(out)
}

#[cfg(test)]
#[path = "histogram_chunk_tests.rs"]
mod tests;
