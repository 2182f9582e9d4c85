//! The HTTP client `instant-acme` talks to the CA through: one HTTP/1.1 connection per
//! request (an order is a dozen requests, a few times a quarter), over the rustls the lb
//! already links (ring), so the ACME client brings no second TLS stack nor hyper's
//! connection pool.
//!
//! Trust: `ca_file` when set (a private or test CA), else the two Let's Encrypt roots
//! built into the binary: the lb image is `FROM scratch`, with no system trust store, and
//! Let's Encrypt is the default CA.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// ISRG Root X1 and X2, the roots of Let's Encrypt's certificates (and of its ACME API).
const LETS_ENCRYPT_ROOTS: &[u8] = include_bytes!("isrg-roots.pem");
/// One request, connection and TLS handshake included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub(crate) struct AcmeHttp {
    tls: tokio_rustls::TlsConnector,
}

impl AcmeHttp {
    /// A client trusting `ca_file`'s certificates, or the built-in Let's Encrypt roots.
    pub(crate) fn new(ca_file: Option<&str>) -> Result<Self, String> {
        let (pem, source) = match ca_file {
            Some(f) => (
                std::fs::read(f).map_err(|e| format!("cannot read ca_file {f:?}: {e}"))?,
                f,
            ),
            None => (
                LETS_ENCRYPT_ROOTS.to_vec(),
                "the built-in Let's Encrypt roots",
            ),
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("{source}: not PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("{source}: not a usable CA certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err(format!("{source}: no PEM certificate"));
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    async fn send(self, req: http::Request<BodyWrapper<Bytes>>) -> Result<BytesResponse, String> {
        let uri = req.uri().clone();
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{uri}: not an http(s) URL")),
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("{uri}: no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        // Origin form on the wire, with the authority in Host (RFC 9112 §3.2).
        let (mut parts, body) = req.into_parts();
        parts.uri = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|e| format!("{uri}: {e}"))?;
        parts.headers.insert(
            http::header::HOST,
            http::HeaderValue::from_str(&authority).map_err(|e| format!("{uri}: {e}"))?,
        );
        let req = http::Request::from_parts(parts, body);

        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
        if https {
            let name = ServerName::try_from(host.clone())
                .map_err(|e| format!("{host}: not a TLS server name: {e}"))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
            exchange(TokioIo::new(tls), req).await
        } else {
            exchange(TokioIo::new(tcp), req).await
        }
    }
}

async fn exchange<T>(io: T, req: http::Request<BodyWrapper<Bytes>>) -> Result<BytesResponse, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let result = async {
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(BytesResponse {
            parts,
            body: Box::new(body),
        })
    }
    .await;
    conn.abort();
    result
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let this = self.clone();
        Box::pin(async move {
            let url = req.uri().to_string();
            match tokio::time::timeout(REQUEST_TIMEOUT, this.send(req)).await {
                Ok(Ok(resp)) => Ok(resp),
                Ok(Err(e)) => Err(instant_acme::Error::Other(format!("{url}: {e}").into())),
                Err(_) => Err(instant_acme::Error::Other(
                    format!("{url}: no answer within {REQUEST_TIMEOUT:?}").into(),
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_roots_load() {
        AcmeHttp::new(None).expect("Let's Encrypt roots");
        let dir = tempfile::tempdir().expect("dir");
        let f = dir.path().join("x.pem");
        std::fs::write(&f, "not pem").expect("write");
        let err = AcmeHttp::new(f.to_str()).err().expect("refused");
        assert!(err.contains("no PEM certificate"), "{err}");
    }
}
