use super::*;

const MB: u64 = 1 << 20;

#[test]
fn the_receiver_of_a_bulk_transfer_is_receiving() {
    let t = Instant::now();
    let mut d = Direction::new(t);
    assert!(!d.receiving(t, 0, 0), "nothing either way");
    assert!(!d.receiving(t, 0, 3), "a few bytes are not a transfer");
    assert!(d.receiving(t, 0, 4));
    assert!(d.receiving(t, MB, 4 * MB));
    assert!(!d.receiving(t, MB, 4 * MB - 1));
}

#[test]
fn a_download_after_an_upload_counts_within_two_epochs() {
    let t = Instant::now();
    let mut d = Direction::new(t);
    // A gigabyte up, asked about all along.
    let mut sent = 0;
    let mut received = 0;
    let mut now = t;
    for _ in 0..10 {
        now += EPOCH / 2;
        sent += 100 * MB;
        received += MB;
        assert!(!d.receiving(now, sent, received));
    }
    // Then a download at the same speed: receiving once the upload
    // has left the window, counted from the download's start, not
    // once it outweighs the whole upload four times over.
    let start = now;
    while !d.receiving(now, sent, received) {
        now += EPOCH / 10;
        sent += MB / 10;
        received += 10 * MB;
        assert!(now - start <= 2 * EPOCH + EPOCH / 10, "still the sender");
    }
    // And back: sending again within two epochs.
    let start = now;
    while d.receiving(now, sent, received) {
        now += EPOCH / 10;
        sent += 10 * MB;
        received += MB / 10;
        assert!(now - start <= 2 * EPOCH + EPOCH / 10, "still the receiver");
    }
}

#[test]
fn asked_rarely_it_looks_back_further() {
    let t = Instant::now();
    let mut d = Direction::new(t);
    assert!(d.receiving(t + EPOCH, 0, 4 * MB));
    // Ten epochs later the older snapshot is the one from above, so
    // what came since counts: a megabyte each way is not receiving.
    assert!(!d.receiving(t + 10 * EPOCH, MB, 5 * MB));
}
