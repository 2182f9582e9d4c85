//! The site held in memory (`site_cache`, `site_service`): it answers every request as
//! the disk path (ServeDir with the old middlewares, still used for files over
//! `--cache-file-limit`) answers it, and the behaviours it re-implements are pinned here.

use std::{fs, path::Path};

use axum::{body::Body, Router};
use clap::Parser;
use frontend::{app, cli::Cli, AppState};
use http::{header, HeaderMap, HeaderName, Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

const SITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/site");

fn router(root: &str, flags: &[&str]) -> Router {
    let base = ["frontend", "--root", root];
    let args = base.iter().chain(flags);
    app(AppState::new(&Cli::parse_from(args).serve).unwrap())
}

/// The shipped site from memory (the default limit holds every file).
fn memory() -> Router {
    router(SITE, &[])
}

/// The shipped site from disk: every file is over a zero limit (but `404.html`).
fn disk() -> Router {
    router(SITE, &["--cache-file-limit", "0"])
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: HeaderName) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

async fn send(router: &Router, method: Method, uri: &str, headers: &[(HeaderName, &str)]) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let mut headers = parts.headers;
    // Differs on every response by design.
    headers.remove("x-request-id");
    Reply {
        status: parts.status,
        headers,
        body: body.collect().await.unwrap().to_bytes().to_vec(),
    }
}

async fn get(router: &Router, uri: &str, headers: &[(HeaderName, &str)]) -> Reply {
    send(router, Method::GET, uri, headers).await
}

fn file(path: &str) -> Vec<u8> {
    fs::read(Path::new(SITE).join(path)).unwrap()
}

#[tokio::test]
async fn memory_and_disk_answer_alike() {
    let (memory, disk) = (memory(), disk());
    let tag = get(&memory, "/assets/app.js", &[]).await;
    let tag = tag.header(header::ETAG).unwrap().to_owned();
    let gzip_tag = get(&memory, "/", &[(header::ACCEPT_ENCODING, "gzip")]).await;
    let gzip_tag = gzip_tag.header(header::ETAG).unwrap().to_owned();
    let last_modified = get(&memory, "/", &[]).await;
    let last_modified = last_modified
        .header(header::LAST_MODIFIED)
        .unwrap()
        .to_owned();
    let weak_tag = format!("W/{tag}");
    let paths = [
        "/",
        "/index.html",
        "/assets/app.js",
        "/assets/site.css?v=1",
        "/favicon.svg",
        "/404.html",
        "/index.html.gz",
        "/index.html/",
        "//index.html",
        "/./assets//app.js",
        "/assets%2fapp.js",
        "/%2fassets/app.js",
        "/nope",
        "/assets/",
        "/a%20b",
    ];
    let gzip = (header::ACCEPT_ENCODING, "gzip");
    let header_sets: Vec<Vec<(HeaderName, &str)>> = vec![
        vec![],
        vec![gzip.clone()],
        vec![(header::ACCEPT_ENCODING, "br;q=1, gzip;q=0.5")],
        vec![(header::ACCEPT_ENCODING, "gzip;q=0")],
        vec![(header::RANGE, "bytes=0-9")],
        vec![(header::RANGE, "bytes=-5")],
        vec![(header::RANGE, "bytes=0-9"), gzip.clone()],
        vec![(header::RANGE, "Bytes=0-9")],
        vec![(header::RANGE, "bytes=-100000")],
        vec![(header::RANGE, "bytes=-100000"), gzip.clone()],
        vec![(header::RANGE, "bytes=-0")],
        vec![(header::RANGE, "bytes=9-1")],
        vec![(header::RANGE, "bytes=9-1"), gzip.clone()],
        vec![(header::RANGE, "items=0-5")],
        vec![(header::RANGE, "bytes=0-1,4-5")],
        vec![(header::RANGE, "bytes=100000-200000,300000-")],
        vec![(header::RANGE, "bytes=100000-")],
        vec![(header::RANGE, "bytes=0-9"), (header::IF_RANGE, "\"old\"")],
        vec![(header::RANGE, "bytes=0-9"), (header::IF_RANGE, &tag)],
        vec![(header::RANGE, "bytes=0-9"), (header::IF_RANGE, &weak_tag)],
        vec![
            (header::RANGE, "bytes=0-9"),
            (header::IF_RANGE, &last_modified),
        ],
        vec![(header::IF_MODIFIED_SINCE, "Fri, 01 Jan 2100 00:00:00 GMT")],
        vec![(header::IF_MODIFIED_SINCE, "Thu, 01 Jan 1998 00:00:00 GMT")],
        vec![(header::IF_MODIFIED_SINCE, &last_modified), gzip.clone()],
        vec![(header::IF_UNMODIFIED_SINCE, "Thu, 01 Jan 1998 00:00:00 GMT")],
        vec![(header::IF_UNMODIFIED_SINCE, "Fri, 01 Jan 2100 00:00:00 GMT")],
        vec![(header::IF_NONE_MATCH, "*")],
        vec![(header::IF_NONE_MATCH, &tag)],
        vec![(header::IF_NONE_MATCH, &gzip_tag), gzip.clone()],
        vec![
            (header::IF_NONE_MATCH, "\"other\""),
            (header::IF_MODIFIED_SINCE, "Fri, 01 Jan 2100 00:00:00 GMT"),
        ],
        vec![(header::IF_NONE_MATCH, "*"), (header::RANGE, "bytes=0-9")],
    ];
    let mut compared = 0;
    for method in [Method::GET, Method::HEAD] {
        for path in paths {
            for headers in &header_sets {
                let from_memory = send(&memory, method.clone(), path, headers).await;
                let from_disk = send(&disk, method.clone(), path, headers).await;
                let case = format!("{method} {path} {headers:?}");
                assert_eq!(from_memory.status, from_disk.status, "{case}");
                assert_eq!(from_memory.headers, from_disk.headers, "{case}");
                assert_eq!(from_memory.body, from_disk.body, "{case}");
                if method == Method::HEAD {
                    assert!(from_memory.body.is_empty(), "{case}");
                }
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 2 * paths.len() * header_sets.len());
}

#[tokio::test]
async fn identity_and_gzip_bodies_with_their_own_validators() {
    let router = memory();
    let identity = get(&router, "/assets/site.css", &[]).await;
    let gzip = get(
        &router,
        "/assets/site.css",
        &[(header::ACCEPT_ENCODING, "gzip")],
    )
    .await;
    assert_eq!(identity.body, file("assets/site.css"));
    assert_eq!(gzip.body, file("assets/site.css.gz"));
    assert_eq!(gzip.header(header::CONTENT_ENCODING), Some("gzip"));
    assert_eq!(identity.header(header::CONTENT_ENCODING), None);
    for reply in [&identity, &gzip] {
        assert_eq!(reply.header(header::VARY), Some("accept-encoding"));
        assert_eq!(reply.header(header::ACCEPT_RANGES), Some("bytes"));
        assert_eq!(
            reply.header(header::CONTENT_TYPE),
            Some("text/css; charset=utf-8")
        );
        let length = reply.body.len().to_string();
        assert_eq!(reply.header(header::CONTENT_LENGTH), Some(length.as_str()));
    }
    // Each representation has its own tag: size, modification time, coding.
    let (identity_tag, gzip_tag) = (
        identity.header(header::ETAG).unwrap(),
        gzip.header(header::ETAG).unwrap(),
    );
    assert_ne!(identity_tag, gzip_tag);
    assert!(gzip_tag.ends_with("-gzip\""), "{gzip_tag}");
    let size = format!("\"{:x}-", file("assets/site.css").len());
    assert!(identity_tag.starts_with(&size), "{identity_tag}");
    // A tag revalidates only its own representation.
    let other = get(
        &router,
        "/assets/site.css",
        &[
            (header::IF_NONE_MATCH, identity_tag),
            (header::ACCEPT_ENCODING, "gzip"),
        ],
    )
    .await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.body, file("assets/site.css.gz"));
}

#[tokio::test]
async fn ranges_are_cut_from_the_identity_body() {
    let router = memory();
    let whole = file("assets/app.js");
    let identity_tag = get(&router, "/assets/app.js", &[]).await;
    let identity_tag = identity_tag.header(header::ETAG).unwrap().to_owned();
    let part = get(
        &router,
        "/assets/app.js",
        &[
            (header::RANGE, "bytes=-10"),
            (header::ACCEPT_ENCODING, "gzip"),
        ],
    )
    .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body, whole[whole.len() - 10..]);
    assert_eq!(part.header(header::CONTENT_ENCODING), None);
    assert_eq!(part.header(header::CONTENT_LENGTH), Some("10"));
    let range = format!(
        "bytes {}-{}/{}",
        whole.len() - 10,
        whole.len() - 1,
        whole.len()
    );
    assert_eq!(part.header(header::CONTENT_RANGE), Some(range.as_str()));
    assert_eq!(part.header(header::ETAG), Some(identity_tag.as_str()));
    assert_eq!(part.header(header::VARY), Some("accept-encoding"));

    // A 416 is about the identity body too.
    let beyond = get(
        &router,
        "/assets/app.js",
        &[
            (header::RANGE, "bytes=100000-"),
            (header::ACCEPT_ENCODING, "gzip"),
        ],
    )
    .await;
    assert_eq!(beyond.status, StatusCode::RANGE_NOT_SATISFIABLE);
    let unsatisfied = format!("bytes */{}", whole.len());
    assert_eq!(
        beyond.header(header::CONTENT_RANGE),
        Some(unsatisfied.as_str())
    );
    assert_eq!(beyond.header(header::CONTENT_ENCODING), None);
    assert_eq!(beyond.header(header::CACHE_CONTROL), Some("no-cache"));
    assert_eq!(beyond.header(header::ETAG), None);
    assert!(beyond.body.is_empty());
}

/// A site with an empty file (kept on disk by a twin over the limit when `limit` is 0)
/// and a 100-byte one.
fn range_site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["index.html", "404.html"] {
        fs::copy(Path::new(SITE).join(name), dir.path().join(name)).unwrap();
    }
    fs::write(dir.path().join("empty.txt"), "").unwrap();
    fs::write(dir.path().join("empty.txt.gz"), "twin").unwrap();
    let digits: String = (0..100).map(|i| char::from(b'0' + i % 10)).collect();
    fs::write(dir.path().join("data.txt"), digits).unwrap();
    dir
}

type Headers<'a> = Vec<(HeaderName, &'a str)>;
/// The status and `Content-Range`.
type Expected = (StatusCode, Option<&'static str>);

/// RFC 9110 §14: ranges to ignore give the whole file (200), a suffix longer than the
/// file is all of it (206), 416 only for valid ranges outside the file; `If-Range`
/// holds for the strong ETag or the exact date. From memory and from disk alike.
#[tokio::test]
async fn ranges_follow_rfc_9110_from_memory_and_from_disk() {
    let dir = range_site();
    let root = dir.path().to_str().unwrap();
    let (memory, disk) = (
        router(root, &[]),
        router(root, &["--cache-file-limit", "0"]),
    );
    let data = fs::read(dir.path().join("data.txt")).unwrap();
    let first = get(&memory, "/data.txt", &[]).await;
    let tag = first.header(header::ETAG).unwrap().to_owned();
    let date = first.header(header::LAST_MODIFIED).unwrap().to_owned();
    let weak = format!("W/{tag}");
    let old_date = "Thu, 01 Jan 1998 00:00:00 GMT";
    let whole = (StatusCode::OK, None);
    let part = |range: &'static str| (StatusCode::PARTIAL_CONTENT, Some(range));
    let refused = |range: &'static str| (StatusCode::RANGE_NOT_SATISFIABLE, Some(range));
    let cases: Vec<(&str, Headers, Expected)> = vec![
        (
            "/data.txt",
            vec![(header::RANGE, "bytes=0-9")],
            part("bytes 0-9/100"),
        ),
        (
            "/data.txt",
            vec![(header::RANGE, "Bytes=0-9")],
            part("bytes 0-9/100"),
        ),
        (
            "/data.txt",
            vec![(header::RANGE, "bytes=-100000")],
            part("bytes 0-99/100"),
        ),
        (
            "/data.txt",
            vec![(header::RANGE, "bytes=95-200")],
            part("bytes 95-99/100"),
        ),
        ("/data.txt", vec![(header::RANGE, "items=0-5")], whole),
        ("/data.txt", vec![(header::RANGE, "bytes=9-1")], whole),
        ("/data.txt", vec![(header::RANGE, "bytes=x-y")], whole),
        ("/data.txt", vec![(header::RANGE, "bytes=0-1,4-5")], whole),
        (
            "/data.txt",
            vec![(header::RANGE, "bytes=100-")],
            refused("bytes */100"),
        ),
        (
            "/data.txt",
            vec![(header::RANGE, "bytes=-0")],
            refused("bytes */100"),
        ),
        (
            "/data.txt",
            vec![(header::RANGE, "bytes=200-300,100-")],
            refused("bytes */100"),
        ),
        (
            "/empty.txt",
            vec![(header::RANGE, "bytes=0-")],
            refused("bytes */0"),
        ),
        ("/empty.txt", vec![(header::RANGE, "bytes=-5")], whole),
        (
            "/data.txt",
            vec![(header::RANGE, "bytes=0-9"), (header::IF_RANGE, &tag)],
            part("bytes 0-9/100"),
        ),
        (
            "/data.txt",
            vec![(header::RANGE, "bytes=0-9"), (header::IF_RANGE, &date)],
            part("bytes 0-9/100"),
        ),
        (
            "/data.txt",
            vec![(header::RANGE, "bytes=0-9"), (header::IF_RANGE, &weak)],
            whole,
        ),
        (
            "/data.txt",
            vec![(header::RANGE, "bytes=0-9"), (header::IF_RANGE, old_date)],
            whole,
        ),
        (
            "/data.txt",
            vec![(header::RANGE, "bytes=0-9"), (header::IF_RANGE, "\"old\"")],
            whole,
        ),
    ];
    for (path, headers, (status, content_range)) in &cases {
        let from_memory = get(&memory, path, headers).await;
        let from_disk = get(&disk, path, headers).await;
        let case = format!("{path} {headers:?}");
        assert_eq!(from_memory.status, *status, "{case}");
        assert_eq!(
            from_memory.header(header::CONTENT_RANGE),
            *content_range,
            "{case}"
        );
        let expected_body = if *path == "/empty.txt" || *status != StatusCode::PARTIAL_CONTENT {
            match *status == StatusCode::OK && *path == "/data.txt" {
                true => &data[..],
                false => &[][..],
            }
        } else {
            // "bytes START-END/100"
            let range = content_range.unwrap();
            let (start, end) = range[6..range.find('/').unwrap()].split_once('-').unwrap();
            &data[start.parse::<usize>().unwrap()..=end.parse::<usize>().unwrap()]
        };
        assert_eq!(from_memory.body, expected_body, "{case}");
        assert_eq!(from_memory.status, from_disk.status, "{case}");
        assert_eq!(from_memory.headers, from_disk.headers, "{case}");
        assert_eq!(from_memory.body, from_disk.body, "{case}");
    }
}

/// RFC 9110 §13.1.4: without a usable modification time, `If-Unmodified-Since` is
/// ignored (it used to give 412 whatever the date).
#[tokio::test]
async fn if_unmodified_since_is_ignored_without_a_modification_time() {
    let dir = range_site();
    let path = dir.path().join("data.txt");
    let before_1970 = std::time::UNIX_EPOCH - std::time::Duration::from_secs(86_400);
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(before_1970)
        .unwrap();
    let memory = router(dir.path().to_str().unwrap(), &[]);
    let first = get(&memory, "/data.txt", &[]).await;
    assert_eq!(first.header(header::LAST_MODIFIED), None);
    assert_eq!(first.header(header::ETAG), None);
    for since in [
        "Thu, 01 Jan 1998 00:00:00 GMT",
        "Fri, 01 Jan 2100 00:00:00 GMT",
    ] {
        let reply = get(
            &memory,
            "/data.txt",
            &[(header::IF_UNMODIFIED_SINCE, since)],
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{since}");
        assert_eq!(reply.body, fs::read(&path).unwrap());
    }
}

#[tokio::test]
async fn validators_304_and_412() {
    let router = memory();
    let first = get(&router, "/favicon.svg", &[]).await;
    let last_modified = first.header(header::LAST_MODIFIED).unwrap();
    let etag = first.header(header::ETAG).unwrap();
    // If-Modified-Since alone: the 304 repeats what a cache needs, as for If-None-Match.
    for headers in [
        [(header::IF_MODIFIED_SINCE, last_modified)],
        [(header::IF_NONE_MATCH, etag)],
    ] {
        let reply = get(&router, "/favicon.svg", &headers).await;
        assert_eq!(reply.status, StatusCode::NOT_MODIFIED, "{headers:?}");
        assert!(reply.body.is_empty());
        assert_eq!(reply.header(header::ETAG), Some(etag));
        assert_eq!(reply.header(header::LAST_MODIFIED), Some(last_modified));
        assert_eq!(reply.header(header::VARY), Some("accept-encoding"));
        assert_eq!(
            reply.header(header::CACHE_CONTROL),
            Some("public, max-age=3600")
        );
        assert_eq!(reply.header(header::CONTENT_TYPE), None);
    }
    let old = "Thu, 01 Jan 1998 00:00:00 GMT";
    let failed = get(
        &router,
        "/favicon.svg",
        &[(header::IF_UNMODIFIED_SINCE, old)],
    )
    .await;
    assert_eq!(failed.status, StatusCode::PRECONDITION_FAILED);
    assert!(failed.body.is_empty());
    let passed = get(
        &router,
        "/favicon.svg",
        &[(header::IF_UNMODIFIED_SINCE, last_modified)],
    )
    .await;
    assert_eq!(passed.status, StatusCode::OK);
}

#[tokio::test]
async fn directories_redirect_and_serve_their_index() {
    let router = memory();
    let redirect = get(&router, "/assets?x=1", &[]).await;
    assert_eq!(redirect.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(redirect.header(header::LOCATION), Some("/assets/?x=1"));
    assert_eq!(redirect.header(header::CACHE_CONTROL), Some("no-cache"));
    assert!(redirect.header(header::CONTENT_SECURITY_POLICY).is_some());
    // Not `//assets/`, a protocol-relative URL: the host `assets`.
    for uri in ["//assets", "///assets", "/.//assets"] {
        let redirect = get(&router, uri, &[]).await;
        assert_eq!(redirect.status, StatusCode::TEMPORARY_REDIRECT, "{uri}");
        assert_eq!(redirect.header(header::LOCATION), Some("/assets/"), "{uri}");
    }
    // No index.html there: the 404 page.
    assert_eq!(
        get(&router, "/assets/", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get(&router, "/", &[]).await.body, file("index.html"));
    // Percent-decoded once, as ServeDir does.
    assert_eq!(
        get(&router, "/assets%2fapp.js", &[]).await.body,
        file("assets/app.js")
    );
    assert_eq!(
        get(&router, "/%2fassets/app.js", &[]).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_404_page_follows_accept_encoding_and_says_so() {
    let router = memory();
    let gzip = get(&router, "/nope", &[(header::ACCEPT_ENCODING, "gzip")]).await;
    assert_eq!(gzip.status, StatusCode::NOT_FOUND);
    assert_eq!(gzip.body, file("404.html.gz"));
    assert_eq!(gzip.header(header::CONTENT_ENCODING), Some("gzip"));
    assert_eq!(gzip.header(header::VARY), Some("accept-encoding"));
    let head = send(&router, Method::HEAD, "/nope", &[]).await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    assert!(head.body.is_empty());
    let length = file("404.html").len().to_string();
    assert_eq!(head.header(header::CONTENT_LENGTH), Some(length.as_str()));
}

#[tokio::test]
async fn other_methods_on_files_get_405_not_cached() {
    let reply = send(&memory(), Method::PUT, "/assets/app.js", &[]).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.header(header::ALLOW), Some("GET,HEAD"));
    assert_eq!(reply.header(header::CACHE_CONTROL), Some("no-cache"));
    assert!(reply.body.is_empty());
}

/// A site with a 1 MiB file, like the benchmark's copy.
fn big_site() -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    for name in ["index.html", "404.html"] {
        fs::copy(Path::new(SITE).join(name), dir.path().join(name)).unwrap();
    }
    let big: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(dir.path().join("bench-1mb.bin"), &big).unwrap();
    (dir, big)
}

#[tokio::test]
async fn a_large_file_is_served_from_memory_or_disk_alike() {
    let (dir, big) = big_site();
    let root = dir.path().to_str().unwrap();
    let in_memory = router(root, &[]);
    let on_disk = router(root, &["--cache-file-limit", "512KiB"]);
    for router in [&in_memory, &on_disk] {
        let whole = get(
            router,
            "/bench-1mb.bin",
            &[(header::ACCEPT_ENCODING, "gzip")],
        )
        .await;
        assert_eq!(whole.status, StatusCode::OK);
        assert!(whole.body == big, "body differs");
        assert_eq!(whole.header(header::CONTENT_LENGTH), Some("1048576"));
        assert_eq!(
            whole.header(header::CONTENT_TYPE),
            Some("application/octet-stream")
        );
        assert_eq!(
            whole.header(header::CACHE_CONTROL),
            Some("public, max-age=3600")
        );
        let part = get(
            router,
            "/bench-1mb.bin",
            &[(header::RANGE, "bytes=1048570-")],
        )
        .await;
        assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(part.body, big[1_048_570..]);
    }
    let memory_tag = get(&in_memory, "/bench-1mb.bin", &[]).await;
    let disk_tag = get(&on_disk, "/bench-1mb.bin", &[]).await;
    assert_eq!(memory_tag.headers, disk_tag.headers);
}

#[tokio::test]
async fn files_added_after_start_wait_for_a_reload() {
    let (dir, _) = big_site();
    let state =
        AppState::new(&Cli::parse_from(["frontend", "--root", dir.path().to_str().unwrap()]).serve)
            .unwrap();
    let router = app(state.clone());
    fs::write(dir.path().join("new.txt"), "new").unwrap();
    fs::write(dir.path().join("index.html"), "changed").unwrap();
    assert_eq!(
        get(&router, "/new.txt", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(get(&router, "/", &[]).await.body, file("index.html"));
    let summary = state.site.reload().unwrap();
    assert_eq!((summary.files, summary.on_disk), (4, 0));
    assert_eq!(get(&router, "/new.txt", &[]).await.body, b"new");
    assert_eq!(get(&router, "/", &[]).await.body, b"changed");
}

#[tokio::test]
async fn only_requests_that_wait_can_time_out() {
    // A zero timeout. An answer from memory is ready at once and never times out.
    let flags = ["--request-timeout", "0s", "--cache-file-limit", "0"];
    let router = router(SITE, &flags);
    for _ in 0..20 {
        let from_memory = get(&router, "/404.html", &[]).await;
        assert_eq!(from_memory.status, StatusCode::OK);
        assert_eq!(from_memory.body, file("404.html"));
    }
    // ServeDir waits for the blocking pool, so a file from disk gets the 503, unless the
    // pool wins the race with the timer (whose deadlines round up to the millisecond):
    // a bounded number of tries.
    let mut timed_out = None;
    for _ in 0..200 {
        let from_disk = get(&router, "/assets/app.js", &[]).await;
        if from_disk.status == StatusCode::SERVICE_UNAVAILABLE {
            timed_out = Some(from_disk);
            break;
        }
        assert_eq!(from_disk.status, StatusCode::OK);
    }
    let timed_out = timed_out.expect("no 503 from disk in 200 tries with a zero timeout");
    assert!(timed_out.body.is_empty());
    assert!(timed_out.header(header::CONTENT_SECURITY_POLICY).is_some());
}
