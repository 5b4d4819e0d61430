use super::*;

#[test]
fn an_ask_holds_for_three_periods() {
    let t = Instant::now();
    let mut p = PadAsks::default();
    assert!(!p.asked(t), "nobody asked");
    p.on_asked(t);
    assert!(p.asked(t));
    assert!(p.asked(t + ASKED_FOR - Duration::from_millis(1)));
    assert!(!p.asked(t + ASKED_FOR));
    // A later ask extends it.
    p.on_asked(t + ASKED_FOR);
    assert!(p.asked(t + ASKED_FOR + ASK_PERIOD));
}

#[test]
fn only_a_peer_that_sends_small_frames_is_asked_once_a_period() {
    let t = Instant::now();
    let mut p = PadAsks::default();
    assert!(!p.ask_due(t), "the peer sent nothing");
    p.on_data(crate::protocol::PAD_LEN);
    assert!(!p.ask_due(t), "a full segment's chunk is not small");
    p.on_data(36);
    assert!(p.ask_due(t));
    p.on_data(36);
    assert!(!p.ask_due(t + ASK_PERIOD / 2), "asked within the period");
    assert!(p.ask_due(t + ASK_PERIOD));
    assert!(!p.ask_due(t + 3 * ASK_PERIOD), "nothing small since");
    p.on_data(1);
    assert!(p.ask_due(t + 3 * ASK_PERIOD));
}
