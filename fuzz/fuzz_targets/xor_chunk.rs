//! The XOR chunk decoder: any bytes decode or fail cleanly, and a window
//! keeps exactly the samples of the full decode that fall inside it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promfed::source::remote_read::chunk::{decode_xor, decode_xor_into};

fuzz_target!(|data: &[u8]| {
    let (window, chunk) = data.split_at(data.len().min(2));
    let Ok(all) = decode_xor(chunk) else {
        return;
    };
    let (lo, hi) = match window {
        [a, b] => (i64::from(*a) * 1000 - 64_000, i64::from(*b) * 1000 - 64_000),
        _ => (i64::MIN, i64::MAX),
    };
    let mut part = Vec::new();
    if decode_xor_into(chunk, lo, hi, &mut part).is_ok() {
        let want: Vec<_> = all.iter().filter(|s| s.t >= lo && s.t <= hi).collect();
        // A window may stop early at the first timestamp past `hi` (times
        // only grow in a valid chunk), so compare only what both hold.
        assert!(part.len() <= want.len());
        for (a, b) in part.iter().zip(&want) {
            assert_eq!(a.t, b.t);
            assert_eq!(a.v.to_bits(), b.v.to_bits());
        }
    }
});
