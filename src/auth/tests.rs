use super::*;

#[test]
fn token_bucket_limits_and_refills() {
    let t0 = Instant::now();
    let mut b = TokenBucket::new(3, 2.0, t0);
    assert!(b.take(t0) && b.take(t0) && b.take(t0));
    assert!(!b.take(t0));
    assert!(!b.available(t0 + Duration::from_millis(400)));
    assert!(b.take(t0 + Duration::from_millis(500)));
    assert!(!b.take(t0 + Duration::from_millis(500)));
    // Never more than the capacity, however long the pause.
    let later = t0 + Duration::from_secs(100);
    assert!(b.take(later) && b.take(later) && b.take(later));
    assert!(!b.take(later));
}
