//! Request parameters: URL/form decoding, times, durations, sample values
//! and label-name escapes. Nothing may panic; parsed times stay in range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promfed::api::params::{parse_duration, parse_time, MAX_TIME_MS, MIN_TIME_MS};
use promfed::api::Params;

fuzz_target!(|data: &[u8]| {
    let mut p = Params::default();
    p.add_urlencoded(data);
    for name in ["time", "start", "end"] {
        if let Ok(t) = p.time_or(name, 0) {
            assert!((MIN_TIME_MS..=MAX_TIME_MS).contains(&t), "{name} = {t}");
        }
        let _ = p.time(name);
    }
    for name in ["step", "timeout", "lookback_delta"] {
        let _ = p.duration(name);
    }
    let _ = promfed::api::read_options(&p);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_time(s);
        let _ = parse_duration(s);
        let _ = promfed::config::parse_prometheus_duration(s);
        let _ = promfed::source::prometheus::parse_value(s);
        let unescaped = promfed::source::prometheus::unescape_label_name(s);
        let _ = promfed::source::prometheus::escape_label_name(&unescaped);
    }
});
