//! `server.https_redirect`: a plaintext request is answered with a 308 to the same URL over
//! HTTPS, before routing, so no backend sees it. 308 (not 301) keeps the method and body
//! of a POST; the path and query are kept byte for byte.

use bytes::Bytes;
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::Result;

use crate::config::{defaults, HttpsRedirect};
use crate::errors::{self, LbError};
use service_kit::request_id;

/// Whether this plaintext request is redirected: every path but the excluded prefixes and
/// the ACME http-01 challenge path.
pub(crate) fn applies(redirect: &HttpsRedirect, req: &RequestHeader) -> bool {
    let path = req.uri.path();
    !path.starts_with(defaults::ACME_CHALLENGE_PREFIX)
        && !redirect
            .exclude
            .iter()
            .any(|p| path.starts_with(p.as_str()))
}

/// Answer with the redirect, or with the lb's 400 when the request names no usable host.
pub(crate) async fn respond(
    session: &mut Session,
    redirect: &HttpsRedirect,
    request_id: &HeaderValue,
    keepalive: bool,
) -> Result<()> {
    let Some(location) = location(session.req_header(), redirect.port) else {
        return errors::respond(session, LbError::BadRequest, request_id, false).await;
    };
    let mut resp = ResponseHeader::build(http::StatusCode::PERMANENT_REDIRECT, Some(4))?;
    resp.insert_header(http::header::LOCATION, location)?;
    resp.insert_header(http::header::CONTENT_LENGTH, 0)?;
    resp.insert_header(request_id::NAME, request_id.clone())?;
    if !keepalive {
        session.set_keepalive(None);
    }
    // A client that fails to take the answer is the client's (`crate::client_errors`).
    session
        .write_response_header(Box::new(resp), true)
        .await
        .map_err(|e| e.into_down())?;
    session
        .write_response_body(Some(Bytes::new()), true)
        .await
        .map_err(|e| e.into_down())?;
    Ok(())
}

/// `https://HOST[:PORT]/path?query`: the host the client asked for (Host, else the
/// request target's authority as h2 sends it) without its port; the port left out when 443.
fn location(req: &RequestHeader, port: u16) -> Option<HeaderValue> {
    let authority = match req.headers.get(http::header::HOST) {
        Some(h) => h.to_str().ok()?,
        None => req.uri.authority()?.as_str(),
    };
    let authority: http::uri::Authority = authority.parse().ok()?;
    // A userinfo part (`user@host`) is not a host a browser should be sent to.
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return None;
    }
    let host = authority.host();
    let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = if port == defaults::HTTPS_PORT {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{port}{path}")
    };
    // `Authority` parsing is lenient (`pro[::1]` passes it); the Location must be a URI a
    // client can follow, or the request gets the 400.
    url.parse::<http::Uri>().ok()?;
    HeaderValue::from_str(&url).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, host: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).expect("req");
        // As h2 requests arrive: the whole target in the URI (absolute form keeps its authority).
        r.set_uri(target.parse().expect("uri"));
        if let Some(h) = host {
            r.insert_header("host", h).expect("host");
        }
        r
    }

    fn loc(target: &str, host: Option<&str>, port: u16) -> Option<String> {
        location(&req(target, host), port).map(|v| v.to_str().expect("ascii").to_string())
    }

    #[test]
    fn keeps_host_path_and_query_and_swaps_the_port() {
        assert_eq!(
            loc("/a/b?x=1&y=%20", Some("example.test:8080"), 8443).as_deref(),
            Some("https://example.test:8443/a/b?x=1&y=%20")
        );
        assert_eq!(
            loc("/", Some("example.test"), 443).as_deref(),
            Some("https://example.test/")
        );
        assert_eq!(
            loc("/x", Some("[::1]:8080"), 8443).as_deref(),
            Some("https://[::1]:8443/x")
        );
        // h2c: no Host, the authority is in the request target
        assert_eq!(
            loc("http://example.test:8080/p?q", None, 443).as_deref(),
            Some("https://example.test/p?q")
        );
    }

    #[test]
    fn no_usable_host_is_none() {
        assert_eq!(loc("/", None, 443), None);
        assert_eq!(loc("/", Some("a b"), 443), None);
        assert_eq!(loc("/", Some("user@evil.test"), 443), None);
        assert_eq!(loc("/", Some(""), 443), None);
        // found by the `request` fuzz target: an authority `http` accepts, but no URI host
        assert_eq!(loc("/x", Some("pro[::1]:8080"), 443), None);
    }

    #[test]
    fn exclusions_and_the_acme_path_stay_plaintext() {
        let r = HttpsRedirect {
            port: 443,
            exclude: vec!["/health".into()],
        };
        assert!(applies(&r, &req("/index.html", None)));
        assert!(!applies(&r, &req("/healthz", None)));
        assert!(!applies(
            &r,
            &req("/.well-known/acme-challenge/token", None)
        ));
    }
}
