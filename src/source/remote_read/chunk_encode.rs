//! Encodes float samples as Prometheus TSDB XOR chunks (the layout the
//! decoder in [`super::chunk`] reads), as Prometheus's own appender writes
//! them: what promfed's StoreAPI server streams to Thanos Query or to
//! another promfed.

use crate::model::Sample;

/// Most samples Prometheus puts in one chunk; StoreAPI readers expect no more.
pub const MAX_SAMPLES_PER_CHUNK: usize = 120;

/// One encoded chunk and the time range it covers (inclusive, ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedChunk {
    pub min_t: i64,
    pub max_t: i64,
    pub data: Vec<u8>,
}

/// Splits `samples` (in time order) into XOR chunks of at most `per_chunk`
/// samples each (clamped to `1..=MAX_SAMPLES_PER_CHUNK`).
pub fn encode_chunks(samples: &[Sample], per_chunk: usize) -> Vec<EncodedChunk> {
    let per_chunk = per_chunk.clamp(1, MAX_SAMPLES_PER_CHUNK);
    samples
        .chunks(per_chunk)
        .filter_map(|part| {
            let (first, last) = (part.first()?, part.last()?);
            let mut enc = XorEncoder::default();
            for s in part {
                enc.push(s.t, s.v);
            }
            Some(EncodedChunk {
                min_t: first.t,
                max_t: last.t,
                data: enc.finish(),
            })
        })
        .collect()
}

/// Bits written most significant first, into whole bytes.
#[derive(Debug, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Free bits left in the last byte (0: it is full, or there is none).
    free: u32,
}

impl BitWriter {
    /// Writes the low `n` bits of `v` (n at most 64).
    fn bits(&mut self, v: u64, mut n: u32) {
        while n > 0 {
            if self.free == 0 {
                self.bytes.push(0);
                self.free = 8;
            }
            let take = n.min(self.free);
            // The next `take` bits of v, from its most significant end.
            let chunk = ((v >> (n - take)) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= chunk << (self.free - take);
            }
            self.free -= take;
            n -= take;
        }
    }

    fn bit(&mut self, b: bool) {
        self.bits(u64::from(b), 1);
    }

    fn uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.bits((v & 0x7f) | 0x80, 8);
            v >>= 7;
        }
        self.bits(v, 8);
    }

    fn varint(&mut self, v: i64) {
        self.uvarint(((v << 1) ^ (v >> 63)) as u64);
    }
}

/// Appends samples to one XOR chunk.
#[derive(Debug, Default)]
pub struct XorEncoder {
    w: BitWriter,
    count: u16,
    t: i64,
    t_delta: i64,
    v_bits: u64,
    /// The value window in use: leading and trailing zero bits (`None`
    /// before the first changed value).
    window: Option<(u32, u32)>,
}

/// Whether `dod` fits the delta-of-delta bucket of `n` bits.
fn fits(dod: i64, n: u32) -> bool {
    -((1i64 << (n - 1)) - 1) <= dod && dod <= 1i64 << (n - 1)
}

impl XorEncoder {
    /// Samples appended so far.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// Whether nothing was appended yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends one sample; timestamps must not decrease. A chunk holds at
    /// most `u16::MAX` samples: further ones are ignored (callers cut at
    /// [`MAX_SAMPLES_PER_CHUNK`]).
    pub fn push(&mut self, t: i64, v: f64) {
        if self.count == u16::MAX {
            return;
        }
        match self.count {
            0 => {
                self.w.varint(t);
                self.w.bits(v.to_bits(), 64);
            }
            1 => {
                let d = t.wrapping_sub(self.t);
                self.w.uvarint(d as u64);
                self.t_delta = d;
                self.value(v);
            }
            _ => {
                let d = t.wrapping_sub(self.t);
                let dod = d.wrapping_sub(self.t_delta);
                if dod == 0 {
                    self.w.bit(false);
                } else if fits(dod, 14) {
                    self.w.bits(0b10, 2);
                    self.w.bits(dod as u64, 14);
                } else if fits(dod, 17) {
                    self.w.bits(0b110, 3);
                    self.w.bits(dod as u64, 17);
                } else if fits(dod, 20) {
                    self.w.bits(0b1110, 4);
                    self.w.bits(dod as u64, 20);
                } else {
                    self.w.bits(0b1111, 4);
                    self.w.bits(dod as u64, 64);
                }
                self.t_delta = d;
                self.value(v);
            }
        }
        self.t = t;
        self.v_bits = v.to_bits();
        self.count += 1;
    }

    /// Writes `v` XORed with the previous value.
    fn value(&mut self, v: f64) {
        let delta = v.to_bits() ^ self.v_bits;
        if delta == 0 {
            self.w.bit(false);
            return;
        }
        self.w.bit(true);
        // The window's leading count is written in 5 bits.
        let lead = delta.leading_zeros().min(31);
        let trail = delta.trailing_zeros();
        match self.window {
            Some((l, t)) if lead >= l && trail >= t => {
                self.w.bit(false);
                self.w.bits(delta >> t, 64 - l - t);
            }
            _ => {
                self.window = Some((lead, trail));
                self.w.bit(true);
                self.w.bits(u64::from(lead), 5);
                let sig = 64 - lead - trail;
                // 64 significant bits are written as 0.
                self.w.bits(u64::from(sig % 64), 6);
                self.w.bits(delta >> trail, sig);
            }
        }
    }

    /// The chunk: the 2-byte big-endian sample count, then the bit stream.
    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.w.bytes.len());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&self.w.bytes);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::chunk::tests::encode_xor as reference_encode;
    use super::super::chunk::{decode_xor, xor_sample_count};
    use super::*;
    use proptest::prelude::*;

    fn encode(samples: &[Sample]) -> Vec<u8> {
        let mut e = XorEncoder::default();
        for s in samples {
            e.push(s.t, s.v);
        }
        e.finish()
    }

    fn same(a: &[Sample], b: &[Sample]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.t == y.t && x.v.to_bits() == y.v.to_bits())
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::from_bits(0x7ff0_0000_0000_0002)), // Prometheus's stale marker
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(0.0),
            Just(-0.0),
            (0u32..1000).prop_map(f64::from),
        ]
    }

    fn series() -> impl Strategy<Value = Vec<Sample>> {
        (
            -4_000_000_000_000i64..4_000_000_000_000,
            prop::collection::vec((0i64..5_000_000_000, value()), 0..300),
        )
            .prop_map(|(start, steps)| {
                let mut t = start;
                steps
                    .into_iter()
                    .map(|(gap, v)| {
                        // Mostly regular scrapes with jitter, sometimes a long gap.
                        t += if gap % 7 == 0 { gap } else { 15_000 + gap % 40 };
                        Sample { t, v }
                    })
                    .collect()
            })
    }

    #[test]
    fn an_empty_chunk_holds_nothing() {
        assert_eq!(XorEncoder::default().finish(), vec![0, 0]);
        assert!(encode_chunks(&[], 120).is_empty());
    }

    proptest! {
        #[test]
        fn round_trips_through_the_decoder(samples in series()) {
            let data = encode(&samples);
            prop_assert_eq!(xor_sample_count(&data), samples.len());
            let got = decode_xor(&data).expect("decodes");
            prop_assert!(same(&got, &samples));
        }

        /// The same bytes as the reference encoder, which writes the bytes
        /// of a chunk Prometheus itself wrote (see `chunk.rs`).
        #[test]
        fn writes_the_reference_bytes(samples in series()) {
            prop_assert_eq!(encode(&samples), reference_encode(&samples));
        }

        #[test]
        fn chunks_are_cut_at_120_samples_and_cover_their_times(samples in series()) {
            let chunks = encode_chunks(&samples, MAX_SAMPLES_PER_CHUNK);
            let mut all = Vec::new();
            for c in &chunks {
                let got = decode_xor(&c.data).expect("decodes");
                prop_assert!(!got.is_empty() && got.len() <= MAX_SAMPLES_PER_CHUNK);
                prop_assert_eq!(got.first().map(|s| s.t), Some(c.min_t));
                prop_assert_eq!(got.last().map(|s| s.t), Some(c.max_t));
                all.extend(got);
            }
            prop_assert!(same(&all, &samples));
        }
    }
}
