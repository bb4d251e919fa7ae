//! HTTP plumbing shared by the sinks that speak HTTP themselves (the HTTP and Splunk HEC
//! sinks): the client, URL checks, sensitive headers, and reading and quoting response bodies
//! without ever quoting a URL (it may hold a secret).

use std::time::Duration;

use reqwest::header::HeaderValue;

use super::SinkError;
use crate::tls::TlsConfig;

/// How many characters of a response body a rejection reason quotes.
pub(super) const REASON_BODY_CHARS: usize = 256;

/// At most `max` characters of `s`, ending with `…` when cut.
pub(super) fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((end, _)) => {
            let mut out = s[..end].trim_end().to_string();
            out.push('…');
            out
        }
    }
}

/// ` (body: ...)` quoting the start of a response body, or nothing when it is empty.
pub(super) fn quote_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.is_empty() {
        String::new()
    } else {
        format!(" (body: {})", truncate_chars(&text, REASON_BODY_CHARS))
    }
}

/// The HTTP client of a sink: rustls with the sink's TLS settings, a timeout per request, no
/// redirects (a redirected POST can lose its body; credentials must not follow it).
pub(super) fn client(
    sink: &str,
    tls: Option<&TlsConfig>,
    timeout: Duration,
) -> Result<reqwest::Client, SinkError> {
    let setup = |message: String| SinkError::Setup {
        sink: sink.to_string(),
        message,
    };
    let tls = tls
        .cloned()
        .unwrap_or_default()
        .client_config()
        .map_err(|e| setup(e.to_string()))?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tripline/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| setup(format!("building the HTTP client: {}", error_text(e))))
}

/// Parses an `http(s)://` URL given under `key`; `tls` says whether TLS settings were given
/// (they need `https`). Errors never quote the URL.
pub(super) fn parse_url(url: &str, key: &str, tls: bool) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{key}: not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if tls => return Err(format!("{key}: `tls` is set but the URL is `http://`")),
        "http" => {}
        other => {
            return Err(format!(
                "{key}: scheme `{other}` is neither `http` nor `https`"
            ))
        }
    }
    if parsed.host_str().is_none() {
        return Err(format!("{key}: the URL has no host"));
    }
    Ok(parsed)
}

/// `scheme://host:port` of a URL: what messages may show of it.
pub(super) fn origin(url: &reqwest::Url) -> String {
    url.origin().ascii_serialization()
}

/// A header value marked sensitive (left out of the HTTP stack's debug output).
pub(super) fn sensitive(v: &str) -> Result<HeaderValue, reqwest::header::InvalidHeaderValue> {
    let mut value = HeaderValue::from_str(v)?;
    value.set_sensitive(true);
    Ok(value)
}

/// Reads at most `max` bytes of a response body; a body that fails half-way gives what came.
pub(super) async fn body_prefix(response: &mut reqwest::Response, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < max {
        match response.chunk().await {
            Ok(Some(chunk)) => out.extend_from_slice(&chunk[..chunk.len().min(max - out.len())]),
            Ok(None) | Err(_) => break,
        }
    }
    out
}

/// A reqwest error and its causes, without the URL (it may hold a secret).
pub(super) fn error_text(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.ends_with(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_at_a_character_count_with_an_ellipsis() {
        assert_eq!(truncate_chars("héllo wörld", 5), "héllo…");
        assert_eq!(truncate_chars("short", 5), "short");
    }

    #[test]
    fn response_bodies_are_quoted_short_and_on_one_line() {
        assert_eq!(quote_body(b""), "");
        assert_eq!(quote_body(b"bad\nthing"), " (body: bad thing)");
        let long = vec![b'x'; 1000];
        assert_eq!(
            quote_body(&long).chars().count(),
            " (body: )".len() + REASON_BODY_CHARS + 1
        );
    }
}
