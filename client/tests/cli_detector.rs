//! End-to-end runs of the detector subcommands of the `fedsec-client`
//! binary: `synth`, `sessions` and `score`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use fedsec_detector::features::{FEATURE_NAMES, NUM_FEATURES, idx};
use fedsec_detector::logs::time::format_clf_time;
use fedsec_detector::model::ModelFile;
use fedsec_detector::synth::read_labels;
use fedsec_detector::train::{Optimizer, TrainConfig, apply_delta, train_local};
use fedsec_model::ModelSpec;

fn client(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fedsec-client"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = client(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn synth(dir: &Path, format: &str) -> serde_json::Value {
    let out = ok(&[
        "synth",
        "--tenants",
        "2",
        "--out",
        dir.to_str().unwrap(),
        "--seed",
        "9",
        "--format",
        format,
        "--median-sessions",
        "250",
        "--days",
        "1",
    ]);
    serde_json::from_str(out.trim()).unwrap()
}

/// `score --model MODEL --logs LOGS` followed by `extra`, as arguments.
fn score_args<'a>(model: &'a Path, logs: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "score",
        "--model",
        model.to_str().unwrap(),
        "--logs",
        logs.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args
}

/// Every JSON line of a successful `score` run with `extra` and `--json`.
fn score_json(model: &Path, logs: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = score_args(model, logs, extra);
    args.push("--json");
    ok(&args)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The rows of `rows` on the abuse list, in order.
fn abuse_rows(rows: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    rows.into_iter().filter(|r| r["list"] == "abuse").collect()
}

#[test]
fn synth_then_sessions_reproduces_the_labelled_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let summary = synth(dir.path(), "json");
    assert_eq!(summary["tenants"], 2);
    for name in [
        "tenant-000.log",
        "tenant-000.labels.jsonl",
        "tenant-001.log",
        "manifest.json",
        "asn.tsv",
        "crawler-ranges/googlebot.json",
    ] {
        assert!(dir.path().join(name).exists(), "{name}");
    }
    // Same seed, same files.
    let again = tempfile::tempdir().unwrap();
    synth(again.path(), "json");
    assert_eq!(
        std::fs::read(dir.path().join("tenant-001.log")).unwrap(),
        std::fs::read(again.path().join("tenant-001.log")).unwrap()
    );

    // Append hostile lines: they are counted, reported, and skipped.
    let log = dir.path().join("tenant-000.log");
    let mut text = std::fs::read(&log).unwrap();
    text.extend_from_slice(b"{\"ts\": truncated\n\xff\xfe not utf8\n1.2.3.4 - - [99/Foo/2024:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"-\"\n");
    std::fs::write(&log, &text).unwrap();
    let csv_path = dir.path().join("features.csv");
    let out = ok(&[
        "sessions",
        "--logs",
        log.to_str().unwrap(),
        "--out",
        csv_path.to_str().unwrap(),
    ]);
    let stats: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let labels = read_labels(
        std::fs::read(dir.path().join("tenant-000.labels.jsonl"))
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    assert_eq!(stats["malformed"], 3);
    // Counted by reason and by client (a line's client when it got that far).
    let by_reason = &stats["malformed_by_reason"];
    assert_eq!(
        (
            by_reason["json"].as_u64(),
            by_reason["invalid_utf8"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(by_reason["bad_field:time"].as_u64(), Some(1));
    let top: Vec<(String, u64)> =
        serde_json::from_value(stats["malformed_top_clients"].clone()).unwrap();
    assert_eq!(top, vec![("-".to_string(), 2), ("1.2.3.4".to_string(), 1)]);
    assert_eq!(stats["sessions"].as_u64().unwrap() as usize, labels.len());
    assert_eq!(
        stats["lines"].as_u64().unwrap() as usize,
        text.iter().filter(|&&b| b == b'\n').count()
    );

    let mut rdr = csv::Reader::from_path(&csv_path).unwrap();
    let header: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header.len(), 3 + NUM_FEATURES);
    assert_eq!(&header[3..], &FEATURE_NAMES.map(String::from)[..]);
    let mut rows = 0;
    for rec in rdr.records() {
        let rec = rec.unwrap();
        let key = &rec[0];
        let label = labels
            .get(key)
            .unwrap_or_else(|| panic!("no label for {key}"));
        assert_eq!(rec[2].parse::<usize>().unwrap(), label.requests);
        for v in rec.iter().skip(3) {
            assert!(v.parse::<f32>().unwrap().is_finite());
        }
        rows += 1;
    }
    assert_eq!(rows, labels.len());
}

#[test]
fn score_prints_the_most_bot_like_sessions_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), "clf");
    // A quick logistic model trained through the library on tenant 0.
    let labels = read_labels(
        std::fs::read(dir.path().join("tenant-000.labels.jsonl"))
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    let log = std::fs::File::open(dir.path().join("tenant-000.log")).unwrap();
    let ls = fedsec_detector::synth::join_labels(
        std::io::BufReader::new(log),
        Default::default(),
        Default::default(),
        &labels,
    )
    .unwrap();
    let spec = ModelSpec::logistic(NUM_FEATURES as u32);
    let w0 = spec.init_weights(1);
    let cfg = TrainConfig {
        epochs: 30,
        batch_size: 32,
        learning_rate: 0.05,
        optimizer: Optimizer::Adam,
        ..TrainConfig::default()
    };
    let out = train_local(&spec, &w0, &ls.dataset, &cfg, 1).unwrap();
    let model = dir.path().join("model.safetensors");
    ModelFile::new(spec, apply_delta(&w0, &out.delta), "test")
        .unwrap()
        .save(&model)
        .unwrap();

    // A real Googlebot (in the published ranges) and a fake one (outside).
    let log1 = dir.path().join("tenant-001.log");
    let mut text = std::fs::read_to_string(&log1).unwrap();
    for (ip, path) in [("66.249.66.7", "/a"), ("203.0.113.66", "/b")] {
        for k in 0..3 {
            text.push_str(&format!(
                "{ip} - - [04/Mar/2024:12:00:0{k} +0000] \"GET {path}{k} HTTP/1.1\" 200 900 \"-\" \"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)\"\n"
            ));
        }
    }
    std::fs::write(&log1, text).unwrap();
    let asn = dir.path().join("asn.tsv");
    let google = dir.path().join("crawler-ranges/googlebot.json");
    let (asn, google) = (asn.to_str().unwrap(), google.to_str().unwrap());
    let ranges = |top| ["--asn-db", asn, "--crawler-ranges", google, "--top", top];
    let all = score_json(&model, &log1, &ranges("4"));
    let (reports, good): (Vec<_>, Vec<_>) = all.into_iter().partition(|r| r["list"] == "abuse");
    assert_eq!(reports.len(), 4);
    assert!(good.len() <= 4, "{good:?}");
    // Good bots are listed apart, the busiest `--top` of them: a listing
    // long enough for every good bot of the log shows the 3-request
    // verified crawler (never abuse) and not the fake Googlebot. (With
    // `--top 4` whether it shows depends on how many busier good bots the
    // generated log has.)
    let good: Vec<serde_json::Value> = score_json(&model, &log1, &ranges("10000"))
        .into_iter()
        .filter(|r| r["list"] != "abuse")
        .collect();
    assert!(good.iter().all(|g| g["list"] == "good_bots"), "{good:?}");
    let verified: Vec<&str> = good
        .iter()
        .filter(|g| g["good_bot"] == "verified_crawler")
        .map(|g| g["ip"].as_str().unwrap())
        .collect();
    assert!(verified.contains(&"66.249.66.7"), "{good:?}");
    assert!(good.iter().all(|g| g["ip"] != "203.0.113.66"), "{good:?}");
    assert!(reports.iter().all(|r| r["ip"] != "66.249.66.7"));
    // Ranked by logit (no saturated ties), with evidence and reasons that
    // never rest on absences alone.
    let logits: Vec<f64> = reports
        .iter()
        .map(|r| r["logit"].as_f64().unwrap())
        .collect();
    assert!(logits.windows(2).all(|w| w[0] >= w[1]), "{logits:?}");
    assert!(
        reports[0]["probability"].as_f64().unwrap() > 0.9,
        "{logits:?}"
    );
    for r in &reports {
        let reasons = r["reasons"].as_array().unwrap();
        assert!(!reasons.is_empty() && reasons.len() <= 3, "{r}");
        assert!(reasons.iter().any(|x| x["kind"] == "presence"), "{r}");
        assert!(
            reasons
                .iter()
                .all(|x| !x["text"].as_str().unwrap().is_empty()
                    && !x["text"].as_str().unwrap().contains("the same URL"))
        );
        assert_eq!(
            r["evidence"]["requests"].as_u64(),
            r["requests"].as_u64(),
            "{r}"
        );
        assert!(
            !r["evidence"]["top_paths"].as_array().unwrap().is_empty(),
            "{r}"
        );
        assert!(r["related"]["same_ip"]["indexed"].as_bool().unwrap(), "{r}");
    }
    let text = ok(&score_args(&model, &log1, &["--top", "2"]));
    assert!(text.starts_with("Reasons compare with: "), "{text}");
    assert!(text.contains("\n#1 "), "{text}");
    assert!(text.contains("      1. "), "{text}");
    assert!(text.contains("      evidence: "), "{text}");
    assert!(text.contains("      related: same IP: "), "{text}");
    assert!(text.contains("Good bots (not abuse):"), "{text}");

    // Clear errors for a missing model and a model of the wrong width.
    let missing = client(&score_args(Path::new("/nonexistent/m"), &log1, &[]));
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("model file"));
    let narrow = dir.path().join("narrow.safetensors");
    let spec3 = ModelSpec::logistic(3);
    ModelFile::new(spec3.clone(), spec3.init_weights(0), "")
        .unwrap()
        .save(&narrow)
        .unwrap();
    let wrong = client(&score_args(&narrow, &log1, &[]));
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("takes 3 features"));
}

/// A logistic model over the 51 features with the given (feature, weight)
/// pairs and bias, saved in `dir`.
fn logistic_model(dir: &Path, weights: &[(usize, f32)], bias: f32) -> std::path::PathBuf {
    let spec = ModelSpec::logistic(NUM_FEATURES as u32);
    let mut w = vec![0.0f32; NUM_FEATURES + 1];
    for &(i, v) in weights {
        w[i] = v;
    }
    w[NUM_FEATURES] = bias;
    let path = dir.join("hand.safetensors");
    ModelFile::new(spec, w, "hand-made")
        .unwrap()
        .save(&path)
        .unwrap();
    path
}

/// `n` CLF lines of one client, 5 s apart from `start` (Unix s), each a
/// distinct page (or `path(k)`).
fn clf_session(ip: &str, ua: &str, start: i64, n: usize, path: impl Fn(usize) -> String) -> String {
    (0..n)
        .map(|k| {
            let t = format_clf_time((start + 5 * k as i64) * 1000, 0);
            format!(
                "{ip} - - [{t}] \"GET {} HTTP/1.1\" 200 5120 \"-\" \"{ua}\"\n",
                path(k)
            )
        })
        .collect()
}

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";

/// `count` people browsing with Firefox: five pages each, from
/// 198.51.100.1, .2, …, starting `gap` seconds apart from `start`.
fn firefox_visitors(count: i64, start: i64, gap: i64) -> String {
    (0..count)
        .map(|i| {
            clf_session(
                &format!("198.51.100.{}", i + 1),
                FIREFOX,
                start + gap * i,
                5,
                |k| format!("/p{k}"),
            )
        })
        .collect()
}
const T0: i64 = 1_709_510_400; // 2024-03-04T00:00:00Z

#[test]
fn score_ranks_by_logit_where_probabilities_saturate() {
    // Four bots whose probabilities are all 1.0 in f32 (logits 27 to 62),
    // arriving smallest first, and ten small human visits. Ranked by p with
    // ties by arrival (the old order), the 50-request bot came first.
    let dir = tempfile::tempdir().unwrap();
    let model = logistic_model(dir.path(), &[(idx::REQUESTS, 20.0)], 0.0);
    let mut log = String::new();
    for (i, n) in [50usize, 100, 200, 400].iter().enumerate() {
        log.push_str(&clf_session(
            &format!("203.0.113.{}", i + 1),
            "Go-http-client/1.1",
            T0 + 3600 * i as i64,
            *n,
            |k| format!("/item/{k}"),
        ));
    }
    log.push_str(&firefox_visitors(10, T0 + 20_000, 60));
    let path = dir.path().join("access.log");
    std::fs::write(&path, &log).unwrap();
    let abuse = abuse_rows(score_json(&model, &path, &["--top", "4"]));
    let requests: Vec<u64> = abuse
        .iter()
        .map(|r| r["requests"].as_u64().unwrap())
        .collect();
    assert_eq!(requests, vec![400, 200, 100, 50]);
    let logits: Vec<f64> = abuse.iter().map(|r| r["logit"].as_f64().unwrap()).collect();
    assert!(logits.windows(2).all(|w| w[0] > w[1]), "{logits:?}");
    assert!(logits[3] > 17.0, "all saturate in f32: {logits:?}");
    for r in &abuse {
        assert_eq!(r["baseline"]["source"], "scored_humans", "{r}");
        assert_eq!(r["baseline"]["references"], 10, "{r}");
        let reasons = r["reasons"].as_array().unwrap();
        assert_eq!(reasons[0]["name"], "requests", "{r}");
        assert!(
            reasons[0]["text"]
                .as_str()
                .unwrap()
                .ends_with("(typical human here: 5)"),
            "{r}"
        );
    }
    let text = ok(&score_args(&model, &path, &["--top", "4"]));
    let heads: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(heads.len(), 4, "{text}");
    assert!(heads[0].contains("(400 requests"), "{text}");
    // Printed p values differ where f32 probabilities would all read 1.000.
    let ps: Vec<&str> = heads
        .iter()
        .map(|h| h.split("p=").nth(1).unwrap().split(' ').next().unwrap())
        .collect();
    let mut distinct = ps.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "{ps:?}");
}

#[test]
fn score_shows_evidence_pagination_and_related_sessions() {
    let dir = tempfile::tempdir().unwrap();
    // Abuse = one URL hammered by a non-browser.
    let model = logistic_model(
        dir.path(),
        &[(idx::MAX_HITS_ONE_PATH, 3.0), (idx::UA_BROWSER, -4.0)],
        0.0,
    );
    let bot_ua = "python-requests/2.31.0";
    let walker = "104.82.152.130";
    let mut log = String::new();
    // The walk: 110 pages of one listing.
    log.push_str(&clf_session(walker, bot_ua, T0, 110, |k| {
        format!("/c/shoes?page={}", k + 1)
    }));
    // The same bot build from three other addresses.
    for i in 0..3 {
        log.push_str(&clf_session(
            &format!("192.0.2.{}", i + 10),
            bot_ua,
            T0 + 100 + i,
            10,
            |_| "/c/boots".to_string(),
        ));
    }
    // Behind the walker's address (NAT), two people; and ten more elsewhere.
    for (i, ua) in [FIREFOX, "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15"]
        .iter()
        .enumerate()
    {
        log.push_str(&clf_session(walker, ua, T0 + 200 + i as i64, 4, |k| {
            format!("/p/{k}/reviews?sort=new&user=alice%40example.com")
        }));
    }
    log.push_str(&firefox_visitors(10, T0 + 300, 1));
    let path = dir.path().join("access.log");
    std::fs::write(&path, &log).unwrap();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v = score_args(&model, &path, &["--top", "2"]);
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect()
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        ok(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let json = run(&["--json"]);
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["ip"], walker, "{first}");
    let reasons = first["reasons"].as_array().unwrap();
    assert_eq!(
        reasons[0]["text"],
        "paginated through /c/shoes?page=<int> (110 requests, pages 1 → 110) \
         (typical human here: 1 on their most-requested path)"
    );
    assert_eq!(reasons[0]["kind"], "presence");
    // The absence (no browser) comes after, with its context.
    assert_eq!(reasons[1]["kind"], "absence", "{first}");
    assert!(
        reasons[1]["text"]
            .as_str()
            .unwrap()
            .contains("over 110 requests and 110 pages"),
        "{first}"
    );
    let ev = &first["evidence"];
    assert_eq!(ev["requests"], 110);
    assert_eq!(ev["start"], "2024-03-04T00:00:00Z");
    assert_eq!(ev["end"], "2024-03-04T00:09:05Z");
    assert_eq!(ev["top_paths"][0]["shape"], "/c/shoes?page=<int>");
    assert_eq!(ev["top_paths"][0]["pagination"]["last"], 110);
    assert_eq!(ev["statuses"][0]["status"], 200);
    let rel = &first["related"];
    assert_eq!(rel["same_ip"]["other_sessions"], 2, "{rel}");
    assert_eq!(rel["same_ip"]["other_flagged"], 0, "{rel}");
    assert_eq!(rel["same_user_agent"]["other_sessions"], 3, "{rel}");
    assert_eq!(rel["same_user_agent"]["other_flagged"], 3, "{rel}");
    assert_eq!(
        rel["same_user_agent"]["examples"].as_array().unwrap().len(),
        3
    );
    assert_eq!(first["baseline"]["source"], "scored_humans");
    assert_eq!(first["baseline"]["references"], 12);
    // No raw personal value anywhere in the report.
    assert!(
        !json.contains("alice") && !json.contains("example.com"),
        "{json}"
    );

    let text = run(&[]);
    assert!(
        text.starts_with("Reasons compare with: 12 sessions of this log the model scores as human"),
        "{text}"
    );
    assert!(
        text.contains(
            "      1. paginated through /c/shoes?page=<int> (110 requests, pages 1 → 110)"
        ),
        "{text}"
    );
    assert!(!text.contains("same URL"), "{text}");
    assert!(
        text.contains("        GET /c/shoes?page=<int> ×110 (110 distinct; 200 ×110; pagination: pages 1 → 110)"),
        "{text}"
    );
    assert!(
        text.contains("related: same IP: 2 other sessions (0 flagged): ipua:"),
        "{text}"
    );
    assert!(
        text.contains("same user agent: 3 other sessions (3 flagged): ipua:"),
        "{text}"
    );

    // Labelled humans replace the model's own as the baseline.
    let labels = dir.path().join("labels.jsonl");
    let humans: Vec<String> = (0..10)
        .map(|i| {
            format!(
                "{{\"session\": \"ipua:{}000:198.51.100.{}:{:016x}\", \"class\": \"human\"}}\n",
                T0 + 300 + i,
                i + 1,
                fedsec_detector::paths::fnv1a(FIREFOX.as_bytes())
            )
        })
        .collect();
    std::fs::write(&labels, humans.concat()).unwrap();
    let json = run(&["--json", "--labels", labels.to_str().unwrap()]);
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["baseline"]["source"], "labelled_humans", "{first}");
    assert_eq!(first["baseline"]["references"], 10, "{first}");
    // A broken labels file is a clear error naming the line.
    std::fs::write(
        &labels,
        "{\"session\": \"x\", \"class\": \"human\"}\nnot json\n",
    )
    .unwrap();
    let out = client(
        &args(&["--labels", labels.to_str().unwrap()])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2"),
        "{out:?}"
    );
}

#[test]
fn score_reads_real_logs_and_shows_their_shapes() {
    // Real lines from Debian's fail2ban test files and a real site's log
    // (detector/tests/data/real-logs/SOURCE.md), with an untrained model.
    let dir = tempfile::tempdir().unwrap();
    let spec = ModelSpec::logistic(NUM_FEATURES as u32);
    let model = dir.path().join("m.safetensors");
    ModelFile::new(spec.clone(), spec.init_weights(3), "untrained")
        .unwrap()
        .save(&model)
        .unwrap();
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("../detector/tests/data/real-logs");
    let mut log = String::new();
    for f in [
        "fail2ban-php-url-fopen.log",
        "fail2ban-apache-badbots.log",
        "fail2ban-nginx-botsearch.log",
        "elastic-apache-logs.log",
    ] {
        log.push_str(&std::fs::read_to_string(real.join(f)).unwrap());
    }
    let path = dir.path().join("real.log");
    std::fs::write(&path, &log).unwrap();
    let text = ok(&score_args(&model, &path, &["--top", "100"]));
    // Too few human-looking sessions for a tenant baseline: it says so.
    assert!(text.starts_with("Reasons compare with: "), "{text}");
    for want in [
        "GET /index.php?n=<str> ×1",
        "GET //mysqladmin/scripts/setup.php ×1",
        "evidence: 1 requests, 2009-03-26T13:44:20Z → 2009-03-26T13:44:20Z",
        "statuses 404 ×",
    ] {
        assert!(text.contains(want), "{want} not in {text}");
    }
    for raw in ["eatmyfood", "rss20", "flav=rss"] {
        assert!(!text.contains(raw), "{raw} in {text}");
    }
    // Rules first on the same real logs: the sessions the rules vote abuse
    // on lead, whatever the model says.
    let rules: Vec<f64> = abuse_rows(score_json(
        &model,
        &path,
        &["--top", "1000", "--rank", "rules-first"],
    ))
    .iter()
    .map(|r| r["rules_score"].as_f64().unwrap())
    .collect();
    assert!(rules[0] > 0.0, "{rules:?}");
    assert!(rules.windows(2).all(|w| w[1] <= w[0]));
    // The four probes without any user agent (the user_agent rule votes abuse).
    assert_eq!(rules.iter().filter(|&&r| r > 0.0).count(), 4, "{rules:?}");
}

#[test]
fn score_rules_weight_adds_the_tenants_rules_to_the_models_logit() {
    // A model with nothing to say (logit 0 everywhere): alone it ranks the
    // busier browser sessions first; with --rules-weight the curl session
    // (the user_agent rule: an HTTP library, weight 2) comes first, at
    // logit 0 + 1.5·2.
    let dir = tempfile::tempdir().unwrap();
    let model = logistic_model(dir.path(), &[], 0.0);
    let mut log = clf_session("203.0.113.9", "curl/8.0", T0, 3, |k| format!("/a{k}"));
    log.push_str(&firefox_visitors(3, T0 + 100, 60));
    let path = dir.path().join("access.log");
    std::fs::write(&path, &log).unwrap();
    let first = |extra: &[&str]| -> (String, f64) {
        let mut args = vec!["--top", "4"];
        args.extend_from_slice(extra);
        let r = abuse_rows(score_json(&model, &path, &args))
            .into_iter()
            .next()
            .unwrap();
        (
            r["ip"].as_str().unwrap().to_string(),
            r["logit"].as_f64().unwrap(),
        )
    };
    let (ip, logit) = first(&[]);
    assert_ne!(ip, "203.0.113.9");
    assert_eq!(logit, 0.0);
    let (ip, logit) = first(&["--rules-weight", "1.5"]);
    assert_eq!(ip, "203.0.113.9");
    assert!((logit - 3.0).abs() < 1e-6, "{logit}");
    let bad = client(&score_args(&model, &path, &["--rules-weight=-1"]));
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--rules-weight"));
}

#[test]
fn score_rules_first_orders_by_the_rules_then_by_how_unusual_a_session_is() {
    // A model with nothing to say (logit 0 everywhere), so the whole order
    // comes from the rules and the local anomaly tie-break.
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), "clf");
    let model = logistic_model(dir.path(), &[], 0.0);
    let log = dir.path().join("tenant-000.log");
    let rows = abuse_rows(score_json(
        &model,
        &log,
        &["--top", "100000", "--rank", "rules-first"],
    ));
    assert!(rows.len() > 100, "{}", rows.len());
    let rules: Vec<f64> = rows
        .iter()
        .map(|r| r["rules_score"].as_f64().unwrap())
        .collect();
    let anomaly: Vec<f64> = rows
        .iter()
        .map(|r| r["anomaly_percentile"].as_f64().unwrap())
        .collect();
    // Cancelling votes print as 0, not -0.
    assert!(rules.iter().all(|r| *r != 0.0 || r.is_sign_positive()));
    // The rules' vote sum never increases down the list; within one sum the
    // anomaly percentile never increases.
    for i in 1..rows.len() {
        assert!(
            rules[i] <= rules[i - 1],
            "row {i}: {} after {}",
            rules[i],
            rules[i - 1]
        );
        if rules[i] == rules[i - 1] {
            assert!(anomaly[i] <= anomaly[i - 1] + 1e-6, "row {i}");
        }
    }
    assert!(anomaly.iter().all(|a| (0.0..=1.0).contains(a)));
    // The percentiles are ranks among this log's own sessions: they span
    // the range (how much better than the rules alone that orders a
    // tenant's bots is experiment 7's measure over 300 tenants and 3 seeds,
    // not one synthetic log's).
    let lo = anomaly.iter().copied().fold(1.0, f64::min);
    let hi = anomaly.iter().copied().fold(0.0, f64::max);
    assert!(lo < 0.1 && hi > 0.95, "{lo} {hi}");
    assert!(rules.iter().any(|&r| r > 0.0) && rules.contains(&0.0));
    // Text output names what the rank rests on.
    let text = ok(&score_args(
        &model,
        &log,
        &["--top", "3", "--rank", "rules-first"],
    ));
    assert!(text.contains("ranked by: rules' vote sum"), "{text}");
    // Two passes: not from standard input; and not mixed with --rules-weight.
    let stdin = client(&score_args(
        &model,
        Path::new("-"),
        &["--rank", "rules-first"],
    ));
    assert!(!stdin.status.success());
    assert!(String::from_utf8_lossy(&stdin.stderr).contains("reads the log twice"));
    let pipe = client(&score_args(
        &model,
        Path::new("/dev/stdin"),
        &["--rank", "rules-first"],
    ));
    assert!(!pipe.status.success());
    assert!(String::from_utf8_lossy(&pipe.stderr).contains("regular file"));
    let share_for_model = client(&score_args(&model, &log, &["--tie-anomaly-share", "0.5"]));
    assert!(!share_for_model.status.success());
    let mixed = client(&score_args(
        &model,
        &log,
        &["--rank", "rules-first", "--rules-weight", "1"],
    ));
    assert!(!mixed.status.success());
    let share = client(&score_args(
        &model,
        &log,
        &["--rank", "rules-first", "--tie-anomaly-share", "2"],
    ));
    assert!(String::from_utf8_lossy(&share.stderr).contains("--tie-anomaly-share"));
}
