//! Decodes Prometheus TSDB float chunks (the Gorilla "XOR" encoding).
//!
//! Layout of a chunk: a 2-byte big-endian sample count, then a bit stream.
//! The first sample is its timestamp as a signed varint and its value as 64
//! raw bits; the second sample's timestamp is an unsigned varint delta from
//! the first. Every later timestamp is a delta of deltas in one of five
//! buckets (`0`, `10`+14 bits, `110`+17 bits, `1110`+20 bits, `1111`+64
//! bits). From the second sample on, a value is XORed with the previous
//! one: `0` means unchanged; `10` reuses the previous window of meaningful
//! bits; `11` brings a new window (5 bits of leading zeros, 6 bits of
//! length, 0 meaning 64) before the bits themselves.

use super::xor_value::{XorValue, XorValueError};
use crate::model::Sample;

/// Why a chunk could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The data ended before the samples its header announced.
    #[error("XOR chunk truncated: {decoded} of {expected} samples decoded")]
    Truncated { decoded: usize, expected: usize },
    /// A varint inside the chunk is longer than 64 bits.
    #[error("XOR chunk has a varint overflowing 64 bits")]
    VarintOverflow,
    /// A value window claims more than 64 bits.
    #[error("XOR chunk has a value window of {leading} leading zeros and {bits} bits")]
    BadWindow { leading: u32, bits: u32 },
}

/// Reads bits, most significant first, from a byte slice.
pub(super) struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits from the start of `data`.
    pos: usize,
}

/// The bit stream ran out.
pub(super) struct OutOfBits;

impl<'a> BitReader<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    pub(super) fn read_bit(&mut self) -> Result<bool, OutOfBits> {
        let byte = *self.data.get(self.pos / 8).ok_or(OutOfBits)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    /// Reads `n` bits (at most 64) as the low bits of a `u64`.
    pub(super) fn read_bits(&mut self, n: u32) -> Result<u64, OutOfBits> {
        debug_assert!(n <= 64);
        let mut remaining = n as usize;
        if self.data.len() * 8 - self.pos < remaining {
            return Err(OutOfBits);
        }
        let mut v: u64 = 0;
        while remaining > 0 {
            let byte = *self.data.get(self.pos / 8).ok_or(OutOfBits)?;
            let avail = 8 - self.pos % 8;
            let take = avail.min(remaining);
            let bits = (u64::from(byte) >> (avail - take)) & ((1u64 << take) - 1);
            v = (v << take) | bits;
            self.pos += take;
            remaining -= take;
        }
        Ok(v)
    }

    /// Bits not read yet.
    pub(super) fn bits_left(&self) -> usize {
        (self.data.len() * 8).saturating_sub(self.pos)
    }

    pub(super) fn read_byte(&mut self) -> Result<u8, OutOfBits> {
        // At most 8 bits, so the conversion cannot truncate.
        Ok(self.read_bits(8)? as u8)
    }

    /// An unsigned LEB128 varint, as Go's `binary.PutUvarint` writes it.
    fn read_uvarint(&mut self) -> Result<u64, ReadError> {
        let mut v: u64 = 0;
        for i in 0..10u32 {
            let b = self.read_byte()?;
            if i == 9 && b > 1 {
                return Err(ReadError::Overflow);
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(ReadError::Overflow)
    }

    /// A zig-zag signed varint, as Go's `binary.PutVarint` writes it.
    fn read_varint(&mut self) -> Result<i64, ReadError> {
        let u = self.read_uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
}

/// What went wrong inside the bit stream.
enum ReadError {
    OutOfBits,
    Overflow,
    BadWindow { leading: u32, bits: u32 },
}

impl From<OutOfBits> for ReadError {
    fn from(_: OutOfBits) -> Self {
        ReadError::OutOfBits
    }
}

/// Decoding state carried from one sample to the next.
struct XorState {
    t: i64,
    t_delta: i64,
    value: XorValue,
}

impl XorState {
    fn read_dod(r: &mut BitReader<'_>) -> Result<i64, ReadError> {
        // Count leading one bits, at most four: 0 → dod 0, 1..=3 → a
        // 14/17/20-bit signed field, 4 → a full 64-bit field.
        let mut ones = 0;
        while ones < 4 && r.read_bit()? {
            ones += 1;
        }
        let size = match ones {
            0 => return Ok(0),
            1 => 14,
            2 => 17,
            3 => 20,
            _ => return Ok(r.read_bits(64)? as i64),
        };
        let bits = r.read_bits(size)? as i64;
        // The field holds [-(2^(size-1) - 1), 2^(size-1)]; above the middle
        // the value is negative.
        Ok(if bits > 1i64 << (size - 1) {
            bits - (1i64 << size)
        } else {
            bits
        })
    }

    fn read_value(&mut self, r: &mut BitReader<'_>) -> Result<(), ReadError> {
        self.value.read(r).map_err(|e| match e {
            XorValueError::OutOfBits => ReadError::OutOfBits,
            XorValueError::BadWindow { leading, bits } => ReadError::BadWindow { leading, bits },
        })
    }
}

/// The number of samples a chunk announces in its header (0 when the chunk
/// is too short to have one).
pub fn xor_sample_count(data: &[u8]) -> usize {
    match data {
        [hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
        _ => 0,
    }
}

/// Decodes the samples of an XOR chunk with timestamps in `[min_t, max_t]`
/// and appends them to `out`, in time order. Values are kept bit for bit
/// (staleness markers stay staleness markers).
pub fn decode_xor_into(
    data: &[u8],
    min_t: i64,
    max_t: i64,
    out: &mut Vec<Sample>,
) -> Result<(), ChunkError> {
    let expected = xor_sample_count(data);
    if expected == 0 {
        return Ok(());
    }
    let mut r = BitReader::new(data.get(2..).unwrap_or_default());
    let mut st = XorState {
        t: 0,
        t_delta: 0,
        value: XorValue::default(),
    };
    let err = |e: ReadError, decoded: usize| match e {
        ReadError::OutOfBits => ChunkError::Truncated { decoded, expected },
        ReadError::Overflow => ChunkError::VarintOverflow,
        ReadError::BadWindow { leading, bits } => ChunkError::BadWindow { leading, bits },
    };
    for i in 0..expected {
        let step = match i {
            0 => r.read_varint().and_then(|t| {
                st.t = t;
                st.value = XorValue::first(&mut r)?;
                Ok(())
            }),
            1 => r.read_uvarint().and_then(|d| {
                // Written as an unsigned varint; reinterpreted as Go does.
                st.t_delta = d as i64;
                st.t = st.t.wrapping_add(st.t_delta);
                st.read_value(&mut r)
            }),
            _ => XorState::read_dod(&mut r).and_then(|dod| {
                st.t_delta = st.t_delta.wrapping_add(dod);
                st.t = st.t.wrapping_add(st.t_delta);
                st.read_value(&mut r)
            }),
        };
        step.map_err(|e| err(e, i))?;
        if st.t > max_t {
            // Timestamps only grow within a chunk: nothing later can match.
            break;
        }
        if st.t >= min_t {
            out.push(Sample {
                t: st.t,
                v: st.value.value(),
            });
        }
    }
    Ok(())
}

/// Decodes every sample of an XOR chunk.
pub fn decode_xor(data: &[u8]) -> Result<Vec<Sample>, ChunkError> {
    let mut out = Vec::with_capacity(xor_sample_count(data));
    decode_xor_into(data, i64::MIN, i64::MAX, &mut out)?;
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{is_stale_nan, stale_nan};
    use proptest::prelude::*;

    /// Writes bits most significant first (the encoder side, for tests).
    #[derive(Default)]
    struct BitWriter {
        bytes: Vec<u8>,
        /// Bits used in the last byte (8 when it is full).
        used: u32,
    }

    impl BitWriter {
        fn bit(&mut self, b: bool) {
            if self.used.is_multiple_of(8) {
                self.bytes.push(0);
                self.used = 0;
            }
            if b {
                let last = self.bytes.len() - 1;
                self.bytes[last] |= 0x80 >> self.used;
            }
            self.used += 1;
        }
        fn bits(&mut self, v: u64, n: u32) {
            for i in (0..n).rev() {
                self.bit((v >> i) & 1 == 1);
            }
        }
        fn uvarint(&mut self, mut v: u64) {
            while v >= 0x80 {
                self.bits((v & 0x7f) | 0x80, 8);
                v >>= 7;
            }
            self.bits(v, 8);
        }
    }

    /// Encodes samples as an XOR chunk (test-only encoder, from the format
    /// description in the module docs).
    pub(crate) fn encode_xor(samples: &[Sample]) -> Vec<u8> {
        let mut w = BitWriter::default();
        let (mut t, mut t_delta, mut v_bits) = (0i64, 0i64, 0u64);
        // No window yet: the first changed value always brings one.
        let (mut leading, mut trailing) = (u32::MAX, 0u32);
        for (i, s) in samples.iter().enumerate() {
            match i {
                0 => {
                    w.uvarint(((s.t << 1) ^ (s.t >> 63)) as u64);
                    w.bits(s.v.to_bits(), 64);
                }
                _ => {
                    let d = s.t - t;
                    if i == 1 {
                        w.uvarint(d as u64);
                    } else {
                        let dod = d - t_delta;
                        let fits =
                            |n: u32| -((1i64 << (n - 1)) - 1) <= dod && dod <= 1i64 << (n - 1);
                        if dod == 0 {
                            w.bit(false);
                        } else if fits(14) {
                            w.bits(0b10, 2);
                            w.bits(dod as u64, 14);
                        } else if fits(17) {
                            w.bits(0b110, 3);
                            w.bits(dod as u64, 17);
                        } else if fits(20) {
                            w.bits(0b1110, 4);
                            w.bits(dod as u64, 20);
                        } else {
                            w.bits(0b1111, 4);
                            w.bits(dod as u64, 64);
                        }
                    }
                    t_delta = d;
                    let delta = s.v.to_bits() ^ v_bits;
                    if delta == 0 {
                        w.bit(false);
                    } else {
                        w.bit(true);
                        let lead = delta.leading_zeros().min(31);
                        let trail = delta.trailing_zeros();
                        if leading != u32::MAX && lead >= leading && trail >= trailing {
                            w.bit(false);
                            w.bits(delta >> trailing, 64 - leading - trailing);
                        } else {
                            leading = lead;
                            trailing = trail;
                            w.bit(true);
                            w.bits(u64::from(lead), 5);
                            let sig = 64 - lead - trail;
                            w.bits(u64::from(sig % 64), 6);
                            w.bits(delta >> trail, sig);
                        }
                    }
                }
            }
            t = s.t;
            v_bits = s.v.to_bits();
        }
        let mut out = (samples.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&w.bytes);
        out
    }

    fn same(a: &[Sample], b: &[Sample]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.t == y.t && x.v.to_bits() == y.v.to_bits())
    }

    fn s(t: i64, v: f64) -> Sample {
        Sample { t, v }
    }

    /// A chunk as Prometheus 2.42 streamed it by remote read, from a block
    /// backfilled with 40 samples: t = 1790000000007 + 15000 i, v = i.
    const PROMETHEUS_CHUNK: &str = "00288eb083c5986800000000000000009875c457fec25fff6c06d616da0d\
        b02d2d427b7036d0b4b607d14d16b13dbc1b705a5b43e8a68b609e851a14e851a1691ffb8036f0b4b707d14d10";

    fn from_hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).expect("ascii"), 16).expect("hex"))
            .collect()
    }

    #[test]
    fn decodes_a_chunk_written_by_prometheus() {
        let data = from_hex(PROMETHEUS_CHUNK);
        assert_eq!(data.len(), 75);
        let want: Vec<Sample> = (0..40)
            .map(|i| s(1_790_000_000_007 + 15_000 * i, i as f64))
            .collect();
        let got = decode_xor(&data).expect("decodes");
        assert!(same(&got, &want), "{got:?}");
        // And the test encoder writes the very same bytes.
        assert_eq!(encode_xor(&want), data);
    }

    #[test]
    fn empty_and_headerless_chunks_hold_nothing() {
        assert_eq!(decode_xor(&[]), Ok(vec![]));
        assert_eq!(decode_xor(&[0]), Ok(vec![]));
        assert_eq!(decode_xor(&[0, 0]), Ok(vec![]));
    }

    #[test]
    fn every_timestamp_bucket_and_value_case_round_trips() {
        let samples = vec![
            s(-5_000, 1.0),
            s(10_000, 1.0),                      // uvarint delta, unchanged value
            s(25_000, 2.5),                      // dod 0, new window
            s(40_123, 3.5),                      // 14-bit dod
            s(40_124, -3.5),                     // negative 14-bit dod
            s(100_000, 1e300),                   // 17-bit dod
            s(400_000, f64::INFINITY),           // 20-bit dod
            s(3_000_000_000, f64::NEG_INFINITY), // 64-bit dod
            s(3_000_000_001, stale_nan()),
            s(3_000_000_002, f64::NAN),
            s(3_000_000_003, 0.0),
            s(3_000_000_004, -0.0),
            s(3_000_000_005, f64::MIN_POSITIVE),
            s(3_000_000_006, f64::MAX),
        ];
        let data = encode_xor(&samples);
        let got = decode_xor(&data).expect("decodes");
        assert!(same(&got, &samples), "{got:?}");
        assert!(is_stale_nan(got[8].v));
        assert!(!is_stale_nan(got[9].v));
    }

    #[test]
    fn bucket_edges_round_trip() {
        // dod exactly at each bucket's positive and negative edge.
        for n in [14u32, 17, 20] {
            for dod in [
                1i64 << (n - 1),
                -((1i64 << (n - 1)) - 1),
                (1i64 << (n - 1)) + 1,
                -(1i64 << (n - 1)),
            ] {
                let base = 10_000_000i64;
                let samples = vec![
                    s(0, 1.0),
                    s(base, 2.0),
                    s(2 * base + dod, 3.0),
                    s(3 * base + 2 * dod, 4.0),
                ];
                let got = decode_xor(&encode_xor(&samples)).expect("decodes");
                assert!(same(&got, &samples), "n={n} dod={dod}: {got:?}");
            }
        }
    }

    #[test]
    fn clipping_keeps_only_the_range() {
        let samples: Vec<Sample> = (0..50).map(|i| s(i * 1000 + 7, i as f64)).collect();
        let data = encode_xor(&samples);
        let mut out = Vec::new();
        decode_xor_into(&data, 10_007, 19_007, &mut out).expect("decodes");
        let ts: Vec<i64> = out.iter().map(|x| x.t).collect();
        assert_eq!(ts, (10..=19).map(|i| i * 1000 + 7).collect::<Vec<_>>());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let samples: Vec<Sample> = (0..30)
            .map(|i| s(i * 15_000 + (i * 37) % 11, (i as f64).sqrt()))
            .collect();
        let data = encode_xor(&samples);
        for cut in 2..data.len() {
            // Cutting into the last byte may leave enough bits; any shorter
            // prefix must fail cleanly.
            match decode_xor(&data[..cut]) {
                Err(ChunkError::Truncated { expected, .. }) => assert_eq!(expected, 30),
                Ok(got) => assert_eq!(cut, data.len() - 1, "prefix {cut} decoded {got:?}"),
                Err(e) => panic!("prefix {cut}: unexpected {e}"),
            }
        }
    }

    #[test]
    fn bad_window_is_rejected() {
        // Two samples; the second value opens a window of 31 leading zeros
        // and 63 bits, 94 > 64.
        let mut w = BitWriter::default();
        w.uvarint(0);
        w.bits(0, 64);
        w.uvarint(1);
        w.bits(0b11, 2);
        w.bits(31, 5);
        w.bits(63, 6);
        w.bits(0, 63);
        let mut data = vec![0, 2];
        data.extend_from_slice(&w.bytes);
        assert_eq!(
            decode_xor(&data),
            Err(ChunkError::BadWindow {
                leading: 31,
                bits: 63
            })
        );
    }

    #[test]
    fn overlong_varint_is_rejected() {
        let mut data = vec![0, 1];
        data.extend_from_slice(&[0xff; 11]);
        assert_eq!(decode_xor(&data), Err(ChunkError::VarintOverflow));
    }

    proptest! {
        #[test]
        fn round_trips_random_series(
            start in -1_000_000_000_000i64..4_000_000_000_000,
            steps in prop::collection::vec((0i64..2_000_000, any::<u64>(), 0u8..4), 1..200),
        ) {
            let mut t = start;
            let mut prev = 0.0f64;
            let samples: Vec<Sample> = steps
                .iter()
                .map(|&(gap, bits, kind)| {
                    t += gap + 1;
                    let v = match kind {
                        0 => prev,                       // unchanged
                        1 => prev + (bits % 1000) as f64, // counter-like
                        2 => f64::from_bits(bits),       // anything, NaNs included
                        _ => stale_nan(),
                    };
                    prev = v;
                    s(t, v)
                })
                .collect();
            let got = decode_xor(&encode_xor(&samples));
            prop_assert!(got.as_ref().is_ok_and(|g| same(g, &samples)), "{:?}", got);
        }

        #[test]
        fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_xor(&data);
        }
    }
}
