use std::os::unix::net::UnixDatagram;

use super::*;

#[test]
fn sends_to_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let server = UnixDatagram::bind(&path).unwrap();
    // Only this test touches NOTIFY_SOCKET in this process.
    std::env::set_var("NOTIFY_SOCKET", &path);
    notify(&[NotifyState::Ready]);
    std::env::remove_var("NOTIFY_SOCKET");
    let mut buf = [0u8; 64];
    let n = server.recv(&mut buf).unwrap();
    // sd-notify ends every state with a newline.
    assert_eq!(&buf[..n], b"READY=1\n");
}
