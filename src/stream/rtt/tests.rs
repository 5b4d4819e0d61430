use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

fn after(samples: &[Duration]) -> RttEstimator {
    let mut r = RttEstimator::new();
    for &s in samples {
        r.on_sample(s);
    }
    r
}

/// Samples fed to a fresh estimator and the state they must leave.
struct Case<'a> {
    name: &'a str,
    samples: &'a [Duration],
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
}

#[test]
fn samples_set_srtt_rttvar_and_clamped_rto() {
    let cases = [
        Case {
            name: "no sample",
            samples: &[],
            srtt: None,
            rttvar: Duration::ZERO,
            rto: INITIAL_RTO,
        },
        Case {
            name: "first sample: srtt = r, rttvar = r / 2, rto = 3r + ack delay",
            samples: &[ms(100)],
            srtt: Some(ms(100)),
            rttvar: ms(50),
            rto: ms(300) + ACK_DELAY,
        },
        Case {
            name: "first sample with a variation below the margin",
            samples: &[ms(40)],
            srtt: Some(ms(40)),
            rttvar: ms(20),
            rto: ms(40) + RTO_MIN_MARGIN + ACK_DELAY,
        },
        Case {
            name: "first sample above the ceiling",
            samples: &[ms(2000)],
            srtt: Some(ms(2000)),
            rttvar: ms(1000),
            rto: MAX_RTO,
        },
        Case {
            // srtt = (7·100 + 200) / 8, rttvar = (3·50 + |100 − 200|) / 4.
            name: "smoothing up",
            samples: &[ms(100), ms(200)],
            srtt: Some(us(112_500)),
            rttvar: us(62_500),
            rto: us(362_500) + ACK_DELAY,
        },
        Case {
            // srtt = (7·100 + 20) / 8, rttvar = (3·50 + 80) / 4.
            name: "smoothing down",
            samples: &[ms(100), ms(20)],
            srtt: Some(ms(90)),
            rttvar: us(57_500),
            rto: ms(320) + ACK_DELAY,
        },
        Case {
            // rttvar: 50, 37.5, 28.125, 21.09375 ms; 4·rttvar < the margin.
            name: "a steady path shrinks the variation until the margin holds",
            samples: &[ms(100), ms(100), ms(100), ms(100)],
            srtt: Some(ms(100)),
            rttvar: Duration::from_nanos(21_093_750),
            rto: ms(100) + RTO_MIN_MARGIN + ACK_DELAY,
        },
        Case {
            name: "zero round trip",
            samples: &[Duration::ZERO],
            srtt: Some(Duration::ZERO),
            rttvar: Duration::ZERO,
            rto: RTO_MIN_MARGIN + ACK_DELAY,
        },
        Case {
            // rttvar: 200, 150, 112.5, 84.375, 63.28125, 47.4609375 ms.
            name: "a long steady path keeps the margin above its round trip",
            samples: &[ms(400), ms(400), ms(400), ms(400), ms(400), ms(400)],
            srtt: Some(ms(400)),
            rttvar: Duration::from_nanos(47_460_937),
            rto: ms(400) + RTO_MIN_MARGIN + ACK_DELAY,
        },
    ];
    for c in cases {
        let r = after(c.samples);
        assert_eq!(r.srtt(), c.srtt, "{}: srtt", c.name);
        assert_eq!(r.rttvar(), c.rttvar, "{}: rttvar", c.name);
        assert_eq!(r.rto(), c.rto, "{}: rto", c.name);
    }
}

#[test]
fn backoff_doubles_up_to_the_ceiling() {
    // (case, samples, timeouts, rto)
    let cases: &[(&str, &[Duration], u32, Duration)] = &[
        ("initial, once", &[], 1, ms(2000)),
        ("initial, twice", &[], 2, ms(4000)),
        ("initial, capped", &[], 3, MAX_RTO),
        ("sampled, once", &[ms(100)], 1, (ms(300) + ACK_DELAY) * 2),
        ("sampled, twice", &[ms(100)], 2, (ms(300) + ACK_DELAY) * 4),
        ("sampled, capped", &[ms(100)], 3, MAX_RTO),
        (
            "margin doubles too",
            &[ms(10)],
            1,
            (ms(10) + RTO_MIN_MARGIN + ACK_DELAY) * 2,
        ),
        ("far past any shift width", &[ms(100)], 100, MAX_RTO),
    ];
    for &(name, samples, timeouts, rto) in cases {
        let mut r = after(samples);
        for _ in 0..timeouts {
            r.back_off();
        }
        assert_eq!(r.rto(), rto, "{name}");
    }
}

#[test]
fn reset_backoff_returns_to_the_sampled_rto() {
    let mut r = after(&[ms(100)]);
    r.back_off();
    r.back_off();
    r.reset_backoff();
    assert_eq!(r.rto(), ms(300) + ACK_DELAY);
    r.back_off();
    assert_eq!(
        r.rto(),
        (ms(300) + ACK_DELAY) * 2,
        "backoff restarts from one doubling"
    );
}

#[test]
fn sample_during_backoff_updates_the_base_and_keeps_the_backoff() {
    // Only progress (reset_backoff) ends a backoff; a sample moves the base.
    let mut r = after(&[ms(100)]);
    r.back_off();
    r.on_sample(ms(200));
    assert_eq!(r.rto(), (us(362_500) + ACK_DELAY) * 2);
    r.reset_backoff();
    assert_eq!(r.rto(), us(362_500) + ACK_DELAY);
}

#[test]
fn an_allowance_for_rate_caps_lengthens_every_timeout() {
    let mut r = RttEstimator::new();
    r.allow_delay(ms(700));
    assert_eq!(r.rto(), INITIAL_RTO + ms(700), "before any sample");
    r.on_sample(ms(20));
    // 20 ms + max(4 × 10 ms, 200 ms) + the peer's ack delay + 700 ms.
    assert_eq!(r.rto(), ms(920) + ACK_DELAY);
    r.allow_delay(ms(10_000));
    r.on_sample(ms(20));
    assert_eq!(r.rto(), MAX_RTO, "still capped");
}

#[test]
fn min_is_the_smallest_sample_whatever_the_smoothing() {
    let mut r = RttEstimator::new();
    assert_eq!(r.min(), None);
    for (sample, min) in [(30, 30), (10, 10), (200, 10), (12, 10), (9, 9)] {
        r.on_sample(ms(sample));
        assert_eq!(r.min(), Some(ms(min)), "after {sample} ms");
    }
    assert!(r.srtt().unwrap() > ms(9), "smoothed stays above the floor");
}
