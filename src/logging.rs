//! Logging: `tracing` to stderr (stdout is the SSH stream in `mqtt-proxy`).

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::time::SystemTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Set up logging to stderr; `default` is the filter when RUST_LOG is unset.
/// With `prefix`, every line starts with `prefix: ` (so a user reading
/// `mqtt-proxy`'s lines among ssh's own can tell who speaks).
pub fn init_logging(default: &str, prefix: Option<&'static str>) {
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match prefix {
        Some(prefix) => builder
            .event_format(Prefixed {
                prefix,
                inner: Format::default(),
            })
            .init(),
        None => builder.init(),
    }
}

/// The default line format behind a fixed prefix.
struct Prefixed {
    prefix: &'static str,
    inner: Format<Full, SystemTime>,
}

impl<S, N> FormatEvent<S, N> for Prefixed
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "{}: ", self.prefix)?;
        self.inner.format_event(ctx, writer, event)
    }
}
