//! A small HTTP(S) client for what civic asks of an identity provider: its JWKS (a GET) and a
//! service's token (a form POST, the OAuth 2.0 client-credentials grant). HTTP/1.1 over rustls
//! (ring) with the system's root certificates; no redirects, a size limit and a deadline.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// The largest document accepted.
const MAX_BYTES: usize = 1 << 20;

/// Fetches `url` (`http://` or `https://`) and returns its body, or says what went wrong.
pub async fn get(url: &str, deadline: Duration) -> Result<Vec<u8>, String> {
    tokio::time::timeout(deadline, fetch(url, None))
        .await
        .map_err(|_| format!("no answer from {url} within {deadline:?}"))?
}

/// Posts `form` to `url` as `application/x-www-form-urlencoded` and returns the answer's body.
pub async fn post_form(url: &str, form: &[(&str, &str)], deadline: Duration) -> Result<Vec<u8>, String> {
    let body = form.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&");
    tokio::time::timeout(deadline, fetch(url, Some(body)))
        .await
        .map_err(|_| format!("no answer from {url} within {deadline:?}"))?
}

/// Form (and query) encoding: unreserved characters as they are, everything else
/// percent-encoded.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn fetch(url: &str, form: Option<String>) -> Result<Vec<u8>, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url} is not a URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("{url}: only http and https are supported")),
    };
    let host = uri.host().ok_or_else(|| format!("{url} has no host"))?.to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let builder = match &form {
        None => http::Request::get(path),
        Some(_) => http::Request::post(path).header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
    };
    let request = builder
        .header(http::header::HOST, &host)
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(form.unwrap_or_default())))
        .map_err(|e| format!("building the request: {e}"))?;
    if tls {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config()?));
        let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| format!("{host}: {e}"))?;
        let stream = connector.connect(name, tcp).await.map_err(|e| format!("TLS with {host}: {e}"))?;
        send(TokioIo::new(stream), request).await
    } else {
        send(TokioIo::new(tcp), request).await
    }
}

async fn send<S>(io: TokioIo<S>, request: http::Request<Full<Bytes>>) -> Result<Vec<u8>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(io).await.map_err(|e| format!("HTTP handshake: {e}"))?;
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(|e| format!("HTTP request: {e}"))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_BYTES)
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
        .to_bytes();
    driver.abort();
    if !status.is_success() {
        return Err(format!("the server answered {status}"));
    }
    Ok(body.to_vec())
}

fn client_config() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err("no root certificates found on this system".to_owned());
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

#[cfg(test)]
mod tests {
    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(super::encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(super::encode("client_id-1.x~"), "client_id-1.x~");
    }
}
