//! The admin API's bearer token (`server.admin_auth`), read at every load (`lb -t`, start,
//! reload): a reload picks up a rotated token, and a bad one rejects the reload, keeping the
//! previous token.
//!
//! - `token_env`: the variable, when set and not empty, wins;
//! - else `token_file`, e.g. a compose secret under `/run/secrets`;
//! - with `create: true`, a missing `token_file` is made: 32 random bytes in hex, mode
//!   0600, published with a hard link (atomic and exclusive: a process that loses the race
//!   reads the winner's), so `docker compose up` works with nothing generated first.
//!
//! Surrounding whitespace (the newline `echo` and editors add) is not part of the token.
//! The lb keeps only the token's SHA-256 and compares digests in constant time; the token
//! is never logged. `lb reload` and `lb healthcheck` read it the same way ([`for_client`]),
//! but never create it.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use subtle::ConstantTimeEq;

use super::raw::RawAdminAuth;
use super::{AdminAuth, ConfigError};

/// Shorter tokens can be guessed; `openssl rand -hex 32` gives 64 characters.
const MIN_LEN: usize = 16;
/// More than any generator makes; keeps a wrong file (a certificate, a log) out of headers.
const MAX_LEN: usize = 1024;
/// Random bytes in a token the lb makes (256 bits).
const CREATED_BYTES: usize = 32;

const FILE_KEY: &str = "server.admin_auth.token_file";
const ENV_KEY: &str = "server.admin_auth.token_env";

/// A loaded token: its SHA-256 only.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct AdminToken {
    /// `PartialEq` on it only tells a reload that the token changed; requests go through
    /// [`AdminToken::matches`].
    digest: [u8; 32],
}

impl AdminToken {
    pub(crate) fn new(token: &str) -> Self {
        Self {
            digest: digest(token.as_bytes()),
        }
    }

    /// Whether `presented` is the token, in constant time: digests of equal length are
    /// compared with `subtle`, so neither the token's bytes nor its length leak through
    /// the time the answer takes.
    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        digest(presented).ct_eq(&self.digest).into()
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// The token `auth` configures, made first when missing and `create: true`; `None` when
/// `auth` configures none.
pub(crate) fn load(auth: &AdminAuth) -> Result<Option<AdminToken>, ConfigError> {
    Ok(read(auth, auth.create, env)?.map(|t| AdminToken::new(&t)))
}

/// The process environment (tests pass their own, and never change the process's).
fn env(var: &str) -> Result<String, std::env::VarError> {
    std::env::var(var)
}

/// The token `lb reload` and `lb healthcheck` send to the lb configured by `conf`: read the
/// way the lb reads it, from `server.admin_auth` alone (so a file that is otherwise invalid
/// still works), never created. `Ok(None)`: no token is configured, or the file cannot be
/// read as YAML (the admin address falls back to its default then, too).
pub(crate) fn for_client(conf: &Path) -> Result<Option<String>, String> {
    let Some(Some(value)) = super::server_value(conf, "admin_auth") else {
        return Ok(None);
    };
    let raw: RawAdminAuth =
        serde_yaml::from_value(value).map_err(|e| format!("server.admin_auth: {e}"))?;
    let auth = AdminAuth {
        token_env: raw.token_env,
        token_file: raw.token_file,
        ..AdminAuth::default()
    };
    read(&auth, false, env).map_err(|e| e.to_string())
}

/// The token text; `create`: make `token_file` when it is missing.
fn read(
    auth: &AdminAuth,
    create: bool,
    env: impl Fn(&str) -> Result<String, std::env::VarError>,
) -> Result<Option<String>, ConfigError> {
    if let Some(var) = &auth.token_env {
        match env(var) {
            Ok(v) if !v.trim().is_empty() => {
                return valid(&v, ENV_KEY, &format!("${var}")).map(Some)
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(ConfigError::new(ENV_KEY, format!("${var} is not UTF-8")))
            }
            // Unset or empty: token_file then, if there is one.
            _ if auth.token_file.is_some() => {}
            _ => {
                return Err(ConfigError::new(
                    ENV_KEY,
                    format!("${var} is not set (or empty) in the lb's environment"),
                ))
            }
        }
    }
    let Some(file) = &auth.token_file else {
        return Ok(None);
    };
    match fs::read_to_string(file) {
        Ok(text) => valid(&text, FILE_KEY, file).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => make(Path::new(file)),
        Err(e) => Err(ConfigError::new(
            FILE_KEY,
            format!("cannot read {file}: {e}"),
        )),
    }
}

/// The token in `text` (from `source`), trimmed; it must be able to travel in a header.
fn valid(text: &str, key: &str, source: &str) -> Result<String, ConfigError> {
    let token = text.trim();
    let problem = if token.len() < MIN_LEN {
        format!(
            "the token in {source} has {} characters; use at least {MIN_LEN} (e.g. `openssl rand -hex 32`)",
            token.len()
        )
    } else if token.len() > MAX_LEN {
        format!("the token in {source} is longer than {MAX_LEN} characters")
    } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
        format!("the token in {source} has characters other than printable ASCII (no spaces), which a header cannot carry")
    } else {
        return Ok(token.to_string());
    };
    Err(ConfigError::new(key, problem))
}

/// Make a token in `path` (its directory too, mode 0700, when missing) and return it.
fn make(path: &Path) -> Result<Option<String>, ConfigError> {
    let error = |what: String| ConfigError::new(FILE_KEY, what);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| error(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut bytes = [0u8; CREATED_BYTES];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| error("no random bytes from the operating system".to_string()))?;
    let token = super::hex(&bytes);
    let name = path
        .file_name()
        .map_or_else(|| "token".into(), |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    super::local_ca::write_new(&tmp, format!("{token}\n").as_bytes(), 0o600).map_err(error)?;
    let published = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match published {
        // At start-up this comes before logging is set up; the `lb starting` line names
        // the file then.
        Ok(()) => {
            tracing::info!(
                file = %path.display(),
                "made an admin token (read it from this file to call the admin API)"
            );
            Ok(Some(token))
        }
        // Another process made one first: use it.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = fs::read_to_string(path)
                .map_err(|e| error(format!("cannot read {}: {e}", path.display())))?;
            valid(&text, FILE_KEY, &path.display().to_string()).map(Some)
        }
        Err(e) => Err(error(format!("cannot write {}: {e}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    fn file_auth(path: &Path, create: bool) -> AdminAuth {
        AdminAuth {
            token_file: Some(path.display().to_string()),
            create,
            ..AdminAuth::default()
        }
    }

    #[test]
    fn matches_only_the_token() {
        let t = AdminToken::new(TOKEN);
        assert!(t.matches(TOKEN.as_bytes()));
        assert!(!t.matches(b"0123456789abcdef-tokeN"));
        assert!(!t.matches(b"0123456789abcdef-token "));
        assert!(!t.matches(b""));
        assert_eq!(format!("{t:?}"), "AdminToken(..)", "never shown");
    }

    #[test]
    fn a_file_is_read_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        fs::write(&path, format!("  {TOKEN}\n")).unwrap();
        let token = load(&file_auth(&path, false)).unwrap().unwrap();
        assert!(token.matches(TOKEN.as_bytes()));
    }

    #[test]
    fn no_source_no_token() {
        assert_eq!(load(&AdminAuth::default()), Ok(None));
    }

    #[test]
    fn a_missing_file_is_an_error_unless_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/token");
        let err = load(&file_auth(&path, false)).unwrap_err();
        assert_eq!(err.path, FILE_KEY);
        assert!(err.message.starts_with("cannot read"), "{err}");
        assert!(!path.exists());

        let made = load(&file_auth(&path, true)).unwrap().unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 2 * CREATED_BYTES + 1, "{text:?}");
        assert!(made.matches(text.trim().as_bytes()));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("sub")), 0o700);
        // The next load reads the same token; nothing else is left in the directory.
        assert_eq!(load(&file_auth(&path, true)).unwrap(), Some(made));
        assert_eq!(fs::read_dir(dir.path().join("sub")).unwrap().count(), 1);
    }

    #[test]
    fn bad_tokens_are_named_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        for (text, problem) in [
            ("short\n", "has 5 characters; use at least 16"),
            ("", "has 0 characters"),
            ("two words in one token", "other than printable ASCII"),
            ("0123456789abcdefé", "other than printable ASCII"),
        ] {
            fs::write(&path, text).unwrap();
            let err = load(&file_auth(&path, true)).unwrap_err();
            assert_eq!(err.path, FILE_KEY);
            assert!(err.message.contains(problem), "{text:?}: {err}");
            assert!(
                text.trim().is_empty() || !err.message.contains(text.trim()),
                "{err}"
            );
        }
        fs::write(&path, "x".repeat(MAX_LEN + 1)).unwrap();
        assert!(load(&file_auth(&path, false))
            .unwrap_err()
            .message
            .contains("longer than 1024"));
    }

    #[test]
    fn the_environment_wins_over_the_file_when_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        fs::write(&path, "from-the-file-0123456789").unwrap();
        let auth = AdminAuth {
            token_env: Some("LB_ADMIN_TOKEN".into()),
            ..file_auth(&path, false)
        };
        let with = |value: Option<&'static str>| {
            move |var: &str| {
                assert_eq!(var, "LB_ADMIN_TOKEN");
                value
                    .map(String::from)
                    .ok_or(std::env::VarError::NotPresent)
            }
        };
        let token = |auth: &AdminAuth, value| read(auth, false, with(value));
        assert_eq!(
            token(&auth, None).unwrap().as_deref(),
            Some("from-the-file-0123456789")
        );
        assert_eq!(
            token(&auth, Some("")).unwrap().as_deref(),
            Some("from-the-file-0123456789")
        );
        assert_eq!(
            token(&auth, Some("from-the-environment-0123\n"))
                .unwrap()
                .as_deref(),
            Some("from-the-environment-0123")
        );
        let env_only = AdminAuth {
            token_file: None,
            ..auth
        };
        assert!(token(&env_only, Some("from-the-environment-0123")).is_ok());
        for unset in [None, Some(" ")] {
            assert_eq!(
                token(&env_only, unset).unwrap_err().to_string(),
                format!("{ENV_KEY}: $LB_ADMIN_TOKEN is not set (or empty) in the lb's environment")
            );
        }
        assert!(token(&env_only, Some("short"))
            .unwrap_err()
            .to_string()
            .starts_with(&format!(
                "{ENV_KEY}: the token in $LB_ADMIN_TOKEN has 5 characters"
            )));
    }

    #[test]
    fn the_client_reads_the_token_from_a_broken_file() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        let conf = dir.path().join("lb.yaml");
        let write = |text: String| fs::write(&conf, text).unwrap();
        write(format!(
            "version: 7\nserver: {{ threads: lots, admin_auth: {{ token_file: {}, create: true }} }}\n",
            token.display()
        ));
        // Never created by a client.
        assert!(for_client(&conf).unwrap_err().contains("cannot read"));
        assert!(!token.exists());
        fs::write(&token, format!("{TOKEN}\n")).unwrap();
        assert_eq!(for_client(&conf).unwrap().as_deref(), Some(TOKEN));
        write("version: 1\nserver: { admin: \"127.0.0.1:1\" }\n".into());
        assert_eq!(for_client(&conf), Ok(None));
        write("server: { admin_auth: { token_fil: x } }\n".into());
        assert!(for_client(&conf)
            .unwrap_err()
            .starts_with("server.admin_auth: unknown field `token_fil`"));
        assert_eq!(for_client(&dir.path().join("missing.yaml")), Ok(None));
    }
}
