//! Splits a STREAMED_XOR_CHUNKS response body into frames.
//!
//! Each frame is an unsigned varint length, a 4-byte big-endian CRC32
//! (Castagnoli) of the data, then the data: one `ChunkedReadResponse`.
//! Bytes are pushed in as they arrive from the network; complete frames
//! come out, their checksums verified.

use bytes::{Buf, Bytes, BytesMut};

/// Why the frame stream is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A frame length does not fit in 64 bits.
    #[error("frame length varint overflows 64 bits")]
    VarintOverflow,
    /// A frame is larger than the configured limit.
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: u64, limit: usize },
    /// The data of a frame does not match its checksum.
    #[error("frame checksum mismatch: header says {expected:#010x}, data has {actual:#010x}")]
    Checksum { expected: u32, actual: u32 },
    /// The body ended inside a frame.
    #[error("response ended inside a frame ({left} bytes left over)")]
    Truncated { left: usize },
}

/// Accumulates body bytes and yields whole frames.
#[derive(Debug)]
pub struct FrameReader {
    buf: BytesMut,
    max_frame: usize,
}

/// Result of reading a varint from the front of a buffer.
enum Varint {
    /// The value and how many bytes it took.
    Done(u64, usize),
    /// More bytes are needed.
    Incomplete,
}

fn read_uvarint(buf: &[u8]) -> Result<Varint, FrameError> {
    let mut v: u64 = 0;
    for (i, &b) in buf.iter().take(10).enumerate() {
        if i == 9 && b > 1 {
            return Err(FrameError::VarintOverflow);
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Varint::Done(v, i + 1));
        }
    }
    if buf.len() >= 10 {
        Err(FrameError::VarintOverflow)
    } else {
        Ok(Varint::Incomplete)
    }
}

impl FrameReader {
    /// A reader that rejects frames whose data exceeds `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        FrameReader {
            buf: BytesMut::new(),
            max_frame,
        }
    }

    /// Appends bytes received from the body.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame's data, or `None` until more bytes arrive.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        let (len, header) = match read_uvarint(&self.buf)? {
            Varint::Done(len, n) => (len, n),
            Varint::Incomplete => return Ok(None),
        };
        if len > self.max_frame as u64 {
            return Err(FrameError::TooLarge {
                len,
                limit: self.max_frame,
            });
        }
        // `len` is at most `max_frame`, a usize.
        let len = len as usize;
        let total = header + 4 + len;
        if self.buf.len() < total {
            // Reserve once for the rest of the frame rather than growing in
            // steps as network chunks trickle in.
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(header);
        let expected = self.buf.get_u32();
        let data = self.buf.split_to(len).freeze();
        let actual = crc32c::crc32c(&data);
        if actual != expected {
            return Err(FrameError::Checksum { expected, actual });
        }
        Ok(Some(data))
    }

    /// Checks that the body ended between frames.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated {
                left: self.buf.len(),
            })
        }
    }
}

/// Encodes one frame (used by tests and by anything that serves remote read).
pub fn encode_frame(data: &[u8], out: &mut Vec<u8>) {
    let mut len = data.len() as u64;
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(&crc32c::crc32c(data).to_be_bytes());
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_of(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode_frame(p, &mut out);
        }
        out
    }

    fn drain(r: &mut FrameReader) -> Result<Vec<Bytes>, FrameError> {
        let mut got = Vec::new();
        while let Some(f) = r.next_frame()? {
            got.push(f);
        }
        Ok(got)
    }

    #[test]
    fn frames_split_anywhere_come_out_whole() {
        let big = vec![7u8; 300]; // a two-byte length varint
        let payloads: [&[u8]; 3] = [b"hello", &[], &big];
        let wire = frames_of(&payloads);
        for piece in [1, 2, 3, 5, 64, wire.len()] {
            let mut r = FrameReader::new(1 << 20);
            let mut got = Vec::new();
            for part in wire.chunks(piece) {
                r.push(part);
                got.extend(drain(&mut r).expect("valid frames"));
            }
            r.finish().expect("ends between frames");
            let got: Vec<&[u8]> = got.iter().map(|b| b.as_ref()).collect();
            assert_eq!(got, payloads, "piece size {piece}");
        }
    }

    #[test]
    fn checksum_mismatch_is_an_error() {
        let mut wire = frames_of(&[b"payload"]);
        let last = wire.len() - 1;
        wire[last] ^= 1;
        let mut r = FrameReader::new(1 << 20);
        r.push(&wire);
        assert!(matches!(r.next_frame(), Err(FrameError::Checksum { .. })));
    }

    #[test]
    fn crc_is_castagnoli() {
        // The standard check value of CRC-32C.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn oversized_frame_is_rejected_before_its_data_arrives() {
        let mut r = FrameReader::new(100);
        r.push(&[0x80, 0x80, 0x80, 0x80, 0x01]); // 2^28 bytes announced
        assert_eq!(
            r.next_frame(),
            Err(FrameError::TooLarge {
                len: 1 << 28,
                limit: 100
            })
        );
    }

    #[test]
    fn truncated_stream_is_reported() {
        let wire = frames_of(&[b"abcdef"]);
        for cut in 1..wire.len() {
            let mut r = FrameReader::new(1 << 20);
            r.push(&wire[..cut]);
            assert_eq!(r.next_frame(), Ok(None), "cut {cut}");
            assert_eq!(r.finish(), Err(FrameError::Truncated { left: cut }));
        }
    }

    #[test]
    fn overlong_length_varint_is_rejected() {
        let mut r = FrameReader::new(usize::MAX);
        r.push(&[0xff; 10]);
        assert_eq!(r.next_frame(), Err(FrameError::VarintOverflow));
        let mut r = FrameReader::new(usize::MAX);
        r.push(&[0xff; 9]);
        assert_eq!(r.next_frame(), Ok(None));
    }
}
