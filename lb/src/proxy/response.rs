//! Stage 4: the response head on its way back.

use pingora::http::ResponseHeader;
use pingora::Result;

use super::ctx::RequestCtx;
use crate::request_id;

/// Pre-parsed: removing by `&str` parses the name on every call.
pub const KEEP_ALIVE: http::HeaderName = http::HeaderName::from_static("keep-alive");
pub const PROXY_CONNECTION: http::HeaderName = http::HeaderName::from_static("proxy-connection");

/// The upstream answered: no retry from here on; drop its hop-by-hop headers.
pub fn upstream_response_filter(resp: &mut ResponseHeader, ctx: &mut RequestCtx) {
    ctx.response_started = true;
    resp.remove_header(&KEEP_ALIVE);
    resp.remove_header(&PROXY_CONNECTION);
    if resp.status != http::StatusCode::SWITCHING_PROTOCOLS {
        resp.remove_header(&http::header::CONNECTION);
    }
}

/// Echo the request id to the client.
pub fn response_filter(resp: &mut ResponseHeader, ctx: &RequestCtx) -> Result<()> {
    resp.insert_header(request_id::HEADER, ctx.request_id.clone())?;
    Ok(())
}
