//! SIGHUP reloads the site: the root is read again into a fresh copy (on the blocking
//! pool, while requests keep being served from the old one), which is swapped in when
//! complete. If the new read fails (a file went unreadable, a symlink dangles…) the old
//! copy stays in service and the failure is logged at WARN.

use std::io;

use tokio::signal::unix::{signal, SignalKind};

use crate::site_cache::Site;

/// Installs the SIGHUP handler now (a signal that arrives before the task runs is not
/// lost) and reloads `site` on each one, for as long as the runtime lives.
pub fn on_sighup(site: Site) -> io::Result<()> {
    let mut hangups = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let loading = site.clone();
            match tokio::task::spawn_blocking(move || loading.reload()).await {
                Ok(Ok(summary)) => tracing::info!(%summary, "SIGHUP: site reloaded"),
                Ok(Err(error)) => tracing::warn!(
                    %error,
                    "SIGHUP: site reload failed; still serving the previous copy"
                ),
                Err(error) => tracing::warn!(
                    %error,
                    "SIGHUP: site reload did not finish; still serving the previous copy"
                ),
            }
        }
    });
    Ok(())
}
