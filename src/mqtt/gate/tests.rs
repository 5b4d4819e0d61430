use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::*;
use crate::mqtt::pacer::Caps;

const CHUNK: usize = 25_000;

/// A gate with AWS IoT Core's byte cap, its bucket emptied by a first
/// chunk.
async fn busy_gate() -> Arc<Gate> {
    let caps = Caps {
        publishes_per_sec: Some(100),
        bytes_per_sec: Some(512 << 10),
    };
    let gate = Arc::new(Gate::new(Pacer::new(caps, Instant::now()).expect("capped")));
    gate.wait("copy/1", CHUNK).await;
    gate
}

#[tokio::test(start_paused = true)]
async fn a_keystroke_goes_before_a_chunk_already_waiting_for_its_bytes() {
    let gate = busy_gate().await;
    let (went, mut order) = mpsc::unbounded_channel();
    for (topic, payload) in [("copy/2", CHUNK), ("keys", 100)] {
        let (gate, went) = (gate.clone(), went.clone());
        tokio::spawn(async move {
            gate.wait(topic, payload).await;
            // The receiver outlives both tasks.
            let _ = went.send(topic);
        });
        // The chunk is in line (asleep until the bucket refills) before
        // the keystroke comes.
        tokio::task::yield_now().await;
    }
    assert_eq!(order.recv().await, Some("keys"));
    assert_eq!(order.recv().await, Some("copy/2"));
}

#[tokio::test(start_paused = true)]
async fn a_wait_that_is_dropped_gives_up_its_place() {
    let gate = busy_gate().await;
    let gave_up = tokio::time::timeout(Duration::from_millis(1), gate.wait("copy/2", CHUNK));
    assert!(gave_up.await.is_err(), "the bucket was empty");
    assert_eq!(gate.state().order.next(), None);
    // The next chunk is not held behind the one that gave up.
    gate.wait("copy/3", CHUNK).await;
}
