//! One-line, user-facing descriptions of connection failures, for both
//! rumqttc APIs and every transport (TCP, TLS, WebSocket, HTTP proxy).

use std::error::Error as StdError;

use rumqttc::v5::mqttbytes::v5 as p5;
use tungstenite::Error as WsError;

use crate::config::{Broker, BrokerAddr, Carrier};

/// A failure of the 3.1.1 client.
pub(super) fn describe_v4(e: &rumqttc::ConnectionError, b: &Broker) -> String {
    use rumqttc::{ConnectReturnCode as C, ConnectionError as E, StateError as S};
    let addr = &b.addr;
    if let Some(why) = transport_reason(e, b) {
        return why;
    }
    if let (E::MqttState(_), Some(io)) = (e, find_io(e)) {
        return lost_reason(io, addr);
    }
    match e {
        E::Io(io) => io_reason(io, addr),
        E::ConnectionRefused(code) => {
            let why = match code {
                C::BadUserNamePassword => "bad user name or password",
                C::NotAuthorized => not_authorized(addr),
                C::BadClientId => "client id rejected",
                C::ServiceUnavailable => "server unavailable",
                C::RefusedProtocolVersion => "unsupported protocol version",
                C::Success => "unexpected success code",
            };
            format!("broker refused the connection: {why}")
        }
        E::NetworkTimeout => format!("could not reach broker {addr}: timed out"),
        E::MqttState(S::ConnectionAborted) => format!("connection to broker {addr} closed"),
        E::MqttState(S::AwaitPingResp) => format!("broker {addr} stopped answering"),
        E::Websocket(w) => ws_reason(w, b),
        E::ResponseValidation(_) => not_mqtt_over_ws(b),
        other => format!("connection to broker {addr} failed: {other}"),
    }
}

/// A failure of the MQTT 5 client: reason codes (and the broker's reason
/// string, if it sent one) in words.
pub(super) fn describe_v5(e: &rumqttc::v5::ConnectionError, b: &Broker) -> String {
    use p5::ConnectReturnCode as C;
    use rumqttc::v5::{ConnectionError as E, StateError as S};
    let addr = &b.addr;
    if let Some(why) = transport_reason(e, b) {
        return why;
    }
    // The 5 client's decoding error keeps the read's I/O error out of the
    // source chain.
    let read_failed = match e {
        E::MqttState(S::Deserialization(rumqttc::v5::mqttbytes::Error::Io(io))) => Some(io),
        E::MqttState(_) => find_io(e),
        _ => None,
    };
    if let Some(io) = read_failed {
        return lost_reason(io, addr);
    }
    match e {
        E::Io(io) => io_reason(io, addr),
        E::ConnectionRefused(code) => {
            let why = match code {
                C::BadUserNamePassword => "bad user name or password".to_owned(),
                C::NotAuthorized => not_authorized(addr).to_owned(),
                C::ClientIdentifierNotValid | C::BadClientId => "client id rejected".to_owned(),
                C::ServiceUnavailable => "server unavailable".to_owned(),
                C::RefusedProtocolVersion => "unsupported protocol version".to_owned(),
                C::QoSNotSupported => "QoS not supported".to_owned(),
                other => words(&format!("{other:?}")),
            };
            format!("broker refused the connection: {why}")
        }
        E::MqttState(S::ServerDisconnect {
            reason_code,
            reason_string,
        }) => {
            let code = match reason_code {
                p5::DisconnectReasonCode::QoSNotSupported => "QoS not supported".to_owned(),
                other => words(&format!("{other:?}")),
            };
            match reason_string.as_deref().map(str::trim) {
                Some(s) if !s.is_empty() => {
                    format!("broker disconnected: {code} ({})", one_line(s))
                }
                _ => format!("broker disconnected: {code}"),
            }
        }
        E::MqttState(S::ConnFail { reason }) => {
            format!("broker refused the connection: {}", words(&format!("{reason:?}")))
        }
        E::MqttState(S::OutgoingPacketTooLarge { pkt_size, max }) => format!(
            "a message of {pkt_size} bytes is above broker {addr}'s maximum packet size of {max} bytes"
        ),
        E::Timeout(_) => format!("could not reach broker {addr}: timed out"),
        E::MqttState(S::ConnectionAborted) => format!("connection to broker {addr} closed"),
        E::MqttState(S::AwaitPingResp) => format!("broker {addr} stopped answering"),
        E::Websocket(w) => ws_reason(w, b),
        E::ResponseValidation(_) => not_mqtt_over_ws(b),
        other => format!("connection to broker {addr} failed: {other}"),
    }
}

/// mosquitto 2 (and others) answer a wrong password with "not authorized"
/// instead of "bad user name or password", so as not to tell which of user
/// and password was wrong.
fn not_authorized(addr: &BrokerAddr) -> &'static str {
    if addr.login {
        "bad user name or password"
    } else {
        "not authorized (the broker wants a user name and password: --user, MQTT_PASSWORD)"
    }
}

/// TLS and HTTP proxy failures, found anywhere in the error's chain.
fn transport_reason(e: &(dyn StdError + 'static), b: &Broker) -> Option<String> {
    let addr = &b.addr;
    if let Some(p) = &b.http_proxy {
        let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
        while let Some(err) = cur {
            if let Some(h) = err.downcast_ref::<async_http_proxy::HttpError>() {
                use async_http_proxy::HttpError as H;
                return Some(match h {
                    H::HttpCode200(407) => format!(
                        "HTTP proxy {p} refused to connect to broker {addr}: HTTP 407 (proxy \
                         credentials missing or wrong: MQTT_HTTP_PROXY=http://USER:PASSWORD@…)"
                    ),
                    H::HttpCode200(code) => {
                        format!("HTTP proxy {p} refused to connect to broker {addr}: HTTP {code}")
                    }
                    H::EndOfFile => format!("HTTP proxy {p} closed the connection"),
                    H::IoError(io) => proxy_io_reason(io, p),
                    other => format!("HTTP proxy {p} failed: {}", one_line(&other.to_string())),
                });
            }
            // rumqttc's own proxy error wraps the socket error towards the
            // proxy; its text starts "Socket connect".
            if err.to_string().starts_with("Socket connect:") {
                if let Some(io) = err
                    .source()
                    .and_then(|s| s.downcast_ref::<std::io::Error>())
                {
                    return Some(proxy_io_reason(io, p));
                }
            }
            cur = err.source();
        }
    }
    if let Some(trust) = &addr.tls_trust {
        if let Some(why) = crate::tls::explain(e, &addr.host, trust) {
            return Some(format!("could not connect to broker {addr}: {why}"));
        }
    }
    None
}

fn proxy_io_reason(io: &std::io::Error, p: &crate::config::HttpProxy) -> String {
    use std::io::ErrorKind::*;
    match io.kind() {
        ConnectionRefused => format!("could not reach HTTP proxy {p}: connection refused"),
        TimedOut => format!("could not reach HTTP proxy {p}: timed out"),
        ConnectionReset | UnexpectedEof | BrokenPipe => {
            format!("HTTP proxy {p} closed the connection")
        }
        _ => format!(
            "could not reach HTTP proxy {p}: {}",
            one_line(&io.to_string())
        ),
    }
}

fn ws_path(b: &Broker) -> &str {
    match &b.carrier {
        Carrier::WebSocket { path } => path,
        Carrier::Tcp => "/",
    }
}

fn not_mqtt_over_ws(b: &Broker) -> String {
    format!(
        "could not connect to broker {}: the server at {} speaks WebSocket but not MQTT \
         (no 'mqtt' subprotocol in its answer)",
        b.addr,
        ws_path(b)
    )
}

fn ws_reason(e: &WsError, b: &Broker) -> String {
    let addr = &b.addr;
    match e {
        WsError::Http(resp) => {
            let status = resp.status();
            format!(
                "could not connect to broker {addr}: the server answered {} with HTTP {} {} \
                 (check the WebSocket path)",
                ws_path(b),
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )
            .replace("  (", " (")
        }
        WsError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            io_reason(io, addr)
        }
        WsError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => io_reason(io, addr),
        WsError::Protocol(_) | WsError::HttpFormat(_) | WsError::Io(_) | WsError::Utf8 => {
            format!("could not connect to broker {addr}: the server does not speak WebSocket")
        }
        other => format!(
            "could not connect to broker {addr}: WebSocket: {}",
            one_line(&other.to_string())
        ),
    }
}

/// The I/O error anywhere in `e`'s chain (rumqttc wraps a read's error in
/// its state and decoding errors).
fn find_io<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a std::io::Error> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cur = err.source();
    }
    None
}

/// An established connection failed: a timeout there is our link timeout
/// (`mqtt::socket`) seeing nothing acknowledged, not a broker out of reach.
fn lost_reason(io: &std::io::Error, addr: &BrokerAddr) -> String {
    match io.kind() {
        std::io::ErrorKind::TimedOut => format!(
            "broker {addr} stopped answering (nothing acknowledged within the link timeout)"
        ),
        _ => io_reason(io, addr),
    }
}

pub(super) fn io_reason(io: &std::io::Error, addr: &BrokerAddr) -> String {
    use std::io::ErrorKind::*;
    let why = match io.kind() {
        ConnectionRefused => "connection refused".to_owned(),
        ConnectionReset | ConnectionAborted | UnexpectedEof | BrokenPipe => {
            return format!("connection to broker {addr} closed");
        }
        TimedOut => "timed out".to_owned(),
        _ => {
            let s = io.to_string();
            // rumqttc wraps resolver errors; keep the innermost text short.
            s.strip_prefix("failed to lookup address information: ")
                .map(|r| format!("cannot resolve host: {r}"))
                .unwrap_or(s)
        }
    };
    format!("could not reach broker {addr}: {why}")
}

/// `SessionTakenOver` → `session taken over`.
fn words(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Text from the broker, on one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
