use clap::Parser;
use mqtt_proxy::proxy::PREFIX;
use mqtt_proxy::{config, list, logging, proxy, stdio, EXIT_PROXY_FAILURE};

/// One session: a single thread avoids cross-thread wake-ups per message
/// (measured: half the CPU of the multi-threaded runtime, commit 24e2da1).
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    mqtt_proxy::heap::keep_freed_memory();
    let args = match proxy::ProxyArgs::try_parse() {
        Ok(args) => args,
        // --help and --version: to stdout, status 0.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            for line in e.render().to_string().lines().filter(|l| !l.is_empty()) {
                say(line);
            }
            return std::process::ExitCode::from(EXIT_PROXY_FAILURE);
        }
    };
    logging::init_logging(args.broker.log_filter("warn"), Some(PREFIX));
    let result = async {
        let mut cfg = args.resolve().map_err(|e| format!("{e:#}"))?;
        if let (Some(user), None) = (&cfg.broker.user, &cfg.broker.password) {
            // ssh leaves the terminal to its ProxyCommand; without one
            // (batch use) we go on without a password.
            let prompt = format!("MQTT password for {user}@{}: ", cfg.broker.addr.host);
            if let Ok(p) = rpassword::prompt_password(prompt) {
                cfg.broker.password = (!p.is_empty()).then(|| config::Secret::new(p));
            }
        }
        if let Some(pattern) = &args.list {
            let filter = list::Filter {
                pattern: pattern.clone(),
                online: args.online,
            };
            return list::run(&cfg.broker, args.json, &filter)
                .await
                .map_err(|e| format!("{e:#}"));
        }
        if args.forget.is_some() {
            return list::forget(&cfg.broker, &cfg.node)
                .await
                .map_err(|e| format!("{e:#}"));
        }
        let (stdin, stdout, gone) =
            stdio::take().map_err(|e| format!("cannot use stdin/stdout: {e}"))?;
        match proxy::run(cfg, stdin, stdout, gone.wait()).await {
            Ok(()) => Ok(()),
            // ssh hung up on us, or is gone: there is nobody to tell.
            Err(proxy::ProxyError::Interrupted) => Err(String::new()),
            Err(e) => Err(e.to_string()),
        }
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(msg) => {
            if !msg.is_empty() {
                say(&msg);
            }
            std::process::ExitCode::from(EXIT_PROXY_FAILURE)
        }
    }
}

/// `mqtt-proxy: LINE` on stderr in one write: ssh writes its own lines to
/// the same terminal as we exit (`Connection … closed by remote host.`), and
/// `eprintln!` writes each piece of its format separately, so ours would
/// come out torn.
fn say(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("{PREFIX}: {line}\n").as_bytes());
}
