#![allow(clippy::field_reassign_with_default)]

use super::*;
use crate::features::{NUM_FEATURES, RawFeatures};

/// A session with every feature undefined except those given.
fn facts(ua: &str, set: &[(usize, f64)]) -> SessionFacts {
    let mut raw = [f64::NAN; NUM_FEATURES];
    for &(i, v) in set {
        raw[i] = v;
    }
    SessionFacts {
        key: "sid:0:a".into(),
        ip: "192.0.2.1".into(),
        addr: "192.0.2.1".parse().ok(),
        user_agent: ua.into(),
        start_ms: 0,
        end_ms: 1000,
        path_hashes: vec![fnv1a(b"/")],
        raw: RawFeatures(raw),
    }
}

fn votes(cfg: &RuleConfig, f: &SessionFacts) -> Vec<(&'static str, Vote)> {
    cfg.evaluate(f)
        .into_iter()
        .map(|x| (x.rule, x.vote))
        .collect()
}

fn only(rule: &'static str, vote: Vote) -> Vec<(&'static str, Vote)> {
    vec![(rule, vote)]
}

const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0";

#[test]
fn a_session_with_no_signal_gets_no_vote() {
    let cfg = RuleConfig::default();
    assert!(votes(&cfg, &facts(BROWSER, &[(idx::REQUESTS, 3.0)])).is_empty());
}

#[test]
fn user_agent_rule_votes_on_empty_library_listed_and_allowed_agents() {
    let cfg = RuleConfig::default();
    assert_eq!(
        votes(&cfg, &facts("", &[])),
        only("user_agent", Vote::Abuse)
    );
    assert_eq!(
        votes(&cfg, &facts("-", &[])),
        only("user_agent", Vote::Abuse)
    );
    assert_eq!(
        votes(&cfg, &facts("curl/8.5", &[(idx::UA_HTTP_LIBRARY, 1.0)])),
        only("user_agent", Vote::Abuse)
    );
    assert_eq!(
        votes(&cfg, &facts("Mozilla/5.0 sqlmap/1.8", &[])),
        only("user_agent", Vote::Abuse)
    );
    let mut allow = RuleConfig::default();
    allow.user_agent.allow_substrings = vec!["ShopMonitor".into()];
    assert_eq!(
        votes(
            &allow,
            &facts("curl/8 shopmonitor", &[(idx::UA_HTTP_LIBRARY, 1.0)])
        ),
        only("user_agent", Vote::NotAbuse)
    );
    // A native app's own HTTP stack is no HTTP-library vote (an API
    // tenant's Android users send okhttp/4.x).
    assert!(
        votes(
            &cfg,
            &facts("okhttp/4.12.0", &[(idx::UA_HTTP_LIBRARY, 1.0)])
        )
        .is_empty()
    );
    let mut strict = RuleConfig::default();
    strict.user_agent.app_stacks.clear();
    assert_eq!(
        votes(
            &strict,
            &facts("okhttp/4.12.0", &[(idx::UA_HTTP_LIBRARY, 1.0)])
        ),
        only("user_agent", Vote::Abuse)
    );
    let mut off = RuleConfig::default();
    off.user_agent.empty = false;
    off.user_agent.http_library = false;
    assert!(votes(&off, &facts("", &[(idx::UA_HTTP_LIBRARY, 1.0)])).is_empty());
    off.user_agent.weight = 0.0;
    assert!(votes(&off, &facts("sqlmap", &[])).is_empty());
}

#[test]
fn crawler_rule_needs_ranges_and_tells_spoofed_from_verified() {
    let cfg = RuleConfig::default();
    let bot = "Mozilla/5.0 (compatible; Googlebot/2.1)";
    assert_eq!(
        votes(
            &cfg,
            &facts(
                bot,
                &[(idx::UA_KNOWN_BOT, 1.0), (idx::CRAWLER_SPOOFED, 1.0)]
            )
        ),
        only("crawler", Vote::Abuse)
    );
    assert_eq!(
        votes(
            &cfg,
            &facts(
                bot,
                &[(idx::UA_KNOWN_BOT, 1.0), (idx::CRAWLER_VERIFIED, 1.0)]
            )
        ),
        only("crawler", Vote::NotAbuse)
    );
    // No ranges loaded: both flags 0, the rule abstains.
    let unknown = [
        (idx::UA_KNOWN_BOT, 1.0),
        (idx::CRAWLER_SPOOFED, 0.0),
        (idx::CRAWLER_VERIFIED, 0.0),
        (idx::CRAWLER_RANGES_MISSING, 1.0),
    ];
    assert!(votes(&cfg, &facts(bot, &unknown)).is_empty());
}

#[test]
fn honeypot_and_robots_rules() {
    let mut cfg = RuleConfig::default();
    cfg.honeypot.paths = vec!["/trap/a1".into()];
    let mut f = facts(BROWSER, &[]);
    f.path_hashes.push(fnv1a(b"/trap/a1"));
    assert_eq!(votes(&cfg, &f), only("honeypot", Vote::Abuse));
    f.path_hashes.pop();
    assert!(votes(&cfg, &f).is_empty());

    assert_eq!(
        votes(&cfg, &facts(BROWSER, &[(idx::ROBOTS_TXT, 1.0)])),
        only("robots_txt", Vote::Abuse)
    );
    // A declared bot fetching robots.txt is what robots.txt is for.
    assert!(
        votes(
            &cfg,
            &facts(
                "Bingbot",
                &[(idx::ROBOTS_TXT, 1.0), (idx::UA_KNOWN_BOT, 1.0)]
            )
        )
        .is_empty()
    );
}

#[test]
fn failure_count_rules_fire_at_their_minimum() {
    let cfg = RuleConfig::default();
    let logins = |n: f64, ratio: f64| {
        facts(
            BROWSER,
            &[(idx::LOGIN_ATTEMPTS, n), (idx::LOGIN_FAILURE_RATIO, ratio)],
        )
    };
    assert_eq!(
        votes(&cfg, &logins(5.0, 1.0)),
        only("failed_logins", Vote::Abuse)
    );
    assert!(votes(&cfg, &logins(8.0, 0.5)).is_empty(), "4 failures < 5");
    assert_eq!(
        votes(&cfg, &logins(10.0, 0.5)),
        only("failed_logins", Vote::Abuse)
    );
    let pay = facts(
        BROWSER,
        &[
            (idx::PAYMENT_ATTEMPTS, 3.0),
            (idx::PAYMENT_FAILURE_RATIO, 1.0),
        ],
    );
    assert_eq!(votes(&cfg, &pay), only("declined_payments", Vote::Abuse));
    let two = facts(
        BROWSER,
        &[
            (idx::PAYMENT_ATTEMPTS, 2.0),
            (idx::PAYMENT_FAILURE_RATIO, 1.0),
        ],
    );
    assert!(votes(&cfg, &two).is_empty());
}

#[test]
fn share_rules_need_enough_requests() {
    let cfg = RuleConfig::default();
    let flood = |n: f64, share: f64| {
        facts(
            BROWSER,
            &[(idx::REQUESTS, n), (idx::STATUS_4XX_SHARE, share)],
        )
    };
    assert_eq!(
        votes(&cfg, &flood(10.0, 0.6)),
        only("status_4xx_flood", Vote::Abuse)
    );
    assert!(votes(&cfg, &flood(9.0, 1.0)).is_empty());
    assert!(votes(&cfg, &flood(50.0, 0.4)).is_empty());
    let head = |n: f64, share: f64| facts(BROWSER, &[(idx::REQUESTS, n), (idx::HEAD_SHARE, share)]);
    assert_eq!(
        votes(&cfg, &head(5.0, 0.2)),
        only("head_share", Vote::Abuse)
    );
    assert!(votes(&cfg, &head(4.0, 1.0)).is_empty());
    assert!(votes(&cfg, &head(20.0, 0.05)).is_empty());
    // An announced monitor checking with HEAD is doing its job.
    let monitor = facts(MONITOR, &[(idx::REQUESTS, 20.0), (idx::HEAD_SHARE, 1.0)]);
    assert!(votes(&cfg, &monitor).is_empty());
}

const MONITOR: &str = "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)";

#[test]
fn timing_rule_votes_both_ways_and_abstains_in_between() {
    let cfg = RuleConfig::default();
    let t = |pages: f64, cv: f64| facts(BROWSER, &[(idx::PAGES, pages), (idx::GAP_CV, cv)]);
    assert_eq!(votes(&cfg, &t(5.0, 0.1)), only("timing", Vote::Abuse));
    assert_eq!(votes(&cfg, &t(6.0, 1.4)), only("timing", Vote::NotAbuse));
    assert!(votes(&cfg, &t(6.0, 0.5)).is_empty());
    assert!(votes(&cfg, &t(4.0, 0.0)).is_empty(), "too few pages");
    // Polling on a schedule is what an announced monitor does; a scanner or
    // a headless browser announcing itself still gets the vote.
    let polled = |ua: &str| facts(ua, &[(idx::PAGES, 30.0), (idx::GAP_CV, 0.01)]);
    assert!(votes(&cfg, &polled(MONITOR)).is_empty());
    assert!(
        votes(&cfg, &polled("Mozilla/5.0 HeadlessChrome/122.0.0.0"))
            .contains(&("timing", Vote::Abuse))
    );
    let w: Vec<f64> = cfg
        .evaluate(&t(6.0, 1.4))
        .iter()
        .map(|f| f.weight)
        .collect();
    assert_eq!(w, vec![0.5]);
}

#[test]
fn browser_rule_votes_not_abuse_only_without_failures() {
    let cfg = RuleConfig::default();
    let b = |coload: f64, failed: f64| {
        facts(
            BROWSER,
            &[
                (idx::UA_BROWSER, 1.0),
                (idx::ASSET_COLOAD, coload),
                (idx::LOGIN_ATTEMPTS, failed),
                (idx::LOGIN_FAILURE_RATIO, 1.0),
            ],
        )
    };
    assert_eq!(votes(&cfg, &b(0.8, 0.0)), only("browser", Vote::NotAbuse));
    assert!(votes(&cfg, &b(0.2, 0.0)).is_empty());
    assert!(votes(&cfg, &b(0.9, 1.0)).is_empty());
}

#[test]
fn validation_names_the_key() {
    let mut cfg = RuleConfig::default();
    cfg.timing.min_pages = 2;
    assert_eq!(
        cfg.validate().unwrap_err().to_string(),
        "labels.rules.timing.min_pages: must be ≥ 3 (got 2)"
    );
    let mut cfg = RuleConfig::default();
    cfg.head_share.min_share = 1.5;
    assert!(
        cfg.validate()
            .unwrap_err()
            .to_string()
            .starts_with("labels.rules.head_share.min_share")
    );
    let mut cfg = RuleConfig::default();
    cfg.honeypot.paths = vec!["trap".into()];
    assert!(
        cfg.validate()
            .unwrap_err()
            .to_string()
            .starts_with("labels.rules.honeypot.paths")
    );
    let mut cfg = RuleConfig::default();
    cfg.margin = 0.0;
    assert!(cfg.validate().is_err());
    assert!(RuleConfig::default().validate().is_ok());
}

#[test]
fn unknown_keys_are_errors_and_partial_tables_keep_defaults() {
    let cfg: RuleConfig = toml::from_str("[timing]\nmax_cv = 0.2\n").unwrap();
    assert_eq!(cfg.timing.max_cv, 0.2);
    assert_eq!(cfg.timing.min_pages, 5);
    assert_eq!(cfg.failed_logins, RuleConfig::default().failed_logins);
    let e = toml::from_str::<RuleConfig>("[timing]\nmax_cvv = 0.2\n").unwrap_err();
    assert!(e.to_string().contains("max_cvv"), "{e}");
}

#[test]
fn the_labeller_sums_votes_abstains_within_the_margin_and_scales_confidence() {
    use super::super::{Labeller, OutcomeIndex};
    let l = Labeller::new(RuleConfig::default(), OutcomeIndex::default()).unwrap();
    // Empty UA (2) → abuse, confidence 2 / (2·1) = 1.
    let a = l.label(&facts("", &[]));
    assert_eq!((a.vote, a.score, a.confidence), (Vote::Abuse, 2.0, 1.0));
    // Human timing (−0.5) alone stays within the margin: abstain.
    let h = l.label(&facts(BROWSER, &[(idx::PAGES, 6.0), (idx::GAP_CV, 1.5)]));
    assert_eq!((h.vote, h.confidence), (Vote::Abstain, 0.0));
    // Browser (−1) and human timing (−0.5): not abuse at 0.75.
    let n = l.label(&facts(
        BROWSER,
        &[
            (idx::PAGES, 6.0),
            (idx::GAP_CV, 1.5),
            (idx::UA_BROWSER, 1.0),
            (idx::ASSET_COLOAD, 1.0),
        ],
    ));
    assert_eq!((n.vote, n.confidence), (Vote::NotAbuse, 0.75));
    // Conflicting votes cancel: robots.txt (+1) against browser (−1) → abstain.
    let c = l.label(&facts(
        BROWSER,
        &[
            (idx::ROBOTS_TXT, 1.0),
            (idx::UA_BROWSER, 1.0),
            (idx::ASSET_COLOAD, 1.0),
        ],
    ));
    assert_eq!(c.vote, Vote::Abstain);
    let mut cov = super::super::Coverage::default();
    for x in [&a, &h, &n, &c] {
        cov.add(x);
    }
    assert_eq!(
        (
            cov.sessions,
            cov.abuse,
            cov.not_abuse,
            cov.abstained,
            cov.conflicts
        ),
        (4, 1, 1, 2, 2)
    );
    assert_eq!(cov.rules["browser"].not_abuse, 2);
    assert_eq!(cov.labelled_share(), 0.5);
}
