//! What the site server needs at run time, checked once at startup.

use std::{path::PathBuf, time::Duration};

use service_kit::shutdown::{Draining, Plan};

use crate::{
    cli::ServeArgs,
    security_headers::ConnectSrc,
    site_cache::{LoadError, Site},
    site_root,
};

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Root(#[from] site_root::Error),
    #[error("loading the site into memory")]
    Load(#[from] LoadError),
}

/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The directory served at `/`; it holds `index.html` (checked).
    pub root: PathBuf,
    /// The files under `root`, in memory.
    pub site: Site,
    pub connect_src: ConnectSrc,
    pub request_timeout: Duration,
    pub draining: Draining,
    pub shutdown_plan: Plan,
}

impl AppState {
    /// Settings from `args`, with the site root resolved as [`site_root`] describes and
    /// read into memory; not draining.
    pub fn new(args: &ServeArgs) -> Result<Self, Error> {
        let root = site_root::resolve(args.root.as_deref())?;
        Ok(Self {
            site: Site::load(&root, args.cache_file_limit)?,
            root,
            connect_src: args.connect_src.clone(),
            request_timeout: args.request_timeout,
            draining: Draining::default(),
            shutdown_plan: Plan {
                drain: args.drain,
                timeout: args.shutdown_timeout,
            },
        })
    }
}
