//! Request-target *shapes*: what a request asked for, with every value that
//! may identify a person replaced by a typed placeholder, so evidence can
//! show `/products?page=<int>` or `/users/<name>/orders` without ever
//! printing an id, an email address, a token or a search term.
//!
//! Rules (fixed in code, not learned):
//!
//! - **Query values** are never kept: each becomes `<int>`, `<num>`,
//!   `<email>`, `<uuid>`, `<hex>`, `<token>`, `<date>` or `<str>` (empty
//!   values stay empty). Keys are kept when they are short and plain
//!   (`[A-Za-z0-9_.-[]]`, ≤ 32 bytes), else `<key>`; at most
//!   [`MAX_QUERY_PARAMS`] parameters are shown, then `&…`.
//! - **Path segments** are kept when they are plain words; a segment that
//!   is a number, UUID, email address, long hex string, token, or contains a
//!   digit run typical of ids becomes the matching placeholder (`<id>` for a
//!   mixed id); a segment with characters outside the URL-unreserved set or
//!   longer than 40 bytes becomes `<str>`; a static-asset file keeps its
//!   extension (`<id>.js`). The segment after `user`, `users`, `u`,
//!   `profile`, `people`, `member(s)`, `customer(s)` or `author` is a name
//!   (`<name>`) unless it is a known action word (`login`, `sign_in`,
//!   `new`, `edit`, ...); a segment starting with `@` is `<handle>`.
//! - A shape is at most [`MAX_SHAPE_LEN`] bytes (cut at a segment, `…`).
//!
//! Percent-escapes are decoded before a value is classified (`a%40b.com` is
//! an email address), never for output. The pagination parameter of a target
//! (`page`, `p`, `pg`, `paged`, `pagenum`, `page_num`, `pageno`, `offset`,
//! `start`, `from`, `skip`, with an integer value) is returned beside the
//! shape so a walk through pages can be recognised.

/// Most query parameters shown in a shape.
pub const MAX_QUERY_PARAMS: usize = 8;
/// Longest shape, bytes.
pub const MAX_SHAPE_LEN: usize = 160;

/// Query parameter names that carry a page number or offset.
pub const PAGE_PARAMS: &[&str] = &[
    "page", "p", "pg", "paged", "pagenum", "page_num", "pageno", "page_no", "offset", "start",
    "from", "skip",
];

/// Path segments after which the next segment names a person.
const NAME_PARENTS: &[&str] = &[
    "user",
    "users",
    "u",
    "profile",
    "profiles",
    "people",
    "member",
    "members",
    "customer",
    "customers",
    "author",
];

/// Segments after a [`NAME_PARENTS`] segment that are actions, not names.
const ACTION_WORDS: &[&str] = &[
    "login",
    "logout",
    "signin",
    "sign_in",
    "sign-in",
    "signup",
    "sign_up",
    "sign-up",
    "sign_out",
    "register",
    "password",
    "new",
    "edit",
    "me",
    "self",
    "settings",
    "auth",
    "confirmation",
    "unlock",
    "search",
];

/// A target's shape and its pagination value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shaped {
    /// The shape, e.g. `/c/shoes?page=<int>`.
    pub shape: String,
    /// The integer value of the first pagination parameter, if any.
    pub page: Option<u64>,
}

/// Shapes a request path (without query) and its query string (without `?`).
pub fn shape_target(path: &str, query: &str) -> Shaped {
    let mut out = String::with_capacity(path.len().min(MAX_SHAPE_LEN) + 16);
    shape_path(path, &mut out);
    let mut page = None;
    if !query.is_empty() {
        out.push('?');
        for (n, pair) in query.split('&').enumerate() {
            if n == MAX_QUERY_PARAMS {
                out.push_str("&…");
                break;
            }
            if n > 0 {
                out.push('&');
            }
            let (key, value) = match pair.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (pair, None),
            };
            let plain_key = key.len() <= 32
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-[]".contains(&b));
            out.push_str(if plain_key { key } else { "<key>" });
            if let Some(v) = value {
                out.push('=');
                let decoded = percent_decode(v);
                let kind = classify_value(&decoded);
                if kind == ValueKind::Int
                    && page.is_none()
                    && plain_key
                    && PAGE_PARAMS.iter().any(|p| key.eq_ignore_ascii_case(p))
                {
                    page = decoded.parse::<u64>().ok();
                }
                out.push_str(kind.placeholder());
            }
        }
    }
    cap(&mut out);
    Shaped { shape: out, page }
}

fn shape_path(path: &str, out: &mut String) {
    if path == "-" || path.is_empty() {
        out.push('-');
        return;
    }
    if !path.starts_with('/') {
        // `*` (OPTIONS), absolute-form targets of proxies, junk: one value.
        out.push_str(if path == "*" { "*" } else { "<str>" });
        return;
    }
    let mut previous: Option<&str> = None;
    for seg in path.split('/').skip(1) {
        out.push('/');
        if seg.is_empty() {
            previous = None;
            continue;
        }
        out.push_str(&shape_segment(seg, previous));
        previous = Some(seg);
        if out.len() > MAX_SHAPE_LEN {
            break;
        }
    }
}

fn shape_segment(seg: &str, previous: Option<&str>) -> String {
    let decoded = percent_decode(seg);
    if let Some(p) = previous
        && NAME_PARENTS.iter().any(|n| p.eq_ignore_ascii_case(n))
        && !ACTION_WORDS.iter().any(|a| decoded.eq_ignore_ascii_case(a))
        && classify_value(&decoded) == ValueKind::Str
    {
        return "<name>".into();
    }
    if decoded.starts_with('@') && decoded.len() > 1 {
        return "<handle>".into();
    }
    // Keep an asset file's extension: `app.3f2a9c1d.js` → `<id>.js`.
    if let Some((stem, ext)) = decoded.rsplit_once('.')
        && !stem.is_empty()
        && crate::paths::ASSET_EXTENSIONS
            .iter()
            .any(|e| ext.eq_ignore_ascii_case(e))
    {
        let kind = classify_segment(stem);
        return match kind {
            None => seg.to_string(),
            Some(p) => format!("{p}.{}", ext.to_ascii_lowercase()),
        };
    }
    match classify_segment(&decoded) {
        None => seg.to_string(),
        Some(p) => p.to_string(),
    }
}

/// `None` for a plain word that may be shown; else its placeholder.
fn classify_segment(s: &str) -> Option<&'static str> {
    let kind = classify_value(s);
    if kind != ValueKind::Str {
        return Some(kind.placeholder());
    }
    let unreserved = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.~,+".contains(&b));
    if !unreserved || s.len() > 40 {
        return Some("<str>");
    }
    // A run of 3+ digits inside a word is an id (`order-12345`, `sku9912`).
    let mut run = 0;
    for b in s.bytes() {
        run = if b.is_ascii_digit() { run + 1 } else { 0 };
        if run >= 3 {
            return Some("<id>");
        }
    }
    None
}

/// What a value looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// Empty.
    Empty,
    /// Decimal digits (at most 19).
    Int,
    /// A signed or decimal number.
    Num,
    /// Contains `@` with a dotted domain after it.
    Email,
    /// 8-4-4-4-12 hex digits.
    Uuid,
    /// Only hex digits, at least 8, with at least one digit.
    Hex,
    /// 20+ bytes of letters, digits, `-_=.+/` with both letters and digits.
    Token,
    /// `yyyy-mm-dd` (optionally with a time).
    Date,
    /// Anything else.
    Str,
}

impl ValueKind {
    /// The placeholder written in a shape (empty for [`ValueKind::Empty`]).
    pub fn placeholder(self) -> &'static str {
        match self {
            Self::Empty => "",
            Self::Int => "<int>",
            Self::Num => "<num>",
            Self::Email => "<email>",
            Self::Uuid => "<uuid>",
            Self::Hex => "<hex>",
            Self::Token => "<token>",
            Self::Date => "<date>",
            Self::Str => "<str>",
        }
    }
}

/// Classifies a (decoded) value.
pub fn classify_value(v: &str) -> ValueKind {
    let b = v.as_bytes();
    if b.is_empty() {
        return ValueKind::Empty;
    }
    if b.len() <= 19 && b.iter().all(u8::is_ascii_digit) {
        return ValueKind::Int;
    }
    if is_number(v) {
        return ValueKind::Num;
    }
    if let Some((user, domain)) = v.rsplit_once('@')
        && !user.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
    {
        return ValueKind::Email;
    }
    if is_uuid(b) {
        return ValueKind::Uuid;
    }
    if b.len() >= 8 && b.iter().all(u8::is_ascii_hexdigit) && b.iter().any(u8::is_ascii_digit) {
        return ValueKind::Hex;
    }
    if b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
    {
        return ValueKind::Date;
    }
    if b.len() >= 20
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_=.+/".contains(c))
        && b.iter().any(u8::is_ascii_digit)
        && b.iter().any(u8::is_ascii_alphabetic)
    {
        return ValueKind::Token;
    }
    ValueKind::Str
}

fn is_number(v: &str) -> bool {
    let s = v.strip_prefix(['-', '+']).unwrap_or(v);
    let mut dot = false;
    let mut digits = 0;
    for c in s.bytes() {
        match c {
            b'0'..=b'9' => digits += 1,
            b'.' if !dot => dot = true,
            _ => return false,
        }
    }
    digits > 0 && s.len() <= 32
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Decodes `%XX` escapes and `+` (as a space) for classification; invalid
/// escapes stay as written. Never used for output.
fn percent_decode(s: &str) -> String {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn cap(s: &mut String) {
    if s.len() <= MAX_SHAPE_LEN {
        return;
    }
    let mut end = MAX_SHAPE_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    if let Some(cut) = s[..end].rfind(['/', '&', '?'])
        && cut > 0
    {
        end = cut;
    }
    s.truncate(end);
    s.push('…');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(target: &str) -> String {
        let (p, q) = crate::logs::split_target(target);
        shape_target(p, q).shape
    }

    #[test]
    fn pagination_keeps_its_shape_and_page() {
        let s = shape_target("/c/shoes", "page=17&sort=price");
        assert_eq!(s.shape, "/c/shoes?page=<int>&sort=<str>");
        assert_eq!(s.page, Some(17));
        assert_eq!(shape_target("/api/v2/products", "offset=40").page, Some(40));
        assert_eq!(shape_target("/search", "q=red+shoes").page, None);
        assert_eq!(shape_target("/c/shoes", "page=abc").page, None);
    }

    #[test]
    fn personal_values_become_typed_placeholders() {
        assert_eq!(
            shape("/reset?email=alice%40example.com&token=eyJhbGciOiJIUzI1NiJ9abc123"),
            "/reset?email=<email>&token=<token>"
        );
        assert_eq!(shape("/search?q=alice+smith"), "/search?q=<str>");
        assert_eq!(
            shape("/orders/123456/items/3f2a9c1d77e0"),
            "/orders/<int>/items/<hex>"
        );
        assert_eq!(
            shape("/session/0f8fad5b-d9cb-469f-a165-70867728950e"),
            "/session/<uuid>"
        );
        assert_eq!(shape("/users/alice/orders"), "/users/<name>/orders");
        assert_eq!(shape("/users/sign_in"), "/users/sign_in");
        assert_eq!(shape("/@alice"), "/<handle>");
        assert_eq!(shape("/u/bob%40mail.org"), "/u/<email>");
        assert_eq!(
            shape("/static/js/app.3f2a9c1d.js"),
            "/static/js/app.3f2a9c1d.js"
        );
        assert_eq!(shape("/img/12345678.jpg"), "/img/<int>.jpg");
        assert_eq!(shape("/product/sku-99120"), "/product/<id>");
        assert_eq!(shape("/blog/2024-03-04"), "/blog/<date>");
        assert_eq!(shape("/a%20b/c"), "/<str>/c");
        assert_eq!(shape("/c/shoes?page=2"), "/c/shoes?page=<int>");
        assert_eq!(shape("/login?next=%2Faccount"), "/login?next=<str>");
        assert_eq!(shape("/x?flag&=1&a="), "/x?flag&=<int>&a=");
        assert_eq!(shape("/x?%00evil=1"), "/x?<key>=<int>");
        assert_eq!(shape("-"), "-");
        assert_eq!(shape("*"), "*");
        assert_eq!(shape("http://evil.example/x"), "<str>");
    }

    #[test]
    fn shapes_are_bounded() {
        let long = format!("/{}", "abc/".repeat(200));
        let s = shape(&long);
        assert!(s.len() <= MAX_SHAPE_LEN + '…'.len_utf8(), "{}", s.len());
        assert!(s.ends_with('…'));
        let many: Vec<String> = (0..20).map(|i| format!("k{i}=v")).collect();
        let s = shape(&format!("/q?{}", many.join("&")));
        assert_eq!(s.matches('=').count(), MAX_QUERY_PARAMS);
        assert!(s.ends_with("&…"));
        // Hostile bytes never reach the output.
        let s = shape("/\u{1b}[31mred/\u{7}?x=\u{1b}]0;pwned");
        assert!(!s.contains('\u{1b}') && !s.contains('\u{7}'), "{s:?}");
    }

    #[test]
    fn value_kinds() {
        assert_eq!(classify_value("42"), ValueKind::Int);
        assert_eq!(classify_value("-4.5"), ValueKind::Num);
        assert_eq!(classify_value("a@b.co"), ValueKind::Email);
        assert_eq!(classify_value("a@b"), ValueKind::Str);
        assert_eq!(classify_value("deadbeef"), ValueKind::Str);
        assert_eq!(classify_value("deadbeef1"), ValueKind::Hex);
        assert_eq!(classify_value("shoes"), ValueKind::Str);
        assert_eq!(classify_value(""), ValueKind::Empty);
        assert_eq!(classify_value("99999999999999999999999"), ValueKind::Num);
        assert_eq!(percent_decode("a%40b%2"), "a@b%2");
        assert_eq!(percent_decode("%"), "%");
    }
}
