//! The native histogram chunk decoder (HISTOGRAM and FLOAT_HISTOGRAM
//! encodings): any bytes decode or fail cleanly, and a window keeps
//! exactly the samples of the full decode that fall inside it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promfed::source::remote_read::histogram_chunk::{
    decode_histogram_chunk, decode_histogram_into,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let float = mode & 1 == 1;
    let (window, chunk) = rest.split_at(rest.len().min(2));
    let Ok(all) = decode_histogram_chunk(chunk, float) else {
        return;
    };
    let (lo, hi) = match window {
        [a, b] => (i64::from(*a) * 1000 - 64_000, i64::from(*b) * 1000 - 64_000),
        _ => (i64::MIN, i64::MAX),
    };
    let mut part = Vec::new();
    if decode_histogram_into(chunk, float, lo, hi, &mut part).is_ok() {
        let want: Vec<_> = all.iter().filter(|s| s.t >= lo && s.t <= hi).collect();
        // A window may stop early at the first timestamp past `hi` (times
        // only grow in a valid chunk), so compare only what both hold.
        assert!(part.len() <= want.len());
        for (a, b) in part.iter().zip(&want) {
            assert_eq!(a.t, b.t);
            assert_eq!(a.h.sum.to_bits(), b.h.sum.to_bits());
            assert_eq!(a.h.positive.len(), b.h.positive.len());
        }
    }
});
