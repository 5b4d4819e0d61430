use clap::Parser;
use mqtt_proxy::{agent, logging, EXIT_AGENT_TAKEN_OVER};

/// I/O-bound: one thread moves well over 100 MB/s, and avoids the
/// cross-thread wake-ups that cost half the CPU with the multi-threaded runtime.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    mqtt_proxy::heap::keep_freed_memory();
    let args = agent::AgentArgs::parse();
    logging::init_logging(args.broker.log_filter("info"), None);
    let result = match args.resolve() {
        Ok(cfg) => agent::run(cfg).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // Logged already.
        Err(e) if e.is::<agent::TakenOver>() => std::process::ExitCode::from(EXIT_AGENT_TAKEN_OVER),
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
