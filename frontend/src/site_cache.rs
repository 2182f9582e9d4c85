//! The site in memory: every file under the root, read once at startup (and again on
//! SIGHUP, see [`crate::reload`]), with its `.gz`/`.br` twins and the header values its
//! responses need, computed once. A request then costs a map lookup, a header-map clone
//! and reference-count increments: no open, stat or read (tower-http's ServeDir does all
//! three on every request, on the blocking thread pool).
//!
//! Memory is bounded per file: a file larger than the limit (`--cache-file-limit`, 8 MiB
//! by default), or one whose twin is, is not held; it is marked [`Node::Disk`] and keeps
//! being streamed from disk by ServeDir. `404.html` and its twins are always held: they
//! answer every miss. The site is immutable inside its image, so a file added, changed or
//! removed after the load is not seen until the next load ([`Site::reload`]); a file over
//! the limit is read from disk per request, so its content is always the current one.

use std::{
    collections::{BTreeMap, HashMap},
    fmt, fs, io,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use arc_swap::{ArcSwap, Guard};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue};

use crate::{etag, file_headers};

/// The default `--cache-file-limit`: larger files are served from disk.
pub const DEFAULT_FILE_LIMIT: u64 = 8 << 20;

/// Directories nested deeper than this under the root are refused: a symlink loop would
/// otherwise recurse forever.
const MAX_DEPTH: usize = 32;

/// The page that answers every miss, held whatever its size.
pub(crate) const NOT_FOUND_PAGE: &str = "404.html";

/// Why the site could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    // The reason is in the message rather than a `source`: WARN lines print only this.
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: io::Error },
    #[error("{0}: directories nested more than {MAX_DEPTH} deep (a symlink loop?)")]
    TooDeep(PathBuf),
}

/// The site in memory, shared by every request. Cheap to clone; [`Site::reload`] swaps a
/// fresh copy in while requests keep reading the old one.
#[derive(Clone)]
pub struct Site {
    current: Arc<ArcSwap<SiteCache>>,
    root: Arc<Path>,
    file_limit: u64,
}

impl Site {
    /// Reads every file under `root`; files over `file_limit` bytes stay on disk.
    pub fn load(root: &Path, file_limit: u64) -> Result<Self, LoadError> {
        let cache = SiteCache::load(root, file_limit)?;
        Ok(Self {
            current: Arc::new(ArcSwap::from_pointee(cache)),
            root: root.into(),
            file_limit,
        })
    }

    /// Reads the root again and serves the new copy from now on. On an error the copy in
    /// service stays.
    pub fn reload(&self) -> Result<Summary, LoadError> {
        let cache = SiteCache::load(&self.root, self.file_limit)?;
        let summary = cache.summary;
        self.current.store(Arc::new(cache));
        Ok(summary)
    }

    /// What the copy in service holds.
    pub fn summary(&self) -> Summary {
        self.current.load().summary
    }

    pub(crate) fn current(&self) -> Guard<Arc<SiteCache>> {
        self.current.load()
    }
}

impl fmt::Debug for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Site")
            .field("root", &self.root)
            .field("file_limit", &self.file_limit)
            .field("summary", &self.summary())
            .finish()
    }
}

/// Counts for the logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Files held in memory, twins included.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Files over the limit, served from disk.
    pub on_disk: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} files ({} bytes) in memory, {} served from disk",
            self.files, self.bytes, self.on_disk
        )
    }
}

/// One load of the root: request path (decoded, without leading or trailing `/`, e.g.
/// `assets/app.js`; the root is `""`) → what is there.
pub(crate) struct SiteCache {
    nodes: HashMap<Box<str>, Node>,
    not_found: Option<Arc<File>>,
    summary: Summary,
}

#[derive(Clone)]
pub(crate) enum Node {
    /// A file held in memory.
    File(Arc<File>),
    /// A file over the limit: ServeDir serves it from disk.
    Disk,
    /// A directory, with what its `index.html` is, if it has one.
    Dir(Option<Box<Node>>),
}

/// A file and its precompressed twins.
pub(crate) struct File {
    pub(crate) identity: Variant,
    pub(crate) gzip: Option<Variant>,
    pub(crate) br: Option<Variant>,
    /// `text/html`: `Cache-Control: no-cache` wherever it is served from.
    pub(crate) is_html: bool,
}

/// One representation (identity, gzip or br) with its ready-made headers.
pub(crate) struct Variant {
    pub(crate) body: Bytes,
    /// Everything a 200 carries but `Cache-Control` (which depends on the request path):
    /// Content-Type (with charset), Accept-Ranges, Content-Encoding, Last-Modified,
    /// Content-Length, ETag and `Vary: accept-encoding`.
    pub(crate) headers: HeaderMap,
    /// What a 304 repeats: ETag, Last-Modified and Vary.
    pub(crate) not_modified: HeaderMap,
    pub(crate) etag: Option<HeaderValue>,
    /// The modification time at HTTP-date precision (whole seconds), for
    /// `If-Modified-Since` and `If-Unmodified-Since`; `None` when it cannot be written
    /// as an HTTP date.
    pub(crate) modified: Option<SystemTime>,
}

impl SiteCache {
    pub(crate) fn node(&self, key: &str) -> Option<&Node> {
        self.nodes.get(key)
    }

    /// `404.html` and its twins.
    pub(crate) fn not_found(&self) -> Option<&File> {
        self.not_found.as_deref()
    }

    fn load(root: &Path, file_limit: u64) -> Result<Self, LoadError> {
        let (raw, dirs) = read_tree(root, file_limit)?;
        let mut summary = Summary::default();
        let mut nodes = HashMap::with_capacity(raw.len() + dirs.len());
        for (key, content) in &raw {
            let node = match content {
                Raw::Disk => Node::Disk,
                Raw::Memory { body, modified } => {
                    let twin = |suffix: &str| raw.get(&format!("{key}{suffix}"));
                    match (twin(".gz"), twin(".br")) {
                        (Some(Raw::Disk), _) | (_, Some(Raw::Disk)) => Node::Disk,
                        (gz, br) => Node::File(Arc::new(File::new(
                            key,
                            (body, *modified),
                            gz.and_then(Raw::memory),
                            br.and_then(Raw::memory),
                        ))),
                    }
                }
            };
            match (&node, content) {
                (Node::File(_), Raw::Memory { body, .. }) => {
                    summary.files += 1;
                    summary.bytes += body.len() as u64;
                }
                _ => summary.on_disk += 1,
            }
            nodes.insert(key.as_str().into(), node);
        }
        for dir in dirs {
            let index = match dir.as_str() {
                "" => "index.html".to_owned(),
                dir => format!("{dir}/index.html"),
            };
            let index = nodes.get(index.as_str()).cloned().map(Box::new);
            nodes.insert(dir.into(), Node::Dir(index));
        }
        let not_found = match nodes.get(NOT_FOUND_PAGE) {
            Some(Node::File(page)) => Some(page.clone()),
            _ => None,
        };
        Ok(Self {
            nodes,
            not_found,
            summary,
        })
    }
}

impl File {
    fn new(
        key: &str,
        identity: (&Bytes, Option<SystemTime>),
        gzip: Option<(&Bytes, Option<SystemTime>)>,
        br: Option<(&Bytes, Option<SystemTime>)>,
    ) -> Self {
        // As ServeDir: the type of the path asked for, not of the twin sent.
        let guessed = mime_guess::from_path(key)
            .first_raw()
            .unwrap_or("application/octet-stream");
        let guessed = HeaderValue::from_static(guessed);
        let content_type = file_headers::add_charset(&guessed).unwrap_or(guessed);
        let variant =
            |(body, modified), coding| Variant::new(body, modified, &content_type, coding);
        Self {
            identity: variant(identity, None),
            gzip: gzip.map(|twin| variant(twin, Some("gzip"))),
            br: br.map(|twin| variant(twin, Some("br"))),
            is_html: content_type.as_bytes().starts_with(b"text/html"),
        }
    }
}

impl Variant {
    fn new(
        body: &Bytes,
        modified: Option<SystemTime>,
        content_type: &HeaderValue,
        coding: Option<&'static str>,
    ) -> Self {
        let size = body.len() as u64;
        let (modified, etag) = validators(size, modified, coding);
        let last_modified = modified.map(|at| {
            HeaderValue::from_str(&httpdate::fmt_http_date(at))
                .expect("an HTTP date is a valid header value")
        });
        let vary = HeaderValue::from_static("accept-encoding");

        let mut headers = HeaderMap::with_capacity(8);
        headers.insert(header::CONTENT_TYPE, content_type.clone());
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Some(coding) = coding {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
        }
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        let mut not_modified = HeaderMap::with_capacity(4);
        for (name, value) in [
            (header::LAST_MODIFIED, last_modified),
            (header::ETAG, etag.clone()),
            (header::VARY, Some(vary)),
        ] {
            if let Some(value) = value {
                headers.insert(name.clone(), value.clone());
                not_modified.insert(name, value);
            }
        }
        Self {
            body: body.clone(),
            headers,
            not_modified,
            etag,
            modified,
        }
    }
}

/// The modification time at HTTP-date precision and the ETag of a representation of
/// `size` bytes modified at `modified`, with content coding `coding`: what a file in
/// memory carries, and what `file_response::for_disk` compares `If-Range` with for a
/// file on disk. Neither when the time cannot be written as an HTTP date.
pub(crate) fn validators(
    size: u64,
    modified: Option<SystemTime>,
    coding: Option<&str>,
) -> (Option<SystemTime>, Option<HeaderValue>) {
    let modified = modified.and_then(http_date_precision);
    let etag = modified.and_then(|at| {
        let secs = at.duration_since(UNIX_EPOCH).ok()?.as_secs();
        etag::tag(size, secs, coding)
    });
    (modified, etag)
}

/// `at` truncated to whole seconds, if an HTTP date can express it (1970 to 9999).
fn http_date_precision(at: SystemTime) -> Option<SystemTime> {
    const YEAR_10000: u64 = 253_402_300_800;
    let secs = at.duration_since(UNIX_EPOCH).ok()?.as_secs();
    (secs < YEAR_10000).then(|| UNIX_EPOCH + Duration::from_secs(secs))
}

/// A file as read from disk.
enum Raw {
    Memory {
        body: Bytes,
        modified: Option<SystemTime>,
    },
    Disk,
}

impl Raw {
    fn memory(&self) -> Option<(&Bytes, Option<SystemTime>)> {
        match self {
            Raw::Memory { body, modified } => Some((body, *modified)),
            Raw::Disk => None,
        }
    }
}

/// Every file (sorted by key, so loads are reproducible) and every directory under
/// `root`. Symbolic links are followed, as ServeDir follows them. Names that are not
/// UTF-8 are skipped: no request path can name them. So are sockets, FIFOs and devices.
fn read_tree(
    root: &Path,
    file_limit: u64,
) -> Result<(BTreeMap<String, Raw>, Vec<String>), LoadError> {
    let read_error = |path: &Path| {
        let path = path.to_path_buf();
        move |reason| LoadError::Read { path, reason }
    };
    let mut files = BTreeMap::new();
    let mut dirs = vec![];
    let mut pending = vec![(root.to_path_buf(), String::new(), 0)];
    while let Some((dir, key, depth)) = pending.pop() {
        if depth > MAX_DEPTH {
            return Err(LoadError::TooDeep(dir));
        }
        for entry in fs::read_dir(&dir).map_err(read_error(&dir))? {
            let path = entry.map_err(read_error(&dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                tracing::debug!(path = %path.display(), "skipped: name is not UTF-8");
                continue;
            };
            let child = if key.is_empty() {
                name.to_owned()
            } else {
                format!("{key}/{name}")
            };
            let meta = fs::metadata(&path).map_err(read_error(&path))?;
            if meta.is_dir() {
                pending.push((path, child, depth + 1));
            } else if meta.is_file() {
                let held = meta.len() <= file_limit || page_for_misses(&child);
                let raw = if held {
                    let body = fs::read(&path).map_err(read_error(&path))?;
                    Raw::Memory {
                        body: Bytes::from(body),
                        modified: meta.modified().ok(),
                    }
                } else {
                    Raw::Disk
                };
                files.insert(child, raw);
            }
        }
        dirs.push(key);
    }
    Ok((files, dirs))
}

/// `404.html` and its twins, held whatever their size.
fn page_for_misses(key: &str) -> bool {
    key.strip_prefix(NOT_FOUND_PAGE)
        .is_some_and(|rest| matches!(rest, "" | ".gz" | ".br"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in files {
            let path = dir.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, body).unwrap();
        }
        dir
    }

    fn file(cache: &SiteCache, key: &str) -> Arc<File> {
        match cache.node(key) {
            Some(Node::File(file)) => file.clone(),
            _ => panic!("{key} is not held in memory"),
        }
    }

    #[test]
    fn holds_files_twins_directories_and_headers() {
        let dir = site(&[
            ("index.html", b"<h1>home</h1>"),
            ("index.html.gz", b"gz"),
            ("404.html", b"lost"),
            ("assets/app.js", b"js"),
            ("assets/app.js.br", b"br"),
            ("data.bin", b"\x00\x01"),
        ]);
        let cache = SiteCache::load(dir.path(), DEFAULT_FILE_LIMIT).unwrap();
        assert_eq!(
            cache.summary,
            Summary {
                files: 6,
                bytes: 13 + 2 + 4 + 2 + 2 + 2,
                on_disk: 0
            }
        );
        let index = file(&cache, "index.html");
        assert!(index.is_html && index.gzip.is_some() && index.br.is_none());
        assert_eq!(index.identity.body, &b"<h1>home</h1>"[..]);
        let headers = &index.identity.headers;
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(headers[header::CONTENT_LENGTH], "13");
        assert_eq!(headers[header::VARY], "accept-encoding");
        assert!(headers[header::ETAG].to_str().unwrap().starts_with("\"d-"));
        let gzip = index.gzip.as_ref().unwrap();
        assert_eq!(gzip.headers[header::CONTENT_ENCODING], "gzip");
        assert_eq!(
            gzip.headers[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(gzip
            .etag
            .as_ref()
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("-gzip\""));
        assert!(file(&cache, "assets/app.js").br.is_some());
        assert_eq!(
            file(&cache, "data.bin").identity.headers[header::CONTENT_TYPE],
            "application/octet-stream"
        );
        assert!(matches!(cache.node(""), Some(Node::Dir(Some(_)))));
        assert!(matches!(cache.node("assets"), Some(Node::Dir(None))));
        assert!(cache.not_found().is_some());
        assert!(cache.node("missing").is_none());
    }

    #[test]
    fn files_over_the_limit_stay_on_disk_but_the_404_page_never_does() {
        let dir = site(&[
            ("index.html", b"0123456789"),
            ("small.txt", b"0123"),
            ("twin.txt", b"0123"),
            ("twin.txt.gz", b"0123456789"),
            ("404.html", b"0123456789"),
        ]);
        let cache = SiteCache::load(dir.path(), 4).unwrap();
        assert!(matches!(cache.node("index.html"), Some(Node::Disk)));
        assert!(
            matches!(cache.node(""), Some(Node::Dir(Some(index))) if matches!(**index, Node::Disk))
        );
        assert!(matches!(cache.node("small.txt"), Some(Node::File(_))));
        // A twin over the limit sends the whole file to disk, where ServeDir picks.
        assert!(matches!(cache.node("twin.txt"), Some(Node::Disk)));
        assert!(cache.not_found().is_some());
        assert_eq!(cache.summary.on_disk, 3);
    }

    #[test]
    fn an_unreadable_entry_is_a_clear_error() {
        let dir = site(&[("index.html", b"home")]);
        std::os::unix::fs::symlink("/nonexistent/target", dir.path().join("dangling")).unwrap();
        let error = SiteCache::load(dir.path(), DEFAULT_FILE_LIMIT)
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("cannot read") && error.contains("dangling"),
            "{error}"
        );
    }

    #[test]
    fn a_symlink_loop_is_refused_not_followed_forever() {
        let dir = site(&[("index.html", b"home")]);
        std::os::unix::fs::symlink(dir.path(), dir.path().join("again")).unwrap();
        let error = SiteCache::load(dir.path(), DEFAULT_FILE_LIMIT)
            .err()
            .unwrap();
        assert!(matches!(error, LoadError::TooDeep(_)), "{error}");
    }

    #[test]
    fn reload_swaps_in_new_files_and_keeps_the_old_copy_on_error() {
        let dir = site(&[("index.html", b"home")]);
        let site = Site::load(dir.path(), DEFAULT_FILE_LIMIT).unwrap();
        assert!(site.current().node("new.txt").is_none());
        fs::write(dir.path().join("new.txt"), "new").unwrap();
        assert!(
            site.current().node("new.txt").is_none(),
            "seen before a reload"
        );
        assert_eq!(site.reload().unwrap().files, 2);
        assert!(site.current().node("new.txt").is_some());
        std::os::unix::fs::symlink("/nonexistent", dir.path().join("dangling")).unwrap();
        assert!(site.reload().is_err());
        assert!(site.current().node("new.txt").is_some());
    }

    #[test]
    fn times_an_http_date_cannot_express_give_no_validators() {
        assert_eq!(
            http_date_precision(UNIX_EPOCH - Duration::from_secs(1)),
            None
        );
        assert_eq!(
            http_date_precision(UNIX_EPOCH + Duration::from_millis(1500)),
            Some(UNIX_EPOCH + Duration::from_secs(1))
        );
        let variant = Variant::new(
            &Bytes::from_static(b"x"),
            Some(UNIX_EPOCH - Duration::from_secs(1)),
            &HeaderValue::from_static("text/plain"),
            None,
        );
        assert!(variant.etag.is_none() && variant.modified.is_none());
        assert!(!variant.headers.contains_key(header::LAST_MODIFIED));
    }
}
