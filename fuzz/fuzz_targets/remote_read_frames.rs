//! Streamed remote-read bodies: frames split at arbitrary points, each
//! frame decoded as a `ChunkedReadResponse` and its chunks as XOR.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promfed::source::remote_read::chunk::decode_xor;
use promfed::source::remote_read::frame::{encode_frame, FrameReader};
use promfed::source::remote_read::prompb::{ChunkedReadResponse, ReadResponse};
use prost::Message;

fn drain(r: &mut FrameReader) -> bool {
    loop {
        match r.next_frame() {
            Ok(Some(frame)) => {
                if let Ok(msg) = ChunkedReadResponse::decode(frame) {
                    for s in msg.chunked_series {
                        for c in s.chunks {
                            let _ = decode_xor(&c.data);
                        }
                    }
                }
            }
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The raw bytes as a body, fed in pieces whose sizes the input picks.
    let mut r = FrameReader::new(1 << 20);
    let mut rest = data;
    while !rest.is_empty() {
        let n = usize::from(rest[0] % 64) + 1;
        let (piece, tail) = rest.split_at(n.min(rest.len()));
        r.push(piece);
        rest = tail;
        if !drain(&mut r) {
            break;
        }
    }
    let _ = r.finish();
    // The bytes as one valid frame, so the message decoders see them.
    let mut framed = Vec::new();
    encode_frame(data, &mut framed);
    let mut r = FrameReader::new(1 << 20);
    r.push(&framed);
    assert!(drain(&mut r), "a well-formed frame must be accepted");
    assert!(r.finish().is_ok());
    // A SAMPLES answer: the bytes as snappy (its announced length bounded
    // first, as the source does), and as a message.
    if snap::raw::decompress_len(data).is_ok_and(|n| n <= 1 << 20) {
        if let Ok(raw) = snap::raw::Decoder::new().decompress_vec(data) {
            let _ = ReadResponse::decode(raw.as_slice());
        }
    }
    let _ = ReadResponse::decode(data);
});
