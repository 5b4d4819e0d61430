use super::*;

#[test]
fn finds_the_one_connection_to_the_dialled_address() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let ip = Some(IpAddr::from([127, 0, 0, 1]));
    let probing = Probing {
        interval: Duration::from_secs(20),
        timeout: Duration::from_secs(5),
    };
    let mut q = BrokerSocket::default();
    q.attach((ip, port), probing);
    assert!(q.fd.is_some(), "found by address and port");
    q.after_read();
    let fd = q.fd.as_ref().unwrap();
    assert_eq!(sockopt::tcp_quickack(fd).ok(), Some(true));
    assert_eq!(
        (
            sockopt::socket_keepalive(fd).ok(),
            sockopt::tcp_keepidle(fd).ok(),
            sockopt::tcp_keepintvl(fd).ok(),
            sockopt::tcp_user_timeout(fd).ok(),
        ),
        (
            Some(true),
            Some(Duration::from_secs(20)),
            Some(Duration::from_secs(5)),
            Some(5000)
        ),
        "probing set on the connection itself"
    );
    q.attach((Some(IpAddr::from([127, 0, 0, 2])), port), probing);
    assert!(q.fd.is_none(), "another address");
    q.attach((None, port ^ 1), probing);
    assert!(q.fd.is_none(), "another port");
    let _second = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    q.attach((None, port), probing);
    assert!(q.fd.is_none(), "two candidates: neither");
}

#[test]
fn shut_ends_the_connection_for_its_owner_too() {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut owner = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (_broker, _) = listener.accept().unwrap();
    let mut q = BrokerSocket::default();
    assert!(!q.shut(), "nothing to shut before it is found");
    let probing = Probing {
        interval: Duration::from_secs(20),
        timeout: Duration::from_secs(5),
    };
    q.attach((Some(IpAddr::from([127, 0, 0, 1])), port), probing);
    assert!(q.shut());
    // The descriptor rumqttc would hold reads the end at once.
    let mut buf = [0u8; 8];
    assert_eq!(owner.read(&mut buf).unwrap(), 0);
}
