use super::*;

#[test]
fn websocket_lowers_the_packet_limit_to_what_mosquitto_sends_in_one_piece() {
    let ws = Carrier::WebSocket {
        path: "/mqtt".into(),
    };
    let cases = [
        (Carrier::Tcp, None, None),
        (Carrier::Tcp, Some(100_000), Some(100_000)),
        (ws.clone(), None, Some(WS_MAX_PACKET)),
        (ws.clone(), Some(100_000), Some(WS_MAX_PACKET)),
        (ws, Some(1000), Some(1000)),
    ];
    for (carrier, announced, want) in cases {
        assert_eq!(
            max_packet(&carrier, announced),
            want,
            "{carrier:?} {announced:?}"
        );
    }
}
