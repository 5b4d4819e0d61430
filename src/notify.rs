//! systemd readiness notification (`Type=notify`): tell the service manager
//! the agent is online. A no-op when not started by systemd.

pub use sd_notify::NotifyState;

/// Send `states` (e.g. [`NotifyState::Ready`]) to `$NOTIFY_SOCKET`, if set,
/// leaving the variable in place. Failures are logged and otherwise
/// ignored: readiness is a courtesy, not a function. sd-notify takes the
/// socket as a path: an abstract one (`@name`) is not reached.
pub fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        let socket = std::env::var_os("NOTIFY_SOCKET").unwrap_or_default();
        tracing::debug!(socket = %socket.to_string_lossy(), error = %e, "systemd notification failed");
    }
}

#[cfg(test)]
mod tests;
