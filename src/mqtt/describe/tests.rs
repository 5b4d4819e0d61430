use super::*;
use crate::config::{BrokerArgs, FileConfig};

#[test]
fn reason_codes_read_as_words() {
    assert_eq!(words("SessionTakenOver"), "session taken over");
    assert_eq!(words("QuotaExceeded"), "quota exceeded");
    assert_eq!(words("NotAuthorized"), "not authorized");
    assert_eq!(one_line(" a\n b  c "), "a b c");
}

fn broker(user: Option<&str>) -> Broker {
    BrokerArgs {
        host: Some("b.example".into()),
        user: user.map(str::to_owned),
        ..Default::default()
    }
    .resolve(&FileConfig::default(), None, &|_| None)
    .expect("valid settings")
}

#[test]
fn messages_name_the_broker_and_the_cause() {
    use p5::ConnectReturnCode as C5;
    use rumqttc::v5::{ConnectionError as E5, StateError as S5};
    use rumqttc::{ConnectReturnCode as C4, ConnectionError as E4};
    let anon = broker(None);
    let refused = E4::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
    assert_eq!(
        describe_v4(&refused, &anon),
        "could not reach broker b.example:1883: connection refused"
    );
    let wants_login = "broker refused the connection: not authorized (the broker wants a \
                       user name and password: --user, MQTT_PASSWORD)";
    let bad_login = "broker refused the connection: bad user name or password";
    assert_eq!(
        describe_v4(&E4::ConnectionRefused(C4::BadUserNamePassword), &anon),
        bad_login
    );
    assert_eq!(
        describe_v4(&E4::ConnectionRefused(C4::NotAuthorized), &anon),
        wants_login
    );
    assert_eq!(
        describe_v5(&E5::ConnectionRefused(C5::NotAuthorized), &anon),
        wants_login
    );
    let login = broker(Some("u"));
    for code in [C4::BadUserNamePassword, C4::NotAuthorized] {
        assert_eq!(describe_v4(&E4::ConnectionRefused(code), &login), bad_login);
    }
    for code in [C5::BadUserNamePassword, C5::NotAuthorized] {
        assert_eq!(describe_v5(&E5::ConnectionRefused(code), &login), bad_login);
    }
    let cases = [
        (
            E5::ConnectionRefused(C5::QuotaExceeded),
            "broker refused the connection: quota exceeded",
        ),
        (
            E5::ConnectionRefused(C5::Banned),
            "broker refused the connection: banned",
        ),
        (
            E5::MqttState(S5::ServerDisconnect {
                reason_code: p5::DisconnectReasonCode::QuotaExceeded,
                reason_string: None,
            }),
            "broker disconnected: quota exceeded",
        ),
        (
            E5::MqttState(S5::ServerDisconnect {
                reason_code: p5::DisconnectReasonCode::AdministrativeAction,
                reason_string: Some("kicked by\nan operator".into()),
            }),
            "broker disconnected: administrative action (kicked by an operator)",
        ),
    ];
    for (e, line) in cases {
        assert_eq!(describe_v5(&e, &anon), line);
    }
}

#[test]
fn an_established_connection_that_times_out_stopped_answering() {
    use rumqttc::mqttbytes::Error as Bytes4;
    use rumqttc::{ConnectionError as E4, StateError as S4};
    let b = broker(None);
    let timed_out = || std::io::Error::from(std::io::ErrorKind::TimedOut);
    // What rumqttc 0.25 returns when our link timeout ends the connection.
    let lost = E4::MqttState(S4::Deserialization(Bytes4::Io(timed_out())));
    let said = "broker b.example:1883 stopped answering (nothing acknowledged within the \
                link timeout)";
    assert_eq!(describe_v4(&lost, &b), said);
    assert_eq!(describe_v4(&E4::MqttState(S4::Io(timed_out())), &b), said);
    // Connecting is another matter.
    assert_eq!(
        describe_v4(&E4::Io(timed_out()), &b),
        "could not reach broker b.example:1883: timed out"
    );
    let reset = E4::MqttState(S4::Io(std::io::Error::from(
        std::io::ErrorKind::ConnectionReset,
    )));
    assert_eq!(
        describe_v4(&reset, &b),
        "connection to broker b.example:1883 closed"
    );
    use rumqttc::v5::{ConnectionError as E5, StateError as S5};
    let lost5 = E5::MqttState(S5::Deserialization(rumqttc::v5::mqttbytes::Error::Io(
        timed_out(),
    )));
    assert_eq!(describe_v5(&lost5, &b), said);
}
