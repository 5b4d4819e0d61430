use clap::Parser;
use mqtt_proxy::{agent, config};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = agent::AgentArgs::parse();
    config::init_logging("info");
    let result = match args.resolve() {
        Ok(cfg) => agent::run(cfg).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
