use super::*;
use crate::protocol::TAG_LEN;

#[test]
fn reports_and_shares_round_trip() {
    let r = DrainReport {
        epoch: 891_234_567,
        base: Duration::from_micros(41_250),
        rate: 524_288.0,
    };
    let f = r.frame(9);
    assert_eq!((f.kind, f.sid), (Kind::Pad, 9));
    assert_eq!(DrainReport::decode(&f.payload), Some(r));
    assert_eq!(DrainsShared::decode(&f.payload), None);
    let s = DrainsShared {
        epoch: 891_234_567,
        least: Duration::from_micros(38_000),
        sessions: 2,
        rate: 1_048_576.0,
    };
    let f = s.frame(9);
    assert_eq!(DrainsShared::decode(&f.payload), Some(s));
    assert_eq!(DrainReport::decode(&f.payload), None);
}

/// Bad input: other lengths and first bytes are not ours; what does
/// not fit the fields saturates instead of wrapping.
#[test]
fn anything_else_is_no_drain() {
    for p in [&[][..], &[2][..], &[1][..], &[0; REPORT_LEN][..]] {
        assert_eq!(DrainReport::decode(&Bytes::copy_from_slice(p)), None);
        assert_eq!(DrainsShared::decode(&Bytes::copy_from_slice(p)), None);
    }
    let r = DrainReport {
        epoch: 1,
        base: Duration::from_secs(1 << 20),
        rate: f64::INFINITY,
    };
    let d = DrainReport::decode(&r.frame(1).payload).expect("a report");
    assert_eq!(d.base, Duration::from_micros(u32::MAX.into()));
    assert_eq!(d.rate, f64::from(u32::MAX));
    let nan = DrainReport {
        rate: f64::NAN,
        ..r
    };
    assert_eq!(
        DrainReport::decode(&nan.frame(1).payload).map(|d| d.rate),
        Some(0.0)
    );
}

#[test]
fn sealed_lengths_tell_them_apart() {
    let sealed = |f: Frame| {
        let mut f = f;
        let mut p = f.payload.to_vec();
        p.extend_from_slice(&[0; TAG_LEN]);
        f.payload = p.into();
        f
    };
    let r = DrainReport {
        epoch: 1,
        base: Duration::ZERO,
        rate: 0.0,
    };
    let s = DrainsShared {
        epoch: 1,
        least: Duration::ZERO,
        sessions: 1,
        rate: 0.0,
    };
    assert!(may_report_drain(&sealed(r.frame(1))));
    assert!(!may_share_drains(&sealed(r.frame(1))));
    assert!(may_share_drains(&sealed(s.frame(1))));
    assert!(!may_report_drain(&sealed(s.frame(1))));
    let ask = sealed(Frame::control(
        Kind::Pad,
        1,
        Bytes::from_static(super::super::PAD_ASK),
    ));
    assert!(!may_report_drain(&ask) && !may_share_drains(&ask));
}
