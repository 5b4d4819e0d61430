//! The fault-injecting relay ([`crate::common::relay::Relay`]) itself, in
//! front of an echo server: it forwards, stalls, delays, cuts and blackholes.

use super::*;

/// An echo server on a free port (the relay's upstream in its self-test).
fn echo_server() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind echo server");
    let port = listener.local_addr().expect("echo address").port();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            thread::spawn(move || {
                let mut read = conn.try_clone().expect("clone echo socket");
                // Ends on EOF or a reset, either way the connection is done.
                let _ = std::io::copy(&mut read, &mut conn);
            });
        }
    });
    port
}

/// Send `msg` and read the echo with a deadline; Err(kind) on failure.
fn echo(conn: &mut TcpStream, msg: &[u8], timeout: Duration) -> Result<Vec<u8>, ErrorKind> {
    conn.set_read_timeout(Some(timeout))
        .expect("set read timeout");
    conn.write_all(msg).map_err(|e| e.kind())?;
    let mut buf = vec![0u8; msg.len()];
    conn.read_exact(&mut buf).map_err(|e| e.kind())?;
    Ok(buf)
}

#[test]
fn relay_forwards_stalls_delays_cuts_and_blackholes() {
    let relay = Relay::start(echo_server());
    let connect = || TcpStream::connect((Ipv4Addr::LOCALHOST, relay.port())).expect("connect");
    let second = Duration::from_secs(1);

    let mut conn = connect();
    assert_eq!(echo(&mut conn, b"hello", second), Ok(b"hello".to_vec()));

    // Latency: one way each, so an echo takes at least twice the delay.
    relay.set_latency(Duration::from_millis(150));
    let t = Instant::now();
    assert_eq!(echo(&mut conn, b"slow", second), Ok(b"slow".to_vec()));
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "echo took {:?}",
        t.elapsed()
    );
    relay.set_latency(Duration::ZERO);

    // Stall: nothing arrives, the connection stays open, then all of it does.
    relay.stall(true);
    let res = echo(&mut conn, b"held", Duration::from_millis(500));
    assert!(
        matches!(res, Err(ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "bytes moved during a stall: {res:?}"
    );
    relay.stall(false);
    let mut buf = [0u8; 4];
    conn.read_exact(&mut buf)
        .expect("read the held bytes after the stall");
    assert_eq!(&buf, b"held");

    // Cut: the client sees a reset (not a clean EOF).
    relay.cut();
    let mut byte = [0u8; 1];
    conn.set_read_timeout(Some(second))
        .expect("set read timeout");
    let res = conn.read(&mut byte).map_err(|e| e.kind());
    assert_eq!(res, Err(ErrorKind::ConnectionReset), "read after a cut");

    // Blackhole: connections are accepted but answered only once it lifts.
    relay.set_blackhole(true);
    let mut held = connect();
    let res = echo(&mut held, b"lost?", Duration::from_millis(500));
    assert!(
        matches!(res, Err(ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "answer through a blackhole: {res:?}"
    );
    relay.set_blackhole(false);
    let mut buf = [0u8; 5];
    held.read_exact(&mut buf)
        .expect("read after the blackhole lifted");
    assert_eq!(&buf, b"lost?");

    // A cut while blackholed resets held connections too.
    relay.set_blackhole(true);
    let mut held = connect();
    assert!(
        wait_until(second, || relay.open() == 2),
        "open: {}",
        relay.open()
    );
    relay.cut();
    held.set_read_timeout(Some(second))
        .expect("set read timeout");
    assert_eq!(
        held.read(&mut byte).map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionReset)
    );
    assert!(
        wait_until(second, || relay.open() == 0),
        "open: {}",
        relay.open()
    );
    assert_eq!(relay.accepted(), 3);
}
