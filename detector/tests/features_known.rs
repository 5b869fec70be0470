//! Features of hand-built sessions with answers computed by hand.
#![allow(clippy::unwrap_used)]

use fedsec_detector::features::{self, FEATURES, NUM_FEATURES, idx};
use fedsec_detector::logs::{LogFormat, LogReader, ReaderConfig};
use fedsec_detector::session::{Session, SessionConfig, Sessionizer, sessionize};

fn sessions(text: &str, format: LogFormat) -> Vec<Session> {
    let mut reader = LogReader::new(text.as_bytes(), ReaderConfig::with_format(format));
    let mut sz = Sessionizer::new(SessionConfig::default());
    let mut out = Vec::new();
    let stats = sessionize(&mut reader, &mut sz, |s| out.push(s), |m| panic!("{m}")).unwrap();
    assert_eq!(stats.malformed, 0);
    out
}

fn close(got: f64, want: f64, what: &str) {
    let same = (got.is_nan() && want.is_nan()) || (got - want).abs() < 1e-9;
    assert!(same, "{what}: got {got}, want {want}");
}

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36";

#[test]
fn a_browsing_person() {
    // JSON so timestamps have milliseconds; 2024-03-04 12:00 UTC.
    let line = |t: &str, m: &str, p: &str, st: u16, b: u64, r: &str| {
        format!(
            r#"{{"ts":"2024-03-04T12:{t}Z","ip":"198.51.100.7","method":"{m}","path":"{p}","status":{st},"bytes":{b},"referer":"{r}","ua":"{CHROME}"}}"#
        )
    };
    let text = [
        line(
            "00:00.000",
            "GET",
            "/",
            200,
            10_000,
            "https://www.google.com/",
        ),
        line(
            "00:00.200",
            "GET",
            "/static/app.js",
            200,
            5_000,
            "https://shop.example/",
        ),
        line(
            "00:00.300",
            "GET",
            "/static/a.css",
            304,
            0,
            "https://shop.example/",
        ),
        line(
            "00:20.000",
            "GET",
            "/c/shoes?page=2",
            200,
            20_000,
            "https://shop.example/",
        ),
        line(
            "00:20.500",
            "GET",
            "/media/p/1.jpg",
            200,
            3_000,
            "https://shop.example/c/shoes",
        ),
        line(
            "01:00.000",
            "GET",
            "/p/10001",
            200,
            30_000,
            "https://shop.example/c/shoes?page=2",
        ),
        line(
            "01:30.000",
            "POST",
            "/account/login",
            401,
            500,
            "https://shop.example/p/10001",
        ),
        line(
            "01:40.000",
            "POST",
            "/account/login",
            302,
            300,
            "https://shop.example/account/login",
        ),
    ]
    .join("\n");
    let s = sessions(&text, LogFormat::Json);
    assert_eq!(s.len(), 1);
    let f = features::extract(&s[0]);
    let r = f.raw.0;
    let want = [
        (idx::REQUESTS, 8.0),
        (idx::PAGES, 5.0),
        (idx::DURATION, 100.0),
        (idx::RATE_PER_MIN, 4.8),
        (idx::MAX_REQ_10S, 3.0),
        (idx::GAP_CV, 125f64.sqrt() / 25.0),
        (idx::MEDIAN_GAP, 25.0),
        (idx::NIGHT_SHARE, 0.0),
        (idx::ASSET_SHARE, 3.0 / 8.0),
        (idx::ASSET_COLOAD, 2.0 / 5.0),
        (idx::DISTINCT_PATH_RATIO, 7.0 / 8.0),
        (idx::DEPTH_STD, 0.8),
        (idx::SAME_DIR_SHARE, 0.25),
        (idx::EMPTY_REFERER_SHARE, 0.0),
        (idx::ONSITE_REFERER_SHARE, 7.0 / 8.0),
        (idx::ROBOTS_TXT, 0.0),
        (idx::MAX_HITS_ONE_PATH, 2.0),
        (idx::HEAD_SHARE, 0.0),
        (idx::POST_SHARE, 0.25),
        (idx::STATUS_4XX_SHARE, 1.0 / 8.0),
        (idx::STATUS_404_SHARE, 0.0),
        (idx::STATUS_403_SHARE, 0.0),
        (idx::STATUS_304_SHARE, 1.0 / 8.0),
        (idx::MEAN_BYTES, 8_600.0),
        (idx::LOGIN_ATTEMPTS, 2.0),
        (idx::LOGIN_FAILURE_RATIO, 0.5),
        (idx::PAYMENT_ATTEMPTS, 0.0),
        (idx::PAYMENT_FAILURE_RATIO, 0.0),
        (idx::ADD_TO_CART_RATE, 0.0),
        (idx::UA_KNOWN_BOT, 0.0),
        (idx::UA_HTTP_LIBRARY, 0.0),
        (idx::UA_EMPTY, 0.0),
        (idx::UA_BROWSER, 1.0),
        (idx::UA_STALE_BROWSER, 0.0),
        (idx::SESSION_ID_MISSING, 1.0),
        (idx::USER_MISSING, 1.0),
        (idx::OUTCOME_MISSING, 1.0),
        (idx::ASN_MISSING, 1.0),
        // Across sessions: this is the only session in the log.
        (idx::CLIENT_REQUESTS_1H, 8.0),
        (idx::CLIENT_USER_AGENTS_1H, 1.0),
        (idx::CLIENT_ACCOUNTS_1H, 0.0),
        (idx::PREFIX_CLIENTS_1H, 1.0),
        (idx::PREFIX_LOGIN_FAILURES_1H, 1.0),
        (idx::UA_CLIENTS_1H, 1.0),
        (idx::UA_LOGIN_FAILURES_1H, 1.0),
        (idx::ACCOUNT_CLIENTS_1H, f64::NAN),
        (idx::ASN_LOGIN_FAILURES_1H, f64::NAN),
        (idx::CLIENT_MALFORMED_1H, 0.0),
        (idx::CRAWLER_VERIFIED, f64::NAN),
        (idx::CRAWLER_SPOOFED, f64::NAN),
        (idx::CRAWLER_RANGES_MISSING, 1.0),
    ];
    assert_eq!(want.len(), NUM_FEATURES);
    for (i, v) in want {
        close(r[i], v, FEATURES[i].name);
        close(
            f64::from(f.values[i]),
            f64::from(FEATURES[i].transform.apply(v)),
            FEATURES[i].name,
        );
    }
}

#[test]
fn a_library_scraper_in_clf() {
    let mut lines = vec![format!(
        r#"203.0.113.9 - - [04/Mar/2024:02:00:00 +0000] "GET /robots.txt HTTP/1.1" 200 300 "-" "python-requests/2.31.0""#
    )];
    for k in 1..=12 {
        let status = if k % 4 == 0 { 404 } else { 200 };
        let method = if k == 6 { "HEAD" } else { "GET" };
        lines.push(format!(
            r#"203.0.113.9 - - [04/Mar/2024:02:00:{:02} +0000] "{method} /p/{k} HTTP/1.1" {status} 1000 "-" "python-requests/2.31.0""#,
            k
        ));
    }
    let s = sessions(&lines.join("\n"), LogFormat::Clf);
    assert_eq!(s.len(), 1);
    let r = features::extract(&s[0]).raw.0;
    close(r[idx::REQUESTS], 13.0, "requests");
    close(r[idx::PAGES], 13.0, "pages");
    close(r[idx::MAX_REQ_10S], 10.0, "max 10 s"); // seconds 0..=9 of a 1-per-second walk
    close(r[idx::GAP_CV], 0.0, "regular gaps");
    close(r[idx::MEDIAN_GAP], 1.0, "median gap");
    close(r[idx::NIGHT_SHARE], 1.0, "02:00 is night");
    close(r[idx::ROBOTS_TXT], 1.0, "robots");
    close(r[idx::EMPTY_REFERER_SHARE], 1.0, "no referers");
    close(r[idx::HEAD_SHARE], 1.0 / 13.0, "head");
    close(r[idx::STATUS_404_SHARE], 3.0 / 13.0, "404");
    close(
        r[idx::SAME_DIR_SHARE],
        11.0 / 12.0,
        "/p/ walk after robots.txt",
    );
    close(r[idx::UA_HTTP_LIBRARY], 1.0, "library UA");
    close(r[idx::UA_BROWSER], 0.0, "not a browser");
    close(r[idx::ASSET_COLOAD], 0.0, "no assets");
}

#[test]
fn json_outcomes_override_status_and_session_ids_span_addresses() {
    let line = |t: &str, ip: &str, m: &str, p: &str, st: u16, extra: &str| {
        format!(
            r#"{{"ts":"2024-03-04T{t}+01:00","ip":"{ip}","method":"{m}","path":"{p}","status":{st},"bytes":100,"referer":null,"ua":"{CHROME}","session_id":"abc"{extra}}}"#
        )
    };
    let text = [
        line("02:00:00.000", "192.0.2.1", "GET", "/p/1", 200, ""),
        line(
            "02:00:05.000",
            "192.0.2.2",
            "POST",
            "/cart/add",
            200,
            r#","user":"u1""#,
        ),
        line(
            "02:00:09.000",
            "192.0.2.3",
            "POST",
            "/login",
            200,
            r#","outcome":"login_failure","asn":64500"#,
        ),
        line(
            "02:00:12.000",
            "192.0.2.3",
            "POST",
            "/checkout/pay",
            402,
            r#","outcome":"payment_success""#,
        ),
        line(
            "02:00:15.000",
            "192.0.2.3",
            "POST",
            "/checkout/pay",
            200,
            r#","outcome":"failure""#,
        ),
    ]
    .join("\n");
    let s = sessions(&text, LogFormat::Json);
    assert_eq!(s.len(), 1, "one session id, three addresses");
    assert_eq!(s[0].key.to_string(), "sid:1709514000000:abc");
    let r = features::extract(&s[0]).raw.0;
    close(r[idx::NIGHT_SHARE], 1.0, "02:00 local");
    close(r[idx::LOGIN_ATTEMPTS], 1.0, "login");
    close(
        r[idx::LOGIN_FAILURE_RATIO],
        1.0,
        "outcome says failure despite 200",
    );
    close(r[idx::PAYMENT_ATTEMPTS], 2.0, "payments");
    close(
        r[idx::PAYMENT_FAILURE_RATIO],
        0.5,
        "outcome beats status both ways",
    );
    close(
        r[idx::ADD_TO_CART_RATE],
        1.0 / 5.0,
        "one add-to-cart over five pages",
    );
    close(r[idx::SESSION_ID_MISSING], 0.0, "sid");
    close(r[idx::USER_MISSING], 0.0, "user");
    close(r[idx::OUTCOME_MISSING], 0.0, "outcome");
    close(r[idx::ASN_MISSING], 0.0, "asn");
    // One page-gap undefined features map to exactly 0.
    let single = sessions(
        &line("12:00:00.000", "192.0.2.9", "GET", "/", 200, ""),
        LogFormat::Json,
    );
    let f = features::extract(&single[0]);
    for i in [
        idx::GAP_CV,
        idx::MEDIAN_GAP,
        idx::DEPTH_STD,
        idx::SAME_DIR_SHARE,
    ] {
        assert!(!f.raw.is_defined(i));
        assert_eq!(f.values[i], 0.0, "{}", FEATURES[i].name);
    }
}
