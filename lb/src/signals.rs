//! Process signals. Pingora's own watcher handles SIGQUIT (upgrade), SIGTERM (graceful) and
//! SIGINT (fast); SIGHUP would kill the process by default. This watcher adds SIGHUP, which
//! reloads the config file in place ([`crate::reload`]).

use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};

use crate::reload::Reloader;

pub(crate) struct Signals {
    reloader: Arc<Reloader>,
}

impl Signals {
    pub(crate) fn new(reloader: Arc<Reloader>) -> Self {
        Self { reloader }
    }
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut quit), Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!("cannot install signal handlers; shutting down");
            return ShutdownSignal::FastShutdown;
        };
        loop {
            tokio::select! {
                _ = quit.recv() => {
                    tracing::info!("SIGQUIT received: handing the listening sockets over to the new process, then draining");
                    self.reloader.state.set_closing();
                    return ShutdownSignal::GracefulUpgrade;
                }
                _ = term.recv() => {
                    tracing::info!("SIGTERM received: closing the listeners, then draining");
                    self.reloader.state.set_closing();
                    return ShutdownSignal::GracefulTerminate;
                }
                _ = int.recv() => return ShutdownSignal::FastShutdown,
                _ = hup.recv() => {
                    tracing::info!("SIGHUP received: reloading the configuration");
                    // In its own task, so other signals are still answered during a
                    // reload that waits for new pools to warm up.
                    let reloader = self.reloader.clone();
                    tokio::spawn(async move { reloader.reload("signal").await });
                }
            }
        }
    }
}
