//! Request parameters: URL and form body merged, times and durations parsed
//! as Prometheus parses them.

use super::error::ApiError;
use crate::model::time::parse_prometheus_duration;
pub use crate::model::time::{MAX_TIME_MS, MIN_TIME_MS};

/// All parameters of a request, URL query first, then the form body, in
/// the order sent (a request has a handful, so a scan beats hashing).
#[derive(Debug, Default, Clone)]
pub struct Params {
    values: Vec<(String, String)>,
}

impl Params {
    /// Parses an `application/x-www-form-urlencoded` string into the set,
    /// decoding as the WHATWG form parser does (`+` is a space, `%XX` a
    /// byte, a `%` not followed by two hex digits stays as it is, invalid
    /// UTF-8 becomes U+FFFD).
    pub fn add_urlencoded(&mut self, raw: &[u8]) {
        // As text (the usual case), the splits search with memchr.
        if let Ok(text) = std::str::from_utf8(raw) {
            for pair in text.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                self.push(k.as_bytes(), v.as_bytes());
            }
            return;
        }
        for pair in raw.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            self.push(k, v);
        }
    }

    fn push(&mut self, k: &[u8], v: &[u8]) {
        self.values.push((form_decode(k), decode_value(v)));
    }

    /// The first value of `name`, if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated parameter (`match[]`), in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.values
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first non-empty value of `name`.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|s| !s.is_empty())
    }

    /// A time parameter in ms; `default` when absent or empty.
    pub fn time_or(&self, name: &str, default: i64) -> Result<i64, ApiError> {
        match self.non_empty(name) {
            None => Ok(default),
            Some(s) => parse_time(s).map_err(|e| ApiError::invalid_param(name, e)),
        }
    }

    /// A required time parameter in ms.
    pub fn time(&self, name: &str) -> Result<i64, ApiError> {
        match self.non_empty(name) {
            None => Err(ApiError::invalid_param(
                name,
                "cannot parse \"\" to a valid timestamp",
            )),
            Some(s) => parse_time(s).map_err(|e| ApiError::invalid_param(name, e)),
        }
    }

    /// An optional duration parameter in ms.
    pub fn duration(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.non_empty(name)
            .map(|s| parse_duration(s).map_err(|e| ApiError::invalid_param(name, e)))
            .transpose()
    }
}

thread_local! {
    /// This thread's recently decoded long values (queries), by their
    /// encoded bytes.
    static DECODED: crate::recent::Memo<Vec<u8>, String> = Default::default();
}

/// A form value decoded, through this thread's memo when it is long.
fn decode_value(b: &[u8]) -> String {
    crate::recent::recall(&DECODED, b, b.len(), form_decode)
}

/// One form component decoded: `+` → space, then `%XX` → byte; a `%`
/// without two hex digits after it is kept; invalid UTF-8 is replaced.
///
/// Written by hand rather than with `form_urlencoded` (the tests' oracle)
/// because it is on the hot path: splitting and decoding the analysis
/// query's 378-byte POST body took 1.7-3.3 µs here against 2.7-4.7 µs
/// with `form_urlencoded::parse` (1.45-1.8x, three rounds of 300,000,
/// `rustc -O`, on the shared 2-core machine), next to about 14 µs of CPU
/// per cached request in all (docs/benchmarks.md).
fn form_decode(b: &[u8]) -> String {
    if !b.iter().any(|&c| c == b'%' || c == b'+') {
        return String::from_utf8_lossy(b).into_owned();
    }
    // Decoded text is never longer than the encoded: write in place.
    let mut out = vec![0u8; b.len()];
    let (mut i, mut o) = (0, 0);
    while i < b.len() {
        let (byte, used) = match b[i] {
            b'+' => (b' ', 1),
            b'%' => match (b.get(i + 1).and_then(hex), b.get(i + 2).and_then(hex)) {
                (Some(hi), Some(lo)) => (hi << 4 | lo, 3),
                _ => (b'%', 1),
            },
            c => (c, 1),
        };
        out[o] = byte;
        o += 1;
        i += used;
    }
    out.truncate(o);
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// The value of one hex digit.
fn hex(c: &u8) -> Option<u8> {
    let v = HEX[usize::from(*c)];
    (v != NOT_HEX).then_some(v)
}

const NOT_HEX: u8 = 0xff;

/// Hex digit values by byte; [`NOT_HEX`] for the rest.
static HEX: [u8; 256] = {
    let mut t = [NOT_HEX; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => NOT_HEX,
        };
        c += 1;
    }
    t
};

/// Parses a timestamp: float unix seconds (rounded to ms) or RFC3339(Nano).
pub fn parse_time(s: &str) -> Result<i64, ParamError> {
    let bad = || format!("cannot parse {s:?} to a valid timestamp");
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            return Err(bad().into());
        }
        let ms = (f * 1000.0).round();
        if ms < MIN_TIME_MS as f64 || ms > MAX_TIME_MS as f64 {
            return Err(bad().into());
        }
        // Seconds and a millisecond fraction, as Prometheus rounds them.
        let secs = f.trunc();
        let frac = ((f - secs) * 1000.0).round();
        return Ok(secs as i64 * 1000 + frac as i64);
    }
    // Prometheus's special strings for the extremes.
    match s {
        "-292273086-05-16T16:47:06Z" => return Ok(MIN_TIME_MS),
        "292277025-08-18T07:12:54.999999999Z" => return Ok(MAX_TIME_MS),
        _ => {}
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp_millis())
        .map_err(|_| bad().into())
}

/// Parses a duration: float seconds or a Prometheus duration (`1m30s`), ms.
pub fn parse_duration(s: &str) -> Result<i64, ParamError> {
    if let Ok(f) = s.parse::<f64>() {
        let ms = f * 1000.0;
        if !ms.is_finite() || ms.abs() >= 9.2e18 {
            return Err(
                format!("cannot parse {s:?} to a valid duration. It overflows int64").into(),
            );
        }
        return Ok(ms.round() as i64);
    }
    parse_prometheus_duration(s)
        .map_err(|_| ParamError(format!("cannot parse {s:?} to a valid duration")))
}

/// A parameter value that does not parse (the reason Prometheus gives).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamError(pub String);

impl From<String> for ParamError {
    fn from(message: String) -> Self {
        ParamError(message)
    }
}

impl From<&str> for ParamError {
    fn from(message: &str) -> Self {
        ParamError(message.to_string())
    }
}

/// What the connection layer took out of a request whose target was
/// longer than the HTTP stack parses (`server::long_uri`).
#[derive(Debug, Clone)]
pub enum LongTarget {
    /// The query string (URL-encoded), read as the URL's parameters.
    Query(axum::body::Bytes),
    /// A target of `len` bytes or more, over `max` (`limits.max_body_bytes`).
    TooLong { len: usize, max: usize },
}

impl LongTarget {
    /// The answer to a request whose target was too long to read.
    pub fn too_long(len: usize, max: usize) -> super::ApiError {
        super::ApiError::bad_data(format!(
            "error parsing form values: the request target is {len} bytes or more, over the limit of {max} bytes (limits.max_body_bytes)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_times_round_to_milliseconds() {
        assert_eq!(parse_time("1724000000.123"), Ok(1_724_000_000_123));
        assert_eq!(parse_time("1724000000.1234"), Ok(1_724_000_000_123));
        assert_eq!(parse_time("1724000000.1236"), Ok(1_724_000_000_124));
        assert_eq!(parse_time("4"), Ok(4000));
        assert_eq!(parse_time("-1.5"), Ok(-1500));
        assert!(parse_time("NaN").is_err());
        assert!(parse_time("1e300").is_err());
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z"), Ok(1500));
        assert_eq!(
            parse_time("2024-08-18T12:00:00+02:00"),
            Ok(1_723_975_200_000)
        );
        assert_eq!(
            parse_time("abc"),
            Err("cannot parse \"abc\" to a valid timestamp".into())
        );
    }

    #[test]
    fn durations_as_float_seconds_or_units() {
        assert_eq!(parse_duration("15"), Ok(15_000));
        assert_eq!(parse_duration("0.5"), Ok(500));
        assert_eq!(parse_duration("1m30s"), Ok(90_000));
        assert!(parse_duration("1e300").is_err());
        assert_eq!(
            parse_duration("x"),
            Err("cannot parse \"x\" to a valid duration".into())
        );
    }

    #[test]
    fn url_and_form_values_merge() {
        let mut p = Params::default();
        p.add_urlencoded(b"stats=all&match[]=a");
        p.add_urlencoded(b"query=up%7Bjob%3D%22x%22%7D&match[]=b");
        assert_eq!(p.get("query"), Some("up{job=\"x\"}"));
        assert_eq!(p.get("stats"), Some("all"));
        assert_eq!(p.all("match[]"), ["a", "b"]);
    }

    /// The WHATWG form parser (the `form_urlencoded` crate) is the oracle.
    fn reference(raw: &[u8]) -> Vec<(String, String)> {
        form_urlencoded::parse(raw)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn decoding_edge_cases_match_the_whatwg_parser() {
        for raw in [
            &b"a=1&&b=2&"[..],
            b"=v&k&k2=&%=%&%4=%4g&%zz=%%41",
            b"q=a+b%20c%2Bd&x=%E2%82%AC&bad=%FF%FE&mixed=%C3%28",
            b"match%5B%5D=up&match[]=x%7D",
            b"",
            b"&&&",
            b"k==v=w",
        ] {
            let mut p = Params::default();
            p.add_urlencoded(raw);
            assert_eq!(
                p.values,
                reference(raw),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn long_values_decode_the_same_through_the_memo() {
        // Long enough to be remembered; each asked twice (decoded, then
        // from the memo), and more values than the memo holds.
        for i in 0..(crate::recent::ENTRIES + 10) {
            let raw = format!(
                "query=sum%28rate%28x%7Ba%3D%22{i}%22%7D%5B5m%5D%29%29+%2F+{}&time={i}",
                "1".repeat(crate::recent::MIN_LEN)
            );
            for _ in 0..2 {
                let mut p = Params::default();
                p.add_urlencoded(raw.as_bytes());
                assert_eq!(p.values, reference(raw.as_bytes()));
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn decoding_matches_the_whatwg_parser(raw in proptest::collection::vec(
            proptest::sample::select(b"ab=&+%25fF0gz\xc3\xa9\xff ".to_vec()), 0..40)) {
            let mut p = Params::default();
            p.add_urlencoded(&raw);
            proptest::prop_assert_eq!(p.values, reference(&raw));
        }
    }
}
