use super::*;

/// A sender that publishes `len`-byte packets as fast as the pacer lets it,
/// for `secs` seconds: the times they went.
fn greedy(caps: Caps, len: usize, secs: u64) -> Vec<Instant> {
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut p = Pacer::new(caps, start).expect("capped");
    let mut now = start;
    let mut sent = Vec::new();
    loop {
        now = p.ready_at(len, now);
        if now >= end {
            return sent;
        }
        p.take(len, now);
        sent.push(now);
    }
}

/// The most entries of `times` (sorted) within any closed one-second window.
fn busiest_second(times: &[Instant]) -> usize {
    let mut most = 0;
    let mut first = 0;
    for (i, t) in times.iter().enumerate() {
        while *t - times[first] > Duration::from_secs(1) {
            first += 1;
        }
        most = most.max(i - first + 1);
    }
    most
}

#[test]
fn publish_bucket_leaves_slack_below_the_cap() {
    // (cap, rate, burst): burst + rate is 0.9 of the cap, rounded down.
    let cases: &[(u32, f64, f64)] = &[
        (1, 0.5, 1.0),
        (2, 0.5, 1.0),
        (3, 1.0, 1.0),
        (10, 8.0, 1.0),
        (100, 81.0, 9.0),
        (1000, 810.0, 90.0),
    ];
    for &(n, rate, burst) in cases {
        assert_eq!(publish_bucket(n), (rate, burst), "cap {n}");
    }
}

#[test]
fn no_one_second_window_holds_more_than_the_budget() {
    for n in [1u32, 2, 3, 7, 10, 100, 1000] {
        let caps = Caps {
            publishes_per_sec: Some(n),
            bytes_per_sec: None,
        };
        let sent = greedy(caps, 100, 20);
        let budget = ((n as f64 * PUBLISH_FRACTION).floor() as usize).max(1);
        let most = busiest_second(&sent);
        assert!(most <= budget, "cap {n}: {most} in one second");
        // And it uses the budget: the long-run rate is the bucket's.
        let (rate, _) = publish_bucket(n);
        assert!(sent.len() as f64 >= rate * 20.0, "cap {n}: {}", sent.len());
    }
}

#[test]
fn bytes_stay_below_the_cap_and_reach_most_of_it() {
    let cap = 512 * 1024u64;
    for len in [100usize, 4096, 65_536 + 100] {
        let caps = Caps {
            publishes_per_sec: Some(100),
            bytes_per_sec: Some(cap),
        };
        let secs = 20;
        let sent = greedy(caps, len, secs);
        let bytes = (sent.len() * len) as f64;
        let rate = cap as f64 * BANDWIDTH_FRACTION;
        // At most the paced rate plus one burst and one packet of debt.
        let burst = rate * BANDWIDTH_BURST.as_secs_f64();
        assert!(
            bytes <= rate * secs as f64 + burst + len as f64,
            "len {len}: {bytes}"
        );
        // Small packets are limited by the publish cap, large ones by bytes.
        let expect = (rate * secs as f64).min(81.0 * secs as f64 * len as f64);
        assert!(bytes >= expect * 0.97, "len {len}: {bytes} < {expect}");
    }
}

#[test]
fn a_packet_above_the_byte_burst_still_goes() {
    let now = Instant::now();
    let caps = Caps {
        publishes_per_sec: None,
        bytes_per_sec: Some(1024),
    };
    let mut p = Pacer::new(caps, now).expect("capped");
    // Burst is 50 ms of 972.8 B/s: 48 bytes. A 64 KiB packet goes at once
    // on a full bucket, and the next one waits for the debt to be repaid.
    assert!(p.try_take(65_536, now));
    let next = p.ready_at(10, now);
    let wait = next - now;
    let owed = (65_536.0 - 48.64 + 10.0) / 972.8;
    assert!(
        (wait.as_secs_f64() - owed).abs() < 0.01,
        "waits {wait:?}, owed {owed} s"
    );
}

#[test]
fn try_take_refuses_without_tokens_and_takes_nothing() {
    let now = Instant::now();
    let caps = Caps {
        publishes_per_sec: Some(10),
        bytes_per_sec: None,
    };
    let mut p = Pacer::new(caps, now).expect("capped");
    assert!(p.try_take(10, now), "the burst of one");
    assert!(!p.try_take(10, now));
    assert!(!p.try_take(10, now + Duration::from_millis(100)));
    // 8/s: one token after 125 ms, and the refusals took none of it.
    assert!(p.try_take(10, now + Duration::from_millis(125)));
}

#[test]
fn nothing_capped_is_no_pacer() {
    assert!(Pacer::new(Caps::default(), Instant::now()).is_none());
}

#[test]
fn acks_wait_four_publish_intervals_at_most_half_a_second() {
    let delay = |n| {
        ack_delay(Caps {
            publishes_per_sec: n,
            bytes_per_sec: Some(1 << 20),
        })
    };
    assert_eq!(delay(None), None);
    assert_eq!(delay(Some(10)), Some(Duration::from_millis(500)));
    assert_eq!(delay(Some(1)), Some(MAX_ACK_DELAY));
    let at_100 = delay(Some(100)).expect("capped");
    assert!(
        (at_100.as_secs_f64() - 4.0 / 81.0).abs() < 1e-6,
        "{at_100:?}"
    );
}

#[test]
fn a_cap_never_shortens_the_streams_ack_delay() {
    let default = Duration::from_millis(200);
    let caps = |n| Caps {
        publishes_per_sec: n,
        bytes_per_sec: None,
    };
    assert_eq!(stream_ack_delay(caps(None), default), default);
    // 4/81 s at 100/s is shorter than the default: the default stays.
    assert_eq!(stream_ack_delay(caps(Some(100)), default), default);
    assert_eq!(
        stream_ack_delay(caps(Some(10)), default),
        Duration::from_millis(500)
    );
}

#[test]
fn the_retransmission_timeout_allows_for_delayed_acks_and_paced_packets() {
    let ten_ms = Duration::from_millis(10);
    assert_eq!(rto_allowance(Caps::default(), ten_ms), Duration::ZERO);
    let emqx = Caps {
        publishes_per_sec: Some(10),
        bytes_per_sec: None,
    };
    // 490 ms of ack delay beyond 10 ms, and six publish intervals of 1/8 s.
    assert_eq!(rto_allowance(emqx, ten_ms), Duration::from_millis(1240));
    let aws = Caps {
        publishes_per_sec: Some(100),
        bytes_per_sec: Some(512 * 1024),
    };
    // 4/81 s of ack delay beyond 10 ms, and six ~66 KiB packets at 95 % of
    // 512 KiB/s (~0.14 s each).
    let want = 4.0 / 81.0 - 0.010 + 6.0 * MAX_PACKET as f64 / (524_288.0 * 0.95);
    let got = rto_allowance(aws, ten_ms).as_secs_f64();
    assert!((got - want).abs() < 1e-6, "{got} != {want}");
}

#[test]
fn packets_under_a_byte_cap_go_in_50_ms_unless_the_publish_cap_needs_larger() {
    let kib = |k: u64| Some(k * 1024);
    let cases = [
        // (publishes/s, bytes/s, largest packet)
        (None, None, None),
        (Some(10), None, None),
        // AWS IoT Core: 512 KiB/s * 0.95 * 50 ms.
        (Some(100), kib(512), Some(24_904)),
        (None, kib(512), Some(24_904)),
        // 10/s: 8 paced publishes/s, half of them carry the byte cap.
        (Some(10), kib(512), Some(124_519)),
        // Never above what one frame needs.
        (None, kib(64 * 1024), Some(MAX_PACKET)),
    ];
    for (publishes_per_sec, bytes_per_sec, want) in cases {
        let caps = Caps {
            publishes_per_sec,
            bytes_per_sec,
        };
        let got = max_packet(caps);
        let want = want.map(|w: usize| w.min(MAX_PACKET));
        assert_eq!(got, want, "{caps:?}");
    }
}
