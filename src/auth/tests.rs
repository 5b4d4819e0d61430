use super::*;

#[test]
fn answer_verifies_only_for_its_inputs() {
    let s = Secret::new("correct horse".into());
    let n = nonce();
    let mac = answer(&s, "node", "cid", 7, &n);
    assert_eq!(mac.len(), MAC_LEN);
    assert!(verify(&s, "node", "cid", 7, &n, &mac));
    let other = nonce();
    assert_ne!(n, other, "nonces are fresh");
    let wrong = Secret::new("wrong".into());
    for ok in [
        verify(&wrong, "node", "cid", 7, &n, &mac),
        verify(&s, "node2", "cid", 7, &n, &mac),
        verify(&s, "node", "cid2", 7, &n, &mac),
        verify(&s, "node", "cid", 8, &n, &mac),
        verify(&s, "node", "cid", 7, &other, &mac),
        verify(&s, "node", "cid", 7, &n, &mac[..31]),
    ] {
        assert!(!ok);
    }
    // Field boundaries are unambiguous: ("ab","c") differs from ("a","bc").
    assert_ne!(answer(&s, "ab", "c", 1, &n), answer(&s, "a", "bc", 1, &n));
}

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
