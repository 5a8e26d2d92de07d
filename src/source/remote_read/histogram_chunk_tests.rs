use super::*;
use proptest::prelude::*;

#[test]
fn empty_and_headerless_chunks() {
    assert_eq!(decode_histogram_chunk(&[], false), Ok(vec![]));
    assert_eq!(decode_histogram_chunk(&[0, 0], true), Ok(vec![]));
    assert_eq!(
        decode_histogram_chunk(&[0, 1], false),
        Err(HistogramChunkError::NoHeader)
    );
    assert!(matches!(
        decode_histogram_chunk(&[0, 1, 0], false),
        Err(HistogramChunkError::Truncated {
            decoded: 0,
            expected: 1
        })
    ));
}

#[test]
fn a_layout_announcing_more_than_the_chunk_holds_is_refused_before_allocating() {
    // Zero threshold 0, schema 0, then 2^56-1 positive spans (11111110 + 56 ones).
    let mut data = vec![0, 1, 0, 0x00, 0b0_1111111, 0b0_1111111];
    data.extend([0xff; 7]);
    let err = decode_histogram_chunk(&data, false).unwrap_err();
    assert!(
        matches!(err, HistogramChunkError::TooMany { what: "spans", .. }),
        "{err:?}"
    );
}

#[test]
fn unknown_schemas_are_refused() {
    // Zero threshold byte 0, then schema 100 as a varbit int: 1110 + 9 bits.
    let data = [0, 1, 0, 0x00, 0b1110_0011, 0b0010_0000, 0, 0];
    assert_eq!(
        decode_histogram_chunk(&data, true),
        Err(HistogramChunkError::UnknownSchema(100))
    );
}

proptest! {
    /// Any bytes decode or fail cleanly, and a window keeps a prefix of the
    /// full decode's samples inside it.
    #[test]
    fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200), float: bool) {
        if let Ok(all) = decode_histogram_chunk(&data, float) {
            let mut part = Vec::new();
            prop_assert!(decode_histogram_into(&data, float, 0, 1000, &mut part).is_ok());
            let want: Vec<_> = all.iter().filter(|s| (0..=1000).contains(&s.t)).collect();
            prop_assert!(part.len() <= want.len());
        }
    }
}
