//! The web manager's cookie as any transport reads it: the HTTP middleware in front of
//! `/admin/api` and the Socket.IO handshake of the manager's page both take the session token
//! from it, and both insist the request came from a page of this very host.

use axum::http::HeaderMap;
use axum::http::header::{COOKIE, HOST, ORIGIN};

/// The cookie holding the session token.
pub const COOKIE_NAME: &str = "chatd_admin";
/// The session token in the manager's cookie, when the request carries one (the first, if a
/// client sent several).
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

/// Whether the request's `Origin` is the host it was sent to: a page of another site (which
/// the browser would still send the cookie for, on a WebSocket) is refused.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let single = |name| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => value.to_str().ok(),
            _ => None,
        }
    };
    let (Some(origin), Some(host)) = (single(ORIGIN), single(HOST)) else {
        return false;
    };
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    authority.is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let map = headers(&[("cookie", "a=1; chatd_admin=abc123 ; b=2")]);
        assert_eq!(cookie_token(&map).as_deref(), Some("abc123"));
        assert_eq!(cookie_token(&headers(&[("cookie", "chatd_admin=")])), None);
        assert_eq!(
            cookie_token(&headers(&[("cookie", "xchatd_admin=1")])),
            None
        );
    }

    #[test]
    fn only_the_same_host_is_the_same_origin() {
        let same = headers(&[
            ("origin", "http://127.0.0.1:10000"),
            ("host", "127.0.0.1:10000"),
        ]);
        assert!(same_origin(&same));
        let other = headers(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:10000"),
        ]);
        assert!(!same_origin(&other));
        assert!(!same_origin(&headers(&[("host", "127.0.0.1:10000")])));
        let prefixed = headers(&[
            ("origin", "http://127.0.0.1:10000.evil"),
            ("host", "127.0.0.1:10000"),
        ]);
        assert!(!same_origin(&prefixed));
    }
}
