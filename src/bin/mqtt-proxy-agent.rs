use clap::Parser;
use mqtt_proxy::{agent, config};

/// I/O-bound: one thread moves well over 100 MB/s, and avoids the
/// cross-thread wake-ups that cost half the CPU with the multi-threaded runtime.
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = agent::AgentArgs::parse();
    config::init_logging(args.broker.log_filter("info"));
    let result = match args.resolve() {
        Ok(cfg) => agent::run(cfg).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // Logged already; a distinct status so systemd does not restart an
        // agent that another one replaced (RestartPreventExitStatus=3).
        Err(e) if e.is::<agent::TakenOver>() => std::process::ExitCode::from(3),
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
