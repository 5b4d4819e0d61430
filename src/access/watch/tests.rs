use super::*;
use crate::access::testkeys::{ed25519, line};

fn stamp(ino: u64, len: u64) -> Option<Stamp> {
    Some(Stamp {
        dev: 1,
        ino,
        len,
        mtime: (100, 0),
        ctime: (100, 0),
    })
}

#[test]
fn tracker_reads_a_change_once_it_holds_for_one_poll() {
    let start = (stamp(1, 10), None);
    let edited = (stamp(1, 20), None);
    let edited_more = (stamp(1, 30), None);
    let renamed = (stamp(2, 30), None);
    let revoked_appears = (stamp(2, 30), stamp(9, 5));
    let gone = (None, stamp(9, 5));
    let mut t = Tracker::new(start);
    // (what the poll sees, read now?)
    let steps = [
        (start, false),
        (edited, false),
        (edited_more, false), // still being written
        (edited_more, true),
        (edited_more, true), // until read() says it was
    ];
    for (i, (seen, want)) in steps.into_iter().enumerate() {
        assert_eq!(t.observe(seen), want, "step {i}");
    }
    t.read(edited_more);
    let steps = [(edited_more, false), (renamed, false), (renamed, true)];
    for (i, (seen, want)) in steps.into_iter().enumerate() {
        assert_eq!(t.observe(seen), want, "rename step {i}");
    }
    t.read(renamed);
    // A change that went back before it was read is no change.
    assert!(!t.observe(revoked_appears));
    assert!(!t.observe(renamed));
    assert!(!t.observe(revoked_appears));
    assert!(t.observe(revoked_appears));
    t.read(revoked_appears);
    // A file that disappears is a change too (the read fails and warns).
    assert!(!t.observe(gone));
    assert!(t.observe(gone));
    t.read(gone);
    assert!(!t.observe(gone));
}

/// Wait (real time, the files are real) until the receiver sees lists
/// for which `ok` holds.
async fn until(
    rx: &mut watch::Receiver<Arc<Access>>,
    ok: impl Fn(&Access) -> bool,
) -> Result<(), &'static str> {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if ok(&rx.borrow_and_update()) {
                return;
            }
            rx.changed().await.expect("the watcher runs");
        }
    })
    .await
    .map_err(|_| "the lists did not change within 5 s")
}

#[tokio::test]
async fn re_reads_edits_renames_and_keeps_the_lists_on_a_bad_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = (ed25519(), ed25519());
    let (ka, kb) = (
        a.public_key().key_data().clone(),
        b.public_key().key_data().clone(),
    );
    let files = Files {
        authorized_keys: dir.path().join("authorized_keys"),
        revoked_keys: Some(dir.path().join("revoked_keys")),
    };
    std::fs::write(&files.authorized_keys, format!("{}\n", line(&a))).expect("write");
    std::fs::write(files.revoked_keys.as_ref().expect("set"), "").expect("write");
    let poll = Duration::from_millis(20);
    let mut rx = spawn(files.clone(), poll).await.expect("loads");
    assert!(rx.borrow().authorized.lists_key(&ka));

    // Appended in place.
    let mut text = format!("{}\n{}\n", line(&a), line(&b));
    std::fs::write(&files.authorized_keys, &text).expect("write");
    until(&mut rx, |x| x.authorized.lists_key(&kb))
        .await
        .expect("edit seen");

    // Replaced by rename, as editors and `sed -i` do: A removed.
    let tmp = dir.path().join("authorized_keys.tmp");
    std::fs::write(&tmp, format!("{}\n", line(&b))).expect("write");
    std::fs::rename(&tmp, &files.authorized_keys).expect("rename");
    until(&mut rx, |x| !x.authorized.lists_key(&ka))
        .await
        .expect("rename seen");

    // The revoked list.
    let revoked = files.revoked_keys.as_ref().expect("set");
    std::fs::write(&tmp, format!("{}\n", line(&b))).expect("write");
    std::fs::rename(&tmp, revoked).expect("rename");
    until(&mut rx, |x| x.revoked.contains(&kb))
        .await
        .expect("revocation seen");

    // A file that does not parse keeps the lists in force.
    text = "no-pty ".to_string() + &line(&a);
    std::fs::write(&files.authorized_keys, &text).expect("write");
    tokio::time::sleep(poll * 10).await;
    assert!(rx.borrow().authorized.lists_key(&kb));
    assert!(!rx.borrow().authorized.lists_key(&ka));
    // Fixed, it is read again.
    std::fs::write(&files.authorized_keys, line(&a)).expect("write");
    until(&mut rx, |x| {
        x.authorized.lists_key(&ka) && !x.authorized.lists_key(&kb)
    })
    .await
    .expect("fixed file seen");
}

#[tokio::test]
async fn a_bad_file_at_start_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = Files {
        authorized_keys: dir.path().join("authorized_keys"),
        revoked_keys: None,
    };
    let e = spawn(files.clone(), POLL).await.expect_err("no file");
    assert!(e.to_string().starts_with("could not read "), "{e}");
    std::fs::write(&files.authorized_keys, "\nfrom=\"x\" ssh-ed25519 AAAA\n").expect("write");
    let e = spawn(files, POLL).await.expect_err("bad file");
    assert!(
        e.to_string().ends_with("authorized_keys: line 2: unknown option 'from=\"x\"' (only cert-authority and principals=\"…\" are understood)"),
        "{e}"
    );
}
