use super::*;

fn announcer(published_at: Option<Instant>) -> Announcer {
    Announcer {
        topic: "p/n/presence".into(),
        instance: "i".into(),
        since: 1,
        announced: Some(0),
        published_at,
        node: "n".into(),
        password: None,
    }
}

#[test]
fn online_is_renewed_before_it_expires() {
    const { assert!(PRESENCE_RENEW.as_secs() * 2 <= PRESENCE_EXPIRY.as_secs()) };
    let t = Instant::now();
    let s = Duration::from_secs;
    // (published how long before now, renewal due)
    let cases = [
        (None, true),
        (Some(s(0)), false),
        (Some(PRESENCE_RENEW - s(1)), false),
        (Some(PRESENCE_RENEW), true),
        (Some(PRESENCE_EXPIRY), true),
    ];
    for (ago, due) in cases {
        let a = announcer(ago.map(|_| t));
        let now = ago.map_or(t, |d| t + d);
        assert_eq!(a.renew_due(now), due, "published {ago:?} ago");
    }
}
