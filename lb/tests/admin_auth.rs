//! The admin API's bearer token (`server.admin_auth`) with the real binary: what needs it,
//! the 401 it answers without, where the token comes from (file, environment, made by the
//! lb), `lb reload` and `lb healthcheck` sending it, and the loopback-only rule.

mod support;

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::{client, Lb, Stub};

const TOKEN: &str = "test-admin-token-0123456789abcdef";

fn body(app: &Stub) -> String {
    format!(
        "routes:\n  - {{ prefix: /, upstream: app }}\nupstreams:\n  app:\n    discovery: {{ static: [\"{}\"] }}\n",
        app.addr
    )
}

/// `server:` lines for a token in `file`; `log_throttle: 1h` keeps one refusal line per
/// client and reason for the whole test.
fn with_file(file: &Path, extra: &str) -> String {
    format!(
        "  log_throttle: 1h\n  admin_auth: {{ token_file: \"{}\"{extra} }}",
        file.display()
    )
}

/// A ready lb whose token is [`TOKEN`] in a file (`extra`: more `admin_auth` keys); keep
/// the stub and the directory for the test's length.
async fn with_token(extra: &str) -> (Lb, Stub, tempfile::TempDir, std::path::PathBuf) {
    let app = Stub::start("app", "127.0.0.1:0").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin-token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let mut lb = Lb::start(&with_file(&file, extra), &body(&app));
    lb.wait_ready().await;
    (lb, app, dir, file)
}

/// One admin request: (status, headers, body).
async fn call(
    lb: &Lb,
    method: &str,
    path: &str,
    auth: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client()
        .request(method, lb.admin_url(path))
        .header("x-request-id", "admin-test-1");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.expect("admin request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.expect("body"))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The refusals and the probes, each path with no token, a wrong one and the right one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_guards_status_reload_and_metrics_not_the_probes() {
    let (lb, _app, _dir, _) = with_token("").await;

    for open in ["/ready", "/health", "/status.html"] {
        assert_eq!(call(&lb, "GET", open, None).await.0, 200, "{open}");
    }
    // The open probe says up or not, and not the pools' names.
    let (_, _, ready) = call(&lb, "GET", "/ready", None).await;
    let ready: serde_json::Value = serde_json::from_str(&ready).expect("JSON");
    assert_eq!(ready, serde_json::json!({"ready": true, "draining": false}));
    let guarded = [("GET", "/status"), ("GET", "/metrics"), ("POST", "/reload")];
    for (method, path) in guarded {
        for (auth, challenge) in [
            (None, r#"Bearer realm="lb admin""#),
            (Some("Basic YWRtaW46YWRtaW4="), r#"Bearer realm="lb admin""#),
            (
                Some("Bearer not-the-token"),
                r#"Bearer realm="lb admin", error="invalid_token""#,
            ),
        ] {
            let (status, headers, text) = call(&lb, method, path, auth).await;
            assert_eq!(status, 401, "{method} {path} {auth:?}: {text}");
            assert_eq!(headers["www-authenticate"], challenge);
            assert_eq!(headers["content-type"], "application/json");
            assert_eq!(headers["x-request-id"], "admin-test-1");
            let json: serde_json::Value = serde_json::from_str(&text).expect("JSON body");
            assert_eq!(
                json,
                serde_json::json!({
                    "error": "a valid admin token is required",
                    "status": 401,
                    "request_id": "admin-test-1",
                })
            );
        }
        let right = bearer(TOKEN);
        let (status, _, text) = call(&lb, method, path, Some(&right)).await;
        assert_eq!(status, 200, "{method} {path}: {text}");
        // The scheme is case-insensitive.
        let lower = format!("bearer {TOKEN}");
        assert_eq!(call(&lb, method, path, Some(&lower)).await.0, 200);
    }

    // Paths no route serves are behind the token too, as a route added later would be:
    // the open paths are the listed ones.
    for path in ["/status/", "//status", "/debug"] {
        assert_eq!(call(&lb, "GET", path, None).await.0, 401, "{path}");
        assert_eq!(
            call(&lb, "GET", path, Some(&bearer(TOKEN))).await.0,
            404,
            "{path}"
        );
    }

    let (_, _, metrics) = call(&lb, "GET", "/metrics", Some(&bearer(TOKEN))).await;
    assert!(
        metrics.contains("lb_admin_auth_failures_total{reason=\"missing\"} 9"),
        "{metrics}"
    );
    assert!(metrics.contains("lb_admin_auth_failures_total{reason=\"invalid\"} 3"));
    // One line per client and reason within the throttle window, and never the token.
    let log = lb.log();
    let refused = log
        .lines()
        .filter(|l| l.contains("\"message\":\"admin request refused: no valid bearer token\""))
        .count();
    assert_eq!(refused, 2, "{log}");
    assert!(!log.contains(TOKEN), "the token is in the log");
    assert!(
        !log.contains("not-the-token"),
        "a presented token is in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_be_left_open_for_a_scraper() {
    let (lb, _app, _dir, _) = with_token(", metrics: false").await;
    assert_eq!(call(&lb, "GET", "/metrics", None).await.0, 200);
    assert_eq!(call(&lb, "GET", "/status", None).await.0, 401);
    assert_eq!(call(&lb, "POST", "/reload", None).await.0, 401);
}

/// `lb reload` and `lb healthcheck` read the token of the same config; the lb reads the
/// file again at a reload, so a new token is taken up by SIGHUP (and not before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lb_reload_sends_the_token_and_a_reload_rotates_it() {
    let (lb, _app, _dir, file) = with_token("").await;

    let run = |args: &[&str]| {
        let out = lb.run_command(args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };
    let (code, text) = run(&["reload"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("configuration reloaded"), "{text}");
    assert_eq!(run(&["healthcheck"]).0, Some(0));

    // A new token in the file: the running lb still has the old one.
    let rotated = "rotated-admin-token-0123456789";
    std::fs::write(&file, rotated).unwrap();
    let (code, text) = run(&["reload"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("answered 401: the running lb does not accept the token"),
        "{text}"
    );
    assert_eq!(
        call(&lb, "GET", "/status", Some(&bearer(TOKEN))).await.0,
        200
    );
    // SIGHUP reloads, which reads the file again.
    lb.signal(Signal::SIGHUP);
    support::eventually(Duration::from_secs(10), "the rotated token", || async {
        call(&lb, "GET", "/status", Some(&bearer(rotated))).await.0 == 200
    })
    .await;
    assert_eq!(
        call(&lb, "GET", "/status", Some(&bearer(TOKEN))).await.0,
        401
    );
    let (_, _, status) = call(&lb, "GET", "/status", Some(&bearer(rotated))).await;
    assert!(
        status.contains("server.admin_auth: token replaced"),
        "the reload's changes: {status}"
    );
    let (code, text) = run(&["reload"]);
    assert_eq!(code, Some(0), "{text}");

    // An unreadable token fails `lb reload` before it sends anything; `lb healthcheck`
    // probes /ready, which needs none.
    std::fs::remove_file(&file).unwrap();
    let (code, text) = run(&["reload"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("cannot read the admin token"), "{text}");
    assert_eq!(run(&["healthcheck"]).0, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_can_come_from_the_environment() {
    let app = Stub::start("app", "127.0.0.1:0").await;
    let server = "  admin_auth: { token_env: LB_TEST_ADMIN_TOKEN }";
    let mut lb = Lb::start_with_env(server, &body(&app), &[], &[("LB_TEST_ADMIN_TOKEN", TOKEN)]);
    lb.wait_ready().await;
    assert_eq!(call(&lb, "GET", "/status", None).await.0, 401);
    assert_eq!(
        call(&lb, "GET", "/status", Some(&bearer(TOKEN))).await.0,
        200
    );
    // `lb reload` runs with the same environment here.
    let out = lb.run_command(&["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `create: true`: a missing token file is made (random, 0600) and used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_token_file_is_made_when_asked() {
    use std::os::unix::fs::PermissionsExt;
    let app = Stub::start("app", "127.0.0.1:0").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state/admin-token");
    let mut lb = Lb::start(&with_file(&file, ", create: true"), &body(&app));
    lb.wait_ready().await;
    let token = std::fs::read_to_string(&file).expect("made");
    let token = token.trim();
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(call(&lb, "GET", "/status", None).await.0, 401);
    assert_eq!(
        call(&lb, "GET", "/status", Some(&bearer(token))).await.0,
        200
    );
    // The start line says where the token is (and never what it is).
    let log = lb.log();
    assert!(
        log.contains(&format!("\"admin_token\":\"{}\"", file.display())),
        "{log}"
    );
    assert!(!log.contains(token));
}

/// Without a token the admin listener stays on loopback, unless the config says otherwise;
/// `lb -t` and a start refuse alike.
#[test]
fn no_token_means_loopback_only() {
    let tail = "routes: [ { prefix: /, upstream: web } ]\nupstreams:\n  web: { discovery: { static: [\"127.0.0.1:9\"] } }\n";
    let open = format!(
        "version: 1\nserver: {{ listen: [\"127.0.0.1:0\"], admin: \"0.0.0.0:0\" }}\n{tail}"
    );
    let (code, out) = support::lb::check_text(&open);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("server.admin: \"0.0.0.0:0\" is not a loopback address and the admin API has no token: set server.admin_auth.token_file or server.admin_auth.token_env"),
        "{out}"
    );
    assert!(
        out.contains("server.admin_auth.allow_unauthenticated: true"),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lb.yaml");
    std::fs::write(&path, &open).unwrap();
    let started = std::process::Command::new(support::lb::bin())
        .arg("-c")
        .arg(&path)
        .output()
        .expect("lb");
    assert_eq!(started.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&started.stderr).contains("is not a loopback address"));

    let allowed = format!(
        "version: 1\nserver: {{ listen: [\"127.0.0.1:0\"], admin: \"0.0.0.0:0\", admin_auth: {{ allow_unauthenticated: true }} }}\n{tail}"
    );
    let (code, out) = support::lb::check_text(&allowed);
    assert_eq!(code, Some(0), "{out}");
    let loopback = format!(
        "version: 1\nserver: {{ listen: [\"127.0.0.1:0\"], admin: \"127.0.0.1:0\" }}\n{tail}"
    );
    assert_eq!(support::lb::check_text(&loopback).0, Some(0));
}

/// A token that cannot be used is a config error with its key, at `lb -t` already.
#[test]
fn a_bad_token_fails_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "short\n").unwrap();
    let tail = "routes: [ { prefix: /, upstream: web } ]\nupstreams:\n  web: { discovery: { static: [\"127.0.0.1:9\"] } }\n";
    let config = |auth: &str| format!("version: 1\nserver: {{ admin_auth: {auth} }}\n{tail}");
    let (code, out) = support::lb::check_text(&config(&format!(
        "{{ token_file: \"{}\" }}",
        file.display()
    )));
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(&format!(
            "server.admin_auth.token_file: the token in {} has 5 characters; use at least 16",
            file.display()
        )),
        "{out}"
    );
    let (code, out) = support::lb::check_text(&config(
        "{ token_env: LB_TEST_ADMIN_TOKEN_THAT_IS_NEVER_SET }",
    ));
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("server.admin_auth.token_env: $LB_TEST_ADMIN_TOKEN_THAT_IS_NEVER_SET is not set (or empty) in the lb's environment"),
        "{out}"
    );
}
