//! The custom 404 page: `404.html` from the root, always whole and always with
//! status 404.
//!
//! ServeDir forces the status of its not-found service to 404, so a 304 or a 206 of
//! the error page would become an empty or partial 404. Conditional and range headers
//! are therefore dropped before the page is read, and validators are dropped after:
//! a missing URL has no version to revalidate.

use std::{convert::Infallible, path::Path};

use axum::body::Body;
use http::{header, HeaderValue, Request, Response};
use tower::{Service, ServiceExt};
use tower_http::services::{fs::ServeFileSystemResponseBody, ServeFile};

type Reply = Response<ServeFileSystemResponseBody>;

/// The service to pass to `ServeDir::not_found_service`.
pub(crate) fn page(
    root: &Path,
) -> impl Service<Request<Body>, Response = Reply, Error = Infallible, Future: Send>
       + Clone
       + Send
       + 'static {
    ServeFile::new(root.join("404.html"))
        .precompressed_br()
        .precompressed_gzip()
        .map_request(whole_page as fn(Request<Body>) -> Request<Body>)
        .map_response(no_validators as fn(Reply) -> Reply)
}

fn whole_page(mut request: Request<Body>) -> Request<Body> {
    for name in [
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_MATCH,
        header::IF_UNMODIFIED_SINCE,
        header::IF_RANGE,
        header::RANGE,
    ] {
        request.headers_mut().remove(name);
    }
    request
}

fn no_validators(mut response: Reply) -> Reply {
    let headers = response.headers_mut();
    for name in [header::LAST_MODIFIED, header::ACCEPT_RANGES] {
        headers.remove(name);
    }
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    response
}
