//! The broker's own cost of moving bytes, for `scripts/bench`: two minimal
//! MQTT 3.1.1 clients on plain blocking sockets, one publishing MIB MiB in
//! QoS 0 messages of SIZE bytes to a topic, the other subscribed to it and
//! reading in 1 MiB gulps. Nothing here does more than the protocol needs,
//! so the broker's CPU time during the run is the least any client of that
//! broker can cause (our tunnel's messages are the same QoS 0 PUBLISH).
//!
//! Usage: broker_floor PORT MIB SIZE. Prints the seconds the transfer took.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

#[path = "../tests/common/mqtt_wire.rs"]
mod mqtt_wire;
use mqtt_wire::{mqtt_string, packet};

/// Connect with a clean session and wait for the CONNACK.
fn connect(port: u16, client_id: &[u8]) -> io::Result<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    let mut body = Vec::new();
    mqtt_string(b"MQTT", &mut body);
    body.extend_from_slice(&[4, 0x02, 0, 60]); // 3.1.1, clean session, keepalive 60 s
    mqtt_string(client_id, &mut body);
    let mut out = Vec::new();
    packet(0x10, &body, &mut out);
    s.write_all(&out)?;
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack)?;
    if connack[0] != 0x20 || connack[3] != 0 {
        return Err(io::Error::other(format!("connection refused: {connack:?}")));
    }
    Ok(s)
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, port, mib, size] = &args[..] else {
        eprintln!("usage: broker_floor PORT MIB SIZE");
        std::process::exit(2);
    };
    let port: u16 = port.parse().expect("PORT: a number");
    let total = mib.parse::<usize>().expect("MIB: a number") << 20;
    let size: usize = size.parse().expect("SIZE: a number");
    let topic = format!("broker-floor/{}", std::process::id());

    let mut sub = connect(port, format!("floor-sub-{}", std::process::id()).as_bytes())?;
    let mut body = vec![0, 1]; // packet id 1
    mqtt_string(topic.as_bytes(), &mut body);
    body.push(0); // QoS 0
    let mut out = Vec::new();
    packet(0x82, &body, &mut out);
    sub.write_all(&out)?;
    let mut suback = [0u8; 5];
    sub.read_exact(&mut suback)?;

    let mut body = Vec::new();
    mqtt_string(topic.as_bytes(), &mut body);
    body.resize(body.len() + size, 0xa5);
    let mut publish = Vec::new();
    packet(0x30, &body, &mut publish);
    let count = total / size;
    let expected = count * publish.len();

    let mut publisher = connect(port, format!("floor-pub-{}", std::process::id()).as_bytes())?;
    let started = Instant::now();
    let reader = std::thread::spawn(move || -> io::Result<()> {
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < expected {
            match sub.read(&mut buf)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => got += n,
            }
        }
        Ok(())
    });
    for _ in 0..count {
        publisher.write_all(&publish)?;
    }
    reader.join().expect("reader thread")?;
    println!("{:.3}", started.elapsed().as_secs_f64());
    Ok(())
}
