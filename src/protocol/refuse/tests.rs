use super::*;
use crate::protocol::{Frame, Kind};

#[test]
fn refuse_payload_roundtrip_and_truncation() {
    let p = refuse_payload(RefuseCode::Target, "sshd at x refused");
    assert_eq!(refuse_reason(&p), "sshd at x refused");
    let long = "é".repeat(1000);
    let p = refuse_payload(RefuseCode::Target, &long);
    assert!(p.len() <= MAX_CONTROL_PAYLOAD);
    assert!(Frame::decode(Frame::control(Kind::Refuse, 1, p).encode()).is_ok());
}
