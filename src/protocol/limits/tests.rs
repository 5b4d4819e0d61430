use super::*;

#[test]
fn size_steps_go_down_to_the_floor() {
    assert_eq!(step_below(MAX_FRAME), 32512);
    assert_eq!(step_below(MAX_FRAME + 1), MAX_FRAME);
    assert_eq!(step_below(16129), 16128);
    assert_eq!(step_below(16128), 7936);
    assert_eq!(step_below(MIN_MESSAGE + 1), MIN_MESSAGE);
    assert_eq!(step_below(MIN_MESSAGE), MIN_MESSAGE);
    assert!(MESSAGE_STEPS.windows(2).all(|w| w[0] > w[1]));
}
