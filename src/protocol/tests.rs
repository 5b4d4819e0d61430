use super::*;
use bytes::Bytes;
use proptest::prelude::*;

/// Cases per decoder property: each is microseconds, so the suite can
/// afford a real fuzzing run (about a second for all three in release).
const FUZZ_CASES: u32 = 20_000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(FUZZ_CASES))]

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Frame::decode(Bytes::from(bytes));
    }

    #[test]
    fn control_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300),
                                    topic in "[a-z/+#.]{0,40}") {
        let _ = refuse_reason(&bytes);
        let _ = Presence::decode(&bytes);
        let _ = Topics::new("p", "n").parse_up(&topic);
        let _ = valid_id(&topic);
        let _ = valid_prefix(&topic);
    }

    #[test]
    fn decode_header_fuzz(header in proptest::collection::vec(any::<u8>(), HEADER_LEN..HEADER_LEN + 1),
                          len in 0usize..2000) {
        let mut v = header;
        v[0] = VERSION;
        v.resize(HEADER_LEN + len, 0);
        if let Ok(f) = Frame::decode(Bytes::from(v)) {
            prop_assert_eq!(Frame::decode(f.encode()), Ok(f));
        }
    }
}
