//! `--host-whitelist` and `--cors` on the HTTP requests of a client listener, with
//! etcd 3.4's semantics.
//!
//! - `--host-whitelist` (default `*`): on a plain-HTTP listener, a request whose `Host`
//!   (without its port) is not in the list is refused with `421 Misdirected Request`
//!   (protection against DNS rebinding). `*` or an empty list allows every host; TLS
//!   listeners allow every host.
//! - `--cors` (default `*`): a request whose `Origin` is in the list gets
//!   `Access-Control-Allow-Origin: <origin>` plus the allowed methods and headers; with
//!   `*` or an empty list, every response gets `Access-Control-Allow-Origin: *`. An
//!   `OPTIONS` request (a CORS preflight) is answered `200` with no body.

use std::sync::Arc;

use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

/// The methods `Access-Control-Allow-Methods` lists (etcd's).
pub const ALLOWED_METHODS: &str = "POST, GET, OPTIONS, PUT, DELETE";
/// The headers `Access-Control-Allow-Headers` lists (etcd's).
pub const ALLOWED_HEADERS: &str = "accept, content-type, authorization";

/// `--cors` and `--host-whitelist` for one listener.
#[derive(Clone, Debug)]
pub struct HttpRules {
    /// Allowed CORS origins; empty or containing `*`: all.
    pub cors: Vec<String>,
    /// Allowed `Host` names; empty or containing `*`: all.
    pub host_whitelist: Vec<String>,
    /// Whether the listener is TLS (the host whitelist then does not apply, as in etcd).
    pub tls: bool,
}

impl Default for HttpRules {
    fn default() -> HttpRules {
        HttpRules { cors: vec!["*".into()], host_whitelist: vec!["*".into()], tls: false }
    }
}

/// Splits a comma-separated flag value (`--cors`, `--host-whitelist`) into its items.
pub fn split_list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_string).collect()
}

fn allows_all(list: &[String]) -> bool {
    list.is_empty() || list.iter().any(|item| item == "*")
}

impl HttpRules {
    /// Whether a request for `host` (a `Host` header or URI authority, with or without
    /// a port) may be served.
    pub fn allows_host(&self, host: Option<&str>) -> bool {
        if self.tls || allows_all(&self.host_whitelist) {
            return true;
        }
        let Some(host) = host else { return false };
        let name = host_without_port(host);
        self.host_whitelist.iter().any(|allowed| allowed.eq_ignore_ascii_case(name))
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if any.
    pub fn allowed_origin(&self, origin: Option<&str>) -> Option<String> {
        if allows_all(&self.cors) {
            return Some("*".to_string());
        }
        let origin = origin?;
        let trimmed = origin.trim_end_matches('/');
        self.cors.iter().any(|allowed| allowed.trim_end_matches('/') == trimmed).then(|| origin.to_string())
    }
}

/// `example.com:2379` → `example.com`, `[::1]:2379` → `::1`.
fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|character| character.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Applies the rules to one request (an axum middleware).
pub async fn apply(rules: Arc<HttpRules>, request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let host = request
        .headers()
        .get("host")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|authority| authority.to_string()));
    if !rules.allows_host(host.as_deref()) {
        let host = host.unwrap_or_default();
        let body = format!(
            "raftkv: the Host header '{host}' is not in --host-whitelist.\n\
             Serve this client URL with TLS (any host is then allowed), or add the host name to \
             --host-whitelist. The check protects against DNS rebinding attacks.\n"
        );
        return (StatusCode::MISDIRECTED_REQUEST, body).into_response();
    }
    let origin = request.headers().get("origin").and_then(|value| value.to_str().ok());
    let allowed_origin = rules.allowed_origin(origin);
    let mut response =
        if request.method() == Method::OPTIONS { StatusCode::OK.into_response() } else { next.run(request).await };
    if let Some(origin) = allowed_origin.and_then(|origin| HeaderValue::from_str(&origin).ok()) {
        let headers = response.headers_mut();
        headers.insert("access-control-allow-origin", origin);
        headers.insert("access-control-allow-methods", HeaderValue::from_static(ALLOWED_METHODS));
        headers.insert("access-control-allow-headers", HeaderValue::from_static(ALLOWED_HEADERS));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_whitelist_compares_names_without_ports() {
        let rules = HttpRules { host_whitelist: split_list("localhost, a.b"), ..HttpRules::default() };
        assert!(rules.allows_host(Some("localhost:2379")));
        assert!(rules.allows_host(Some("A.B")));
        assert!(!rules.allows_host(Some("127.0.0.1:2379")));
        assert!(!rules.allows_host(None));
        let ipv6 = HttpRules { host_whitelist: vec!["::1".into()], ..HttpRules::default() };
        assert!(ipv6.allows_host(Some("[::1]:2379")));
        let tls = HttpRules { tls: true, ..rules };
        assert!(tls.allows_host(Some("127.0.0.1")));
        assert!(HttpRules::default().allows_host(None));
    }

    #[test]
    fn cors_echoes_listed_origins_or_allows_all() {
        assert_eq!(HttpRules::default().allowed_origin(None).as_deref(), Some("*"));
        let rules = HttpRules { cors: split_list("http://a.example:80,http://b.example"), ..HttpRules::default() };
        assert_eq!(rules.allowed_origin(Some("http://b.example")).as_deref(), Some("http://b.example"));
        assert_eq!(rules.allowed_origin(Some("http://c.example")), None);
        assert_eq!(rules.allowed_origin(None), None);
    }
}
