//! Evidence read through the public reader and sessionizer: shapes that
//! keep a request's structure and drop its values (real log samples, see
//! `tests/data/real-logs/SOURCE.md`, and lines with personal data), page
//! walks described as pagination, and features unchanged by evidence.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use fedsec_detector::evidence::Evidence;
use fedsec_detector::explain::{Explanation, ReasonContext, ReasonKind, baseline_for, reasons};
use fedsec_detector::features::{self, NUM_FEATURES, idx};
use fedsec_detector::logs::{LogReader, ReaderConfig};
use fedsec_detector::session::{Session, SessionConfig, Sessionizer, sessionize};

fn sample(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/real-logs")
        .join(name);
    std::fs::read_to_string(p).unwrap()
}

fn read(text: &str, cfg: ReaderConfig, evidence: bool) -> Vec<Session> {
    let mut reader = LogReader::new(text.as_bytes(), cfg);
    let mut sz = Sessionizer::new(SessionConfig::default()).with_evidence(evidence);
    let mut out = Vec::new();
    sessionize(&mut reader, &mut sz, |s| out.push(s), |_| {}).unwrap();
    out
}

/// Every query value of a shape is a placeholder (or empty).
fn values_are_placeholders(shape: &str) -> bool {
    let Some((_, q)) = shape.split_once('?') else {
        return true;
    };
    q.split('&').all(|pair| match pair.split_once('=') {
        None => true,
        Some((_, v)) => v.is_empty() || (v.starts_with('<') && v.ends_with('>')),
    })
}

const TRAEFIK: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_count "$frontend" "$backend" $duration"#;

#[test]
fn real_samples_keep_query_shapes_but_never_their_values() {
    let mut shapes: Vec<String> = Vec::new();
    for (file, format) in [
        ("nasa-jul95.log", "auto"),
        ("elastic-apache-logs.log", "auto"),
        ("fail2ban-apache-badbots.log", "auto"),
        ("fail2ban-php-url-fopen.log", "auto"),
        ("fail2ban-nginx-botsearch.log", "auto"),
        ("fail2ban-nginx-bad-request.log", "auto"),
        ("fail2ban-traefik-auth.log", TRAEFIK),
    ] {
        let cfg = ReaderConfig::from_log_format(format).unwrap();
        for s in read(&sample(file), cfg, true) {
            let e = Evidence::of(&s, 64);
            assert!(e.shapes_kept, "{file}");
            let listed: u64 = e.top_paths.iter().map(|p| p.requests).sum();
            assert_eq!(listed + e.other_requests, s.requests.len() as u64, "{file}");
            assert_eq!(e.requests, s.requests.len());
            assert!(e.start <= e.end);
            shapes.extend(
                e.top_paths
                    .iter()
                    .map(|p| format!("{} {}", p.method, p.shape)),
            );
        }
    }
    for want in [
        "GET /index.php?n=<str>",
        "GET /blog/tags/puppet?flav=<str>",
        "GET /doc/index.html?<key>",
        "POST /<id>/trackback/",
        "GET //phpMyAdmin-2.8.2.3/scripts/setup.php",
        "GET /dashboard/",
    ] {
        assert!(
            shapes.iter().any(|s| s == want),
            "{want} not in {shapes:#?}"
        );
    }
    for s in &shapes {
        assert!(values_are_placeholders(s), "{s}");
        for raw in ["eatmyfood", "rss20", "SearchResponse", "pizza"] {
            assert!(!s.contains(raw), "{s} shows {raw}");
        }
    }
}

#[test]
fn personal_values_never_reach_the_evidence() {
    let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
    let targets = [
        "/account/reset?email=alice.smith%40example.com&token=eyJhbGciOiJIUzI1NiJ9.c2VjcmV0",
        "/users/alice.smith/orders/99812",
        "/search?q=john+doe+42+main+street",
        "/checkout/pay?card=4111111111111111&cvv=123",
        "/session/0f8fad5b-d9cb-469f-a165-70867728950e?ref=bob%40mail.org",
        "/u/bob/profile?phone=%2B4917612345678",
    ];
    let text: String = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!(
                "198.51.100.4 - - [04/Mar/2024:12:00:{:02} +0000] \"GET {t} HTTP/1.1\" 200 512 \"-\" \"{ua}\"\n",
                i * 5
            )
        })
        .collect();
    let sessions = read(&text, ReaderConfig::default(), true);
    assert_eq!(sessions.len(), 1);
    let e = Evidence::of(&sessions[0], 10);
    let json = serde_json::to_string(&e).unwrap();
    for raw in [
        "alice",
        "example.com",
        "eyJhbG",
        "99812",
        "john",
        "main",
        "4111",
        "cvv=1",
        "0f8fad5b",
        "bob",
        "mail.org",
        "4917612345678",
    ] {
        assert!(!json.contains(raw), "{raw} leaked: {json}");
    }
    let shapes: Vec<&str> = e.top_paths.iter().map(|p| p.shape.as_str()).collect();
    for want in [
        "/account/reset?email=<email>&token=<token>",
        "/users/<name>/orders/<int>",
        "/search?q=<str>",
        "/checkout/pay?card=<int>&cvv=<int>",
        "/session/<uuid>?ref=<email>",
        "/u/<name>/profile?phone=<num>",
    ] {
        assert!(shapes.contains(&want), "{want} not in {shapes:?}");
    }
}

/// A scraper walking 110 pages of one listing, 6 s apart.
fn pagination_walk() -> String {
    (1..=110)
        .map(|k| {
            format!(
                "104.82.152.130 - - [04/Mar/2024:00:{:02}:{:02} +0000] \"GET /c/shoes?page={k} HTTP/1.1\" {} 14872 \"-\" \"Apache-HttpClient/4.4.1 (Java/1.8.0_65)\"\n",
                (k * 6) / 60,
                (k * 6) % 60,
                if k > 108 { 404 } else { 200 }
            )
        })
        .collect()
}

fn attributions_on(features: &[usize]) -> Explanation {
    let mut a = vec![0.0f32; NUM_FEATURES];
    for (rank, &i) in features.iter().enumerate() {
        a[i] = 3.0 - rank as f32 * 0.5;
    }
    Explanation {
        logit: 9.0,
        baseline_logit: -3.0,
        attributions: a,
        steps: 0,
        completeness_error: 0.0,
    }
}

/// The first reason for `s` with only `feature` attributed, beside its evidence (5 paths).
fn top_reason(s: &Session, feature: usize) -> String {
    let e = Evidence::of(s, 5);
    let f = features::extract(s);
    let typical = baseline_for(&f.values);
    let ctx = ReasonContext {
        typical: &typical,
        typical_raw: None,
        evidence: Some(&e),
    };
    let r = reasons(&attributions_on(&[feature]), &f.values, &f.raw, &ctx, 1);
    r[0].text.clone()
}

#[test]
fn a_pagination_walk_is_described_as_pagination() {
    let sessions = read(&pagination_walk(), ReaderConfig::default(), true);
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    let f = features::extract(s);
    // The features see one path hit 110 times (query strings are not features).
    assert_eq!(f.raw.0[idx::MAX_HITS_ONE_PATH], 110.0);
    let e = Evidence::of(s, 5);
    let walk = e.pagination_of_most_hit().unwrap();
    assert_eq!(walk.shape, "/c/shoes?page=<int>");
    let w = walk.pagination.unwrap();
    assert_eq!((w.first, w.last, w.forward, w.back), (1, 110, 109, 0));
    assert_eq!((walk.distinct, walk.distinct_capped), (110, false));
    assert_eq!(
        walk.describe(),
        "GET /c/shoes?page=<int> ×110 (110 distinct; 200 ×108, 404 ×2; pagination: pages 1 → 110)"
    );
    assert_eq!(e.statuses_line(), "200 ×108, 404 ×2");

    let ex = attributions_on(&[
        idx::MAX_HITS_ONE_PATH,
        idx::DISTINCT_PATH_RATIO,
        idx::MEDIAN_GAP,
    ]);
    let typical = baseline_for(&f.values);
    let ctx = ReasonContext {
        typical: &typical,
        typical_raw: None,
        evidence: Some(&e),
    };
    let r = reasons(&ex, &f.values, &f.raw, &ctx, 3);
    let texts: Vec<&str> = r.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(
        texts[0],
        "paginated through /c/shoes?page=<int> (110 requests, pages 1 → 110)"
    );
    assert!(texts.iter().all(|t| !t.contains("same URL")), "{texts:?}");
    // Described once, not once per feature that saw the repetition.
    assert_eq!(texts.iter().filter(|t| t.contains("paginated")).count(), 1);
    assert!(r.iter().all(|r| r.kind == ReasonKind::Presence));

    // Without evidence (the old wording): "hit the same URL 110 times".
    let bare = ReasonContext {
        evidence: None,
        ..ctx
    };
    let old = reasons(&ex, &f.values, &f.raw, &bare, 1);
    assert_eq!(old[0].text, "hit the same URL 110 times");

    // Against a tenant's humans, the typical value beside a page walk says
    // what it counts (not a bare "3" after "110 requests, pages 1 → 110").
    let mut typical_raw = [f64::NAN; NUM_FEATURES];
    typical_raw[idx::MAX_HITS_ONE_PATH] = 3.0;
    let humans = ReasonContext {
        typical_raw: Some(&typical_raw),
        ..ctx
    };
    let r = reasons(&ex, &f.values, &f.raw, &humans, 1);
    assert_eq!(
        r[0].text,
        "paginated through /c/shoes?page=<int> (110 requests, pages 1 → 110) \
         (typical human here: 3 on their most-requested path)"
    );
    assert_eq!(r[0].typical.as_deref(), Some("3"));
    let r = reasons(
        &ex,
        &f.values,
        &f.raw,
        &ReasonContext {
            evidence: None,
            ..humans
        },
        1,
    );
    assert_eq!(
        r[0].text,
        "hit the same URL 110 times (typical human here: 3)"
    );
}

#[test]
fn a_path_hit_with_two_methods_is_counted_as_the_path_not_as_one_method() {
    // A stuffer alternating GET and POST on the login page: the feature
    // counts the path (40 hits), and no single method was sent 40 times.
    let ua = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15";
    let mut text = String::new();
    for k in 0..40 {
        let method = if k % 2 == 0 { "GET" } else { "POST" };
        text.push_str(&format!(
            "203.0.113.7 - - [04/Mar/2024:02:00:{k:02} +0000] \"{method} /account/login HTTP/1.1\" 200 40 \"-\" \"{ua}\"\n"
        ));
    }
    let sessions = read(&text, ReaderConfig::default(), true);
    let s = &sessions[0];
    let e = Evidence::of(s, 5);
    let f = features::extract(s);
    assert_eq!(f.raw.0[idx::MAX_HITS_ONE_PATH], 40.0);
    assert_eq!(e.most_hit_shapes().len(), 2);
    assert_eq!(
        top_reason(s, idx::MAX_HITS_ONE_PATH),
        "hit /account/login 40 times (GET ×20, POST ×20)"
    );
}

#[test]
fn hammering_one_url_and_shuffled_pages_are_not_pagination() {
    let ua = "python-requests/2.31.0";
    let mut text = String::new();
    for k in 0..40 {
        text.push_str(&format!(
            "203.0.113.5 - - [04/Mar/2024:01:00:{:02} +0000] \"POST /api/login HTTP/1.1\" 401 40 \"-\" \"{ua}\"\n",
            k
        ));
    }
    // Pages out of order: a cache warmer or a random sampler, not a walk.
    for (k, page) in [7, 2, 9, 1, 8, 3, 6, 4, 5, 2, 9].iter().enumerate() {
        text.push_str(&format!(
            "203.0.113.6 - - [04/Mar/2024:01:01:{:02} +0000] \"GET /c/boots?page={page} HTTP/1.1\" 200 900 \"-\" \"{ua}\"\n",
            k
        ));
    }
    let sessions = read(&text, ReaderConfig::default(), true);
    let login = sessions.iter().find(|s| s.ip == "203.0.113.5").unwrap();
    let e = Evidence::of(login, 5);
    assert!(e.pagination_of_most_hit().is_none());
    assert_eq!(
        top_reason(login, idx::MAX_HITS_ONE_PATH),
        "hit POST /api/login 40 times"
    );
    let shuffled = sessions.iter().find(|s| s.ip == "203.0.113.6").unwrap();
    let e = Evidence::of(shuffled, 5);
    assert!(e.top_paths[0].pagination.is_none(), "{:?}", e.top_paths[0]);
    assert!(e.pagination_of_most_hit().is_none());
}

#[test]
fn evidence_leaves_the_feature_vector_unchanged() {
    for text in [
        pagination_walk(),
        sample("elastic-apache-logs.log"),
        sample("fail2ban-php-url-fopen.log"),
        sample("nasa-jul95.log"),
    ] {
        let with = read(&text, ReaderConfig::default(), true);
        let without = read(&text, ReaderConfig::default(), false);
        assert_eq!(with.len(), without.len());
        for (a, b) in with.iter().zip(&without) {
            assert!(a.shapes.is_some() && b.shapes.is_none());
            assert_eq!(a.key, b.key);
            assert_eq!(features::extract(a).values, features::extract(b).values);
        }
    }
}
