//! `lb -t`: the shipped configs pass; each broken config exits 2 naming its field.

mod support;

use std::path::Path;
use std::process::Command;

fn check(path: &Path) -> (i32, String, String) {
    let out = Command::new(support::lb::bin())
        .args(["-t", "-c"])
        .arg(path)
        .output()
        .expect("run lb -t");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check_text(yaml: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("lb.yaml");
    std::fs::write(&path, yaml).expect("write");
    check(&path)
}

fn repo_file(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// A shipped config as `lb -t` can check it on this machine. deploy/lb.yaml keeps its
/// development CA (`local_ca`) under /var/lib/lb/, the lb's state volume in the container,
/// and `lb -t` makes a CA there if there is none: the copy checked here points it into `dir`,
/// so the check writes nothing outside it (and needs no root).
fn checkable(path: &Path, dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(path).expect("read a shipped config");
    if !text.contains("/var/lib/lb/") {
        return path.to_path_buf();
    }
    let copy = dir.join(path.file_name().expect("a file name"));
    let text = text.replace("/var/lib/lb/", &format!("{}/", dir.display()));
    std::fs::write(&copy, text).expect("write the copy");
    copy
}

#[test]
fn shipped_configs_pass() {
    let mut files = vec![
        repo_file("deploy/lb.yaml"),
        repo_file("deploy/lb.swarm.yaml"),
    ];
    for dir in ["deploy/examples", "lb/examples"] {
        if let Ok(entries) = std::fs::read_dir(repo_file(dir)) {
            files.extend(
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml")),
            );
        }
    }
    assert!(
        files.len() >= 3,
        "expected deploy/lb.yaml and examples, got {files:?}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    for f in files {
        let (code, out, err) = check(&checkable(&f, dir.path()));
        assert_eq!(code, 0, "{} failed lb -t:\n{err}", f.display());
        assert!(out.contains("configuration OK"), "{}: {out}", f.display());
    }
}

const GOOD_TAIL: &str = r#"
routes:
  - { prefix: /, upstream: web }
upstreams:
  web: { discovery: { static: ["127.0.0.1:9000"] } }
"#;

#[test]
fn broken_configs_exit_2_naming_the_field() {
    let cases: &[(&str, String, &[&str])] = &[
        (
            "unknown key",
            format!("version: 1\nserver: {{ listen: [\"127.0.0.1:8080\"], colour: blue }}\n{GOOD_TAIL}"),
            &["server", "unknown field `colour`"],
        ),
        (
            "access log flush too long",
            format!("version: 1\nserver: {{ listen: [\"127.0.0.1:8080\"], access_log_flush: 11s }}\n{GOOD_TAIL}"),
            &["server.access_log_flush: \"11s\" is longer than the maximum 10s"],
        ),
        (
            // Parsed, passed, then `Instant::now() + timeouts.read` panicked on every request.
            "a timeout no deadline can hold",
            "version: 1\nroutes: [ { prefix: /, upstream: web } ]\nupstreams:\n  web: { discovery: { static: [\"127.0.0.1:9000\"] }, timeouts: { read: \"10000000000000000000s\" } }\n"
                .to_string(),
            &["upstreams.web.timeouts.read: \"10000000000000000000s\" is longer than the maximum 3600s"],
        ),
        (
            "bad duration",
            r#"version: 1
routes: [ { prefix: /, upstream: api } ]
upstreams:
  api:
    discovery: { static: ["127.0.0.1:1"] }
    health_check: { path: /ready, interval: 5x }
"#
            .to_string(),
            &["upstreams.api.health_check.interval: \"5x\" is not a duration"],
        ),
        (
            "acme without terms, with a wildcard, a bad fraction, URL and e-mail",
            format!(
                "version: 1\nserver:\n  tls_listen:\n    - address: \"127.0.0.1:8443\"\n      certificates:\n        - names: [\"*.a.test\"]\n          acme: {{ directory: \"http://ca.test/dir\", email: nobody, renew_at: 1.5, storage: /tmp/x }}\n{GOOD_TAIL}"
            ),
            &[
                "server.tls_listen[0].certificates[0].names[0]: \"*.a.test\": a wildcard needs a dns-01 challenge",
                "server.tls_listen[0].certificates[0].acme.directory: \"http://ca.test/dir\" is not an https:// URL",
                "server.tls_listen[0].certificates[0].acme.agree_terms: must be `true`",
                "server.tls_listen[0].certificates[0].acme.email: \"nobody\" is not an e-mail address",
                "server.tls_listen[0].certificates[0].acme.renew_at: 1.5 is not a fraction",
            ],
        ),
        (
            "acme without names",
            format!(
                "version: 1\nserver:\n  tls_listen:\n    - address: \"127.0.0.1:8443\"\n      certificates: [ {{ acme: {{ agree_terms: true }} }} ]\n{GOOD_TAIL}"
            ),
            &["server.tls_listen[0].certificates[0].names: required with `acme`"],
        ),
        (
            "unknown upstream in a route",
            "version: 1\nroutes: [ { prefix: /api/, upstream: nope }, { prefix: /, upstream: web } ]\nupstreams:\n  web: { discovery: { static: [\"127.0.0.1:1\"] } }\n".to_string(),
            &["routes[0].upstream", "\"nope\""],
        ),
        (
            "empty pool",
            "version: 1\nroutes: [ { prefix: /, upstream: web } ]\nupstreams:\n  web: { discovery: { static: [] } }\n".to_string(),
            &["upstreams.web.discovery.static", "empty pool"],
        ),
        (
            "zero weight",
            "version: 1\nroutes: [ { prefix: /, upstream: web } ]\nupstreams:\n  web: { discovery: { static: [ { addr: \"127.0.0.1:1\", weight: 0 } ] } }\n".to_string(),
            &["upstreams.web.discovery.static[0].weight", "0"],
        ),
        (
            "duplicate route",
            "version: 1\nroutes: [ { prefix: /, upstream: web }, { prefix: /, upstream: web } ]\nupstreams:\n  web: { discovery: { static: [\"127.0.0.1:1\"] } }\n".to_string(),
            &["routes[1].prefix", "duplicate route \"/\""],
        ),
        (
            "bad address",
            "version: 1\nroutes: [ { prefix: /, upstream: web } ]\nupstreams:\n  web: { discovery: { static: [\"backend:80\"] } }\n".to_string(),
            &["upstreams.web.discovery.static[0]", "\"backend:80\" is not an IP:port"],
        ),
        (
            "bad listen address",
            format!("version: 1\nserver: {{ listen: [\"8080\"] }}\n{GOOD_TAIL}"),
            &["server.listen[0]", "\"8080\""],
        ),
        (
            "invalid YAML",
            "version: 1\nroutes: [ { prefix: /\n".to_string(),
            &["invalid YAML"],
        ),
        (
            "wrong version",
            format!("version: 2\n{GOOD_TAIL}"),
            &["version", "2 is not supported"],
        ),
    ];
    for (name, yaml, needles) in cases {
        let (code, out, err) = check_text(yaml);
        assert_eq!(
            code, 2,
            "{name}: expected exit 2, got {code}\nstdout: {out}\nstderr: {err}"
        );
        for n in *needles {
            assert!(
                err.contains(n),
                "{name}: stderr does not mention {n:?}:\n{err}"
            );
        }
        assert!(!err.contains("panicked"), "{name}: panicked:\n{err}");
    }
}

/// A relative `-c` is made absolute for use (reloads must find it whatever the working
/// directory is), but messages name it as it was given.
#[test]
fn a_relative_config_path_is_named_as_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("lb.yaml"),
        format!("version: 1\n{GOOD_TAIL}"),
    )
    .expect("write");
    let out = Command::new(support::lb::bin())
        .args(["-t", "-c", "lb.yaml"])
        .current_dir(dir.path())
        .output()
        .expect("run lb -t");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "configuration OK: lb.yaml\n"
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn missing_file_exits_2() {
    let (code, _, err) = check(Path::new("/nonexistent/lb.yaml"));
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot read config file /nonexistent/lb.yaml"),
        "{err}"
    );
}

#[test]
fn several_errors_are_reported_together() {
    let yaml = r#"version: 1
server: { grace_period: soon, admin: "localhost:9901" }
routes: [ { prefix: api, upstream: missing } ]
upstreams:
  api:
    discovery: { dns: "backend" }
    retries: 99
    timeouts: { read: 2 }
"#;
    let (code, _, err) = check_text(yaml);
    assert_eq!(code, 2);
    for n in [
        "server.grace_period: \"soon\" is not a duration",
        "server.admin: \"localhost:9901\"",
        "routes[0].prefix",
        "routes[0].upstream",
        "upstreams.api.discovery.dns",
        "upstreams.api.retries: 99 must be at most 8",
        "upstreams.api.timeouts.read: 2 is not a duration",
    ] {
        assert!(err.contains(n), "missing {n:?} in:\n{err}");
    }
}

#[test]
fn healthcheck_fails_when_nothing_listens() {
    let (dead, _held) = support::dead_addr("127.0.0.1");
    let out = Command::new(support::lb::bin())
        .args(["healthcheck", "--url", &format!("http://{dead}/ready")])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
}
