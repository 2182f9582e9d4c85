//! Where the site lives: `--root`/`FRONTEND_ROOT` when given, else the first directory
//! that exists of `<directory of the binary>/site` (an unpacked release or image),
//! `./frontend/site` (the repository root) and `./site` (the `frontend/` folder).

use std::path::{Path, PathBuf};

/// A site root we cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("site root {0} is not a directory (set --root or FRONTEND_ROOT)")]
    NotADirectory(PathBuf),
    #[error("site root {0} has no index.html")]
    NoIndex(PathBuf),
}

/// The root to serve, checked: it must be a directory holding `index.html`.
pub fn resolve(flag: Option<&Path>) -> Result<PathBuf, Error> {
    let root = match flag {
        Some(root) => root.to_path_buf(),
        None => default_root(),
    };
    if !root.is_dir() {
        return Err(Error::NotADirectory(root));
    }
    if !root.join("index.html").is_file() {
        return Err(Error::NoIndex(root));
    }
    Ok(root)
}

fn default_root() -> PathBuf {
    let beside_binary = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("site")));
    beside_binary
        .into_iter()
        .chain([PathBuf::from("frontend/site")])
        .find(|candidate| candidate.is_dir())
        .unwrap_or_else(|| PathBuf::from("site"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_missing_and_index_less_roots() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert!(matches!(
            resolve(Some(&missing)),
            Err(Error::NotADirectory(_))
        ));
        assert!(matches!(resolve(Some(dir.path())), Err(Error::NoIndex(_))));
        std::fs::write(dir.path().join("index.html"), "<!doctype html>").unwrap();
        assert_eq!(resolve(Some(dir.path())).unwrap(), dir.path());
    }

    #[test]
    fn default_finds_the_shipped_site_from_the_package_folder() {
        // `cargo test` runs in frontend/, where ./site is the shipped site.
        assert!(resolve(None).unwrap().join("index.html").is_file());
    }
}
