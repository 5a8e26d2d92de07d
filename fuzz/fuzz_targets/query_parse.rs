//! Arbitrary query text through promfed's one parse entry point
//! (`model::query_text::parse`, which turns a panic inside promql-parser
//! into an error), and the parsed expression printed back (what
//! `format_query` answers).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if s.len() > 4096 {
        return;
    }
    if let Ok(expr) = promfed::model::query_text::parse(s) {
        let _ = expr.prettify();
        let _ = expr.to_string();
    }
});
