//! Reads the matrix answer to a range selector from Prometheus's HTTP API
//! as it arrives: each series of `data.result` is cut out of the stream
//! and decoded alone (samples straight into [`Sample`]s, no string per
//! sample), its samples charged to the query's budget while its bytes
//! arrive; the envelope around the series (status, error, warnings) is
//! kept apart and parsed once the answer is whole.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::parse_value;
use crate::limits::meter::LimitError;
use crate::model::{Interner, Labels, Sample, Series};
use crate::source::arrival::Arrival;
use crate::source::remote_read::held::HeldBytes;
use crate::source::SourceError;

/// Why an answer could not be read, before it is named after the backend.
#[derive(Debug, thiserror::Error)]
pub(super) enum MatrixError {
    /// The answer is not the JSON Prometheus writes.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// Over the query's budget (the error to pass on as it is).
    #[error("{0}")]
    Budget(SourceError),
    /// The query's byte budget has no room for the answer's buffers.
    #[error("{0}")]
    Held(LimitError),
}

/// The depth of the `data.result` array (root object 1, `data` 2).
const RESULT_DEPTH: usize = 3;
/// Depth of one sample's `[t, "v"]` pair (a series 4, its `values` 5).
const SAMPLE_DEPTH: usize = 6;
/// Longest key remembered (`result`, `data`): longer ones match nothing.
const KEY_BYTES: usize = 8;

/// Cuts the series out of an answer as its bytes arrive.
pub(super) struct MatrixReader {
    start_ms: i64,
    end_ms: i64,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// The container open at depths 1 to 3 (`{` or `[`).
    kinds: [u8; RESULT_DEPTH + 1],
    /// Whether the object at depth 1 or 2 expects a key next.
    want_key: [bool; RESULT_DEPTH],
    /// The key being read at depth 1 or 2, if any.
    key: Option<(usize, [u8; KEY_BYTES], usize)>,
    /// The last key at depth 1 was `data`; at depth 2, `result`.
    is_data: bool,
    is_result: bool,
    /// Inside `data.result`.
    in_result: bool,
    /// A byte other than a series, a comma or blank in `data.result`.
    stray: Option<u8>,
    /// The buffers below, charged to the query's bytes as they grow.
    held: HeldBytes,
    /// The byte budget refused a buffer's growth.
    over: Option<LimitError>,
    /// The bytes of the series being read.
    element: Vec<u8>,
    /// Everything outside the series.
    envelope: Vec<u8>,
    series: Vec<Series>,
    histograms: usize,
    arrival: Arrival,
    /// This answer's label strings, each distinct one allocated once.
    pool: Interner,
}

/// What a whole answer held: its envelope (`data.result` left empty) and
/// the series cut from it.
pub(super) struct MatrixAnswer {
    pub envelope: Vec<u8>,
    pub series: Vec<Series>,
    pub histograms: usize,
}

impl MatrixReader {
    /// Keeps the samples in `[start_ms, end_ms]`.
    pub(super) fn new(start_ms: i64, end_ms: i64) -> Self {
        MatrixReader {
            start_ms,
            end_ms,
            depth: 0,
            in_string: false,
            escaped: false,
            kinds: [0; RESULT_DEPTH + 1],
            want_key: [false; RESULT_DEPTH],
            key: None,
            is_data: false,
            is_result: false,
            in_result: false,
            stray: None,
            held: HeldBytes::new(),
            over: None,
            element: Vec::new(),
            envelope: Vec::new(),
            series: Vec::new(),
            histograms: 0,
            arrival: Arrival::new(),
            pool: Interner::new(),
        }
    }

    /// Reads the next piece of the answer.
    pub(super) fn feed(&mut self, bytes: &[u8]) -> Result<(), MatrixError> {
        for &b in bytes {
            if self.in_string {
                self.string_byte(b);
                continue;
            }
            match b {
                b'"' => {
                    self.in_string = true;
                    if self.depth < RESULT_DEPTH && self.want_key[self.depth] {
                        self.key = Some((self.depth, [0; KEY_BYTES], 0));
                    }
                    self.route(b, self.depth);
                }
                b'{' | b'[' => {
                    self.depth += 1;
                    if self.depth <= RESULT_DEPTH {
                        self.kinds[self.depth] = b;
                        if self.depth < RESULT_DEPTH {
                            self.want_key[self.depth] = b == b'{';
                        }
                        if self.depth == 2 {
                            self.is_result = false;
                        }
                        if self.depth == RESULT_DEPTH {
                            self.in_result = b == b'['
                                && self.kinds[1] == b'{'
                                && self.kinds[2] == b'{'
                                && self.is_data
                                && self.is_result;
                        }
                    }
                    if self.in_result && self.depth == SAMPLE_DEPTH {
                        self.arrival.one().map_err(MatrixError::Budget)?;
                    }
                    if self.depth == RESULT_DEPTH {
                        // The result list itself stays in the envelope, empty.
                        keep(&mut self.envelope, b, &mut self.held, &mut self.over);
                    } else {
                        self.route(b, self.depth);
                    }
                }
                b'}' | b']' => {
                    let depth = self.depth;
                    self.depth = depth.saturating_sub(1);
                    if self.in_result && depth == RESULT_DEPTH {
                        self.in_result = false;
                        keep(&mut self.envelope, b, &mut self.held, &mut self.over);
                    } else {
                        self.route(b, depth);
                        if self.in_result && depth == RESULT_DEPTH + 1 {
                            self.decode_element()?;
                        }
                    }
                }
                b':' => {
                    if self.depth < RESULT_DEPTH {
                        self.want_key[self.depth] = false;
                    }
                    self.route(b, self.depth);
                }
                b',' => {
                    if self.depth < RESULT_DEPTH && self.kinds[self.depth] == b'{' {
                        self.want_key[self.depth] = true;
                    }
                    self.route(b, self.depth);
                }
                _ => self.route(b, self.depth),
            }
        }
        if let Some(e) = self.over.take() {
            return Err(MatrixError::Held(e));
        }
        match self.stray {
            Some(b) => Err(MatrixError::Json(de::Error::custom(format!(
                "data.result holds {:?}, not a series",
                char::from(b)
            )))),
            None => Ok(()),
        }
    }

    fn string_byte(&mut self, b: u8) {
        self.route(b, self.depth);
        if self.escaped {
            self.escaped = false;
        } else if b == b'\\' {
            self.escaped = true;
        } else if b == b'"' {
            self.in_string = false;
            if let Some((depth, key, len)) = self.key.take() {
                let key = &key[..len.min(KEY_BYTES)];
                match depth {
                    1 => self.is_data = len <= KEY_BYTES && key == b"data",
                    2 => self.is_result = len <= KEY_BYTES && key == b"result",
                    _ => {}
                }
            }
            return;
        }
        if let Some((_, key, len)) = &mut self.key {
            if *len < KEY_BYTES {
                key[*len] = b;
            }
            *len += 1;
        }
    }

    /// Keeps byte `b`, found inside a container at `depth`: in the series
    /// being read, nowhere (the commas between series), or the envelope.
    fn route(&mut self, b: u8, depth: usize) {
        if !self.in_result {
            keep(&mut self.envelope, b, &mut self.held, &mut self.over);
        } else if depth > RESULT_DEPTH {
            keep(&mut self.element, b, &mut self.held, &mut self.over);
        } else if !(b == b',' || b.is_ascii_whitespace()) {
            self.stray.get_or_insert(b);
        }
    }

    /// Decodes the series just read, keeping its samples in range.
    fn decode_element(&mut self) -> Result<(), MatrixError> {
        self.arrival.flush().map_err(MatrixError::Budget)?;
        let s: ApiSeries = serde_json::from_slice(&self.element)?;
        self.element.clear();
        self.histograms += s.histograms.0;
        let (start, end) = (self.start_ms, self.end_ms);
        let mut samples = s.values.0;
        samples.retain(|s| (start..=end).contains(&s.t));
        if !samples.is_empty() {
            samples.shrink_to_fit();
            self.series.push(Series {
                labels: Labels::from_pairs(
                    s.metric
                        .0
                        .iter()
                        .map(|(n, v)| (self.pool.intern(n), self.pool.intern(v))),
                ),
                samples,
                histograms: Vec::new(),
            });
        }
        Ok(())
    }

    /// The answer read whole: its envelope and the series cut from it.
    pub(super) fn finish(mut self) -> Result<MatrixAnswer, MatrixError> {
        self.arrival.flush().map_err(MatrixError::Budget)?;
        Ok(MatrixAnswer {
            envelope: self.envelope,
            series: self.series,
            histograms: self.histograms,
        })
    }
}

/// Appends `b` to `buf`, charging its growth to the query's bytes first;
/// once a growth is refused (`over`), bytes are dropped until the caller
/// reports it.
fn keep(buf: &mut Vec<u8>, b: u8, held: &mut HeldBytes, over: &mut Option<LimitError>) {
    if buf.len() == buf.capacity() {
        if over.is_some() {
            return;
        }
        let more = buf.capacity().max(4096);
        if let Err(e) = held.take(more) {
            *over = Some(e);
            return;
        }
        buf.reserve_exact(more);
    }
    buf.push(b);
}

/// One series of a matrix, as the API writes it.
#[derive(Deserialize)]
struct ApiSeries {
    #[serde(default)]
    metric: Pairs,
    #[serde(default)]
    values: Values,
    /// Native histogram samples: counted, not read (the JSON lacks the
    /// schema, zero threshold and reset hint an exact histogram needs).
    #[serde(default)]
    histograms: Counted,
}

/// A label set as the API writes it (an object of names to values).
#[derive(Default)]
struct Pairs(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Pairs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a label set")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Pairs, A::Error> {
                let mut v = Vec::with_capacity(m.size_hint().unwrap_or(8));
                while let Some(pair) = m.next_entry::<String, String>()? {
                    v.push(pair);
                }
                Ok(Pairs(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// A series' `[t, "v"]` pairs, read as samples (t in ms).
#[derive(Default)]
struct Values(Vec<Sample>);

impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Values;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of [time, \"value\"] pairs")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Values, A::Error> {
                let mut v = Vec::with_capacity(s.size_hint().unwrap_or(0));
                while let Some((ts, SampleValue(value))) = s.next_element::<(f64, SampleValue)>()? {
                    v.push(Sample {
                        t: (ts * 1000.0).round() as i64,
                        v: value,
                    });
                }
                Ok(Values(v))
            }
        }
        d.deserialize_seq(V)
    }
}

/// A sample value as Prometheus writes it, parsed without keeping the text.
struct SampleValue(f64);

impl<'de> Deserialize<'de> for SampleValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SampleValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a sample value string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<SampleValue, E> {
                parse_value(s)
                    .map(SampleValue)
                    .ok_or_else(|| E::custom(format!("bad sample value {s:?}")))
            }
        }
        d.deserialize_str(V)
    }
}

/// How many items a list holds (read, not kept).
#[derive(Default)]
struct Counted(usize);

impl<'de> Deserialize<'de> for Counted {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Counted;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Counted, A::Error> {
                let mut n = 0;
                while s.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Counted(n))
            }
        }
        d.deserialize_seq(V)
    }
}

#[cfg(test)]
mod tests;
