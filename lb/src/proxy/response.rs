//! Stage 4: the response head on its way back.

use pingora::http::ResponseHeader;
use pingora::Result;

use super::ctx::RequestCtx;
use crate::request_id;

/// The upstream answered: no retry from here on; drop its hop-by-hop headers.
pub fn upstream_response_filter(resp: &mut ResponseHeader, ctx: &mut RequestCtx) {
    ctx.response_started = true;
    resp.remove_header("keep-alive");
    resp.remove_header("proxy-connection");
    if resp.status != http::StatusCode::SWITCHING_PROTOCOLS {
        resp.remove_header(&http::header::CONNECTION);
    }
}

/// Echo the request id to the client.
pub fn response_filter(resp: &mut ResponseHeader, ctx: &RequestCtx) -> Result<()> {
    resp.insert_header(request_id::HEADER, ctx.request_id.clone())?;
    Ok(())
}
