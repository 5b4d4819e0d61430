//! MQTT 3.1.1 packet encoding for the minimal clients that need no MQTT
//! library: presence seeding in `tests/list.rs`, and
//! `examples/broker_floor` (which includes this file by path).

/// MQTT's variable-length "remaining length".
pub fn remaining_length(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n % 128) as u8;
        n /= 128;
        out.push(if n > 0 { byte | 0x80 } else { byte });
        if n == 0 {
            return;
        }
    }
}

/// A length-prefixed MQTT string.
pub fn mqtt_string(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// A whole packet: first byte, remaining length, body.
pub fn packet(first: u8, body: &[u8], out: &mut Vec<u8>) {
    out.push(first);
    remaining_length(body.len(), out);
    out.extend_from_slice(body);
}
