//! Site-independent reading of request paths and referers: what kind of
//! resource a path is (page, static asset, `robots.txt`), which sensitive
//! action it performs (login, payment, add to cart), its depth and directory,
//! and stable 64-bit hashes used to compare paths without storing them.
//!
//! The rules are fixed in code (documented in the crate README), not learned
//! from a tenant's traffic.

use crate::logs::Method;

/// File extensions (lower case) that mark a static asset.
pub const ASSET_EXTENSIONS: &[&str] = &[
    "css", "js", "mjs", "map", "png", "jpg", "jpeg", "gif", "svg", "ico", "webp", "avif", "bmp",
    "woff", "woff2", "ttf", "otf", "eot", "mp4", "webm", "mp3",
];

/// First path segments (lower case) that mark a static asset directory.
pub const ASSET_DIRS: &[&str] = &[
    "static", "assets", "images", "img", "fonts", "media", "_next",
];

/// Substrings of a path segment (lower case) that mark a login endpoint.
pub const LOGIN_MARKERS: &[&str] = &["login", "signin", "sign-in", "sign_in", "logon"];

/// Whole path segments that mark a login endpoint (`/oauth/token`, `/authenticate`).
pub const LOGIN_SEGMENTS: &[&str] = &["token", "authenticate", "auth"];

/// Substrings of a path segment that mark a payment endpoint (for `POST`s).
pub const PAYMENT_MARKERS: &[&str] = &["pay", "charge", "checkout", "purchase", "billing"];

/// Substrings of a path segment that mark a cart endpoint (for `POST`s).
pub const CART_MARKERS: &[&str] = &["cart", "basket"];

/// Substrings of a path that mark an add-to-cart link (any method).
pub const ADD_TO_CART_MARKERS: &[&str] = &["add-to-cart", "add_to_cart", "addtocart"];

/// FNV-1a, 64 bit: a fixed, fast hash for comparing paths (not for security).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Everything the features need to know about one request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathInfo {
    /// FNV-1a of the path (query already stripped).
    pub hash: u64,
    /// FNV-1a of the directory part (up to and including the last `/`).
    pub dir_hash: u64,
    /// Number of non-empty segments (`/` is 0, `/a/b` is 2), capped at 255.
    pub depth: u8,
    /// A static asset (by extension or directory).
    pub asset: bool,
    /// `/robots.txt`.
    pub robots: bool,
    /// A login attempt (`POST` to a login path).
    pub login: bool,
    /// A payment attempt (`POST` to a payment path).
    pub payment: bool,
    /// An add-to-cart action.
    pub add_to_cart: bool,
}

fn contains_ci(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    h.len() >= n.len() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// Classifies a request path (already without query string).
pub fn classify(method: Method, path: &str) -> PathInfo {
    let bytes = path.as_bytes();
    let dir_end = memchr::memrchr(b'/', bytes).map_or(0, |i| i + 1);
    let mut info = PathInfo {
        hash: fnv1a(bytes),
        dir_hash: fnv1a(&bytes[..dir_end]),
        ..PathInfo::default()
    };
    let last = &path[dir_end..];
    info.robots = path == "/robots.txt";
    let ext = match memchr::memrchr(b'.', last.as_bytes()) {
        Some(i) => &last[i + 1..],
        None => "",
    };
    let mut depth = 0u32;
    let mut first = true;
    let post = method == Method::Post;
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        depth += 1;
        if first {
            info.asset |= ASSET_DIRS.iter().any(|d| seg.eq_ignore_ascii_case(d));
            first = false;
        }
        if post {
            info.login |= LOGIN_MARKERS.iter().any(|m| contains_ci(seg, m))
                || LOGIN_SEGMENTS.iter().any(|m| seg.eq_ignore_ascii_case(m));
            info.payment |= PAYMENT_MARKERS.iter().any(|m| contains_ci(seg, m));
            info.add_to_cart |= CART_MARKERS.iter().any(|m| contains_ci(seg, m));
        }
        info.add_to_cart |= ADD_TO_CART_MARKERS.iter().any(|m| contains_ci(seg, m));
    }
    info.depth = depth.min(255) as u8;
    info.asset |= !ext.is_empty() && ASSET_EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e));
    if info.asset || info.robots {
        info.login = false;
        info.payment = false;
        info.add_to_cart = false;
    }
    info
}

/// Hash of a referer's path, or `None` for an absent referer. Absolute URLs
/// (`https://host/path?q`) and protocol-relative ones (`//host/path`) lose
/// their scheme and host; the query and fragment are dropped; a bare host
/// means `/`.
pub fn referer_path_hash(referer: &str) -> Option<u64> {
    if referer.is_empty() {
        return None;
    }
    let after_scheme = if let Some(i) = referer.find("://") {
        &referer[i + 3..]
    } else if let Some(r) = referer.strip_prefix("//") {
        r
    } else {
        return Some(fnv1a(crate::logs::strip_query(referer).as_bytes()));
    };
    let path = match memchr::memchr(b'/', after_scheme.as_bytes()) {
        Some(i) => crate::logs::strip_query(&after_scheme[i..]),
        None => "/",
    };
    Some(fnv1a(path.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let p = classify(Method::Get, "/static/js/app.3f2a.js");
        assert!(p.asset && !p.robots && p.depth == 3);
        assert!(classify(Method::Get, "/product/12/photo.JPG").asset);
        assert!(classify(Method::Get, "/robots.txt").robots);
        assert!(!classify(Method::Get, "/robots.txt").asset);
        let login = classify(Method::Post, "/account/Login");
        assert!(login.login && !login.asset && login.depth == 2);
        assert!(!classify(Method::Get, "/account/login").login);
        assert!(classify(Method::Post, "/wp-login.php").login);
        assert!(classify(Method::Post, "/api/v1/oauth/token").login);
        assert!(!classify(Method::Post, "/author/comments").login);
        assert!(classify(Method::Post, "/checkout/payment").payment);
        assert!(classify(Method::Post, "/api/v1/payments").payment);
        assert!(!classify(Method::Get, "/checkout/payment").payment);
        assert!(classify(Method::Post, "/cart/add").add_to_cart);
        assert!(!classify(Method::Get, "/product/9?x").add_to_cart);
        assert!(classify(Method::Get, "/shop/add-to-cart/9").add_to_cart);
        assert_eq!(classify(Method::Get, "/").depth, 0);
        assert_eq!(
            classify(Method::Get, "/a/b").dir_hash,
            classify(Method::Get, "/a/c").dir_hash
        );
        assert_ne!(
            classify(Method::Get, "/a/b").dir_hash,
            classify(Method::Get, "/b/b").dir_hash
        );
    }

    #[test]
    fn referers() {
        assert_eq!(referer_path_hash(""), None);
        let p = fnv1a(b"/product/1");
        assert_eq!(
            referer_path_hash("https://shop.example/product/1?x=2#f"),
            Some(p)
        );
        assert_eq!(referer_path_hash("//shop.example/product/1"), Some(p));
        assert_eq!(referer_path_hash("/product/1"), Some(p));
        assert_eq!(
            referer_path_hash("https://www.google.com"),
            Some(fnv1a(b"/"))
        );
    }

    #[test]
    fn fnv_reference_values() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x85944171f73967e8);
    }
}
