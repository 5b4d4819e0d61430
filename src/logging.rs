//! Logging: `tracing` to stderr (stdout is the SSH stream in `mqtt-proxy`).

/// Set up logging to stderr; `default` is the filter when RUST_LOG is unset.
pub fn init_logging(default: &str) {
    use std::io::IsTerminal;
    // rumqttc's own warnings (an MQTT 5 PUBACK or SUBACK with a refusal
    // code) are no lines for a user: the consequence is reported in our
    // words (e.g. `--forget`'s "check the ACL"). -v shows them.
    let default = match default {
        "error" | "warn" | "info" => format!("{default},rumqttc=error"),
        other => other.to_owned(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
