//! The shipped site: what the page must contain, and the generated parts
//! (`?v=` asset hashes, `.gz` twins) must match their sources. When one of these
//! fails after an edit, run `frontend/precompress.sh`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

const SITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/site");

fn files_with(extensions: &[&str]) -> Vec<PathBuf> {
    let mut found = vec![];
    let mut dirs = vec![PathBuf::from(SITE)];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if extensions
                .iter()
                .any(|e| path.extension().is_some_and(|x| x == *e))
            {
                found.push(path);
            }
        }
    }
    found
}

/// Runs a coreutils/gzip tool; a missing tool is a clear failure, not a skip.
fn tool(program: &str, args: &[&str], file: &Path) -> Vec<u8> {
    let output = Command::new(program)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed by this test: {e}"));
    assert!(
        output.status.success(),
        "{program} failed on {}",
        file.display()
    );
    output.stdout
}

#[test]
fn every_text_file_has_an_up_to_date_gzip_twin() {
    let sources = files_with(&["html", "css", "js", "svg"]);
    assert!(sources.len() >= 5, "{sources:?}");
    for source in sources {
        let twin = PathBuf::from(format!("{}.gz", source.display()));
        assert!(
            twin.is_file(),
            "{} has no .gz twin: run frontend/precompress.sh",
            source.display()
        );
        let unpacked = tool("gzip", &["-dc"], &twin);
        assert!(
            unpacked == fs::read(&source).unwrap(),
            "{} is stale: run frontend/precompress.sh",
            twin.display()
        );
    }
}

#[test]
fn asset_references_carry_the_content_hash() {
    for html in files_with(&["html"]) {
        let text = fs::read_to_string(&html).unwrap();
        let mut references = 0;
        for (at, _) in text.match_indices("/assets/") {
            let reference = &text[at..];
            let reference = &reference[..reference.find('"').unwrap()];
            let (path, version) = reference.split_once("?v=").unwrap_or_else(|| {
                panic!(
                    "{reference} in {} lacks ?v=: run frontend/precompress.sh",
                    html.display()
                )
            });
            let asset = Path::new(SITE).join(path.trim_start_matches('/'));
            let hash = String::from_utf8(tool("sha256sum", &[], &asset)).unwrap();
            assert_eq!(
                version,
                &hash[..8],
                "{reference} in {} is stale: run frontend/precompress.sh",
                html.display()
            );
            references += 1;
        }
        assert!(references > 0, "{} links no assets", html.display());
    }
}

#[test]
fn the_page_keeps_the_original_contract() {
    let index = fs::read_to_string(Path::new(SITE).join("index.html")).unwrap();
    assert!(index.contains(r#"<h1 id="dynamic-content""#));
    assert!(index.contains(r#"id="burst""#) && index.contains(r#"id="bars""#));
    let script = fs::read_to_string(Path::new(SITE).join("assets/app.js")).unwrap();
    assert!(script.contains("'/api/hello'") && script.contains("'/api/whoami'"));
    assert!(script.contains("fetch("));
    // CSP allows no inline code, and the page needs no library.
    for html in files_with(&["html"]) {
        let text = fs::read_to_string(&html).unwrap();
        assert!(
            !text.contains("<script>") && !text.contains(" style="),
            "{}",
            html.display()
        );
        assert!(
            !text.to_lowercase().contains("jquery"),
            "{}",
            html.display()
        );
    }
}
