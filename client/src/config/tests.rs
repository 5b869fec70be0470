//! Unit tests of the parent module.
use super::*;

const MINIMAL: &str = r#"
endpoint = "https://localhost:7443"
[tls]
ca = "pki/ca.pem"
cert = "pki/clients/client-0001.pem"
key = "pki/clients/client-0001.key"
[data]
watch_dir = "logs"
[privacy]
max_epsilon = 8.0
"#;

#[test]
fn minimal_config_gets_the_documented_defaults() {
    let c = ClientConfig::from_toml_str(MINIMAL).unwrap();
    assert_eq!(c.state_dir, PathBuf::from("fedsec-client-state"));
    assert_eq!(c.job, None);
    assert_eq!(c.privacy.delta, 1e-5);
    assert_eq!(c.privacy.min_noise_multiplier, 0.5);
    assert!(c.privacy.refuse_noise_disabled);
    assert!(
        !c.privacy.trust_coordinator_sampling,
        "participation basis by default"
    );
    assert_eq!(c.privacy.min_batch_size, 16);
    assert_eq!(c.privacy.min_examples_per_update, 32);
    assert_eq!(c.privacy.max_learning_rate_steps, 100.0);
    assert_eq!(c.privacy.accountant, crate::AccountantKind::Pld);
    assert_eq!(c.data.holdout_fraction, 0.2);
    assert_eq!(c.data.min_examples, 20);
    assert_eq!(c.data.log_suffix, ".log");
    assert_eq!(c.timing, TimingConfig::default());
    assert_eq!(c.data_source(), DataSource::watch_dir("logs"));
}

#[test]
fn errors_name_the_key() {
    let cases = [
        (
            MINIMAL.replace("max_epsilon = 8.0", "max_epsilon = -1.0"),
            "privacy.max_epsilon",
        ),
        (MINIMAL.replace("https://", "http://"), "endpoint"),
        (
            MINIMAL.replace("watch_dir = \"logs\"", "watch_dir = \"logs\"\nhost = true"),
            "data",
        ),
        (
            format!("{MINIMAL}\n[timing]\nrpc_timeout_ms = 0\n"),
            "timing.rpc_timeout_ms",
        ),
        (
            format!("{MINIMAL}\n[training]\nmax_local_epochs = 0\n"),
            "training.max_local_epochs",
        ),
        (
            MINIMAL.replace(
                "watch_dir = \"logs\"",
                "watch_dir = \"logs\"\nlog_format = \"$remote_addr $status\"",
            ),
            "data.log_format",
        ),
        (
            MINIMAL.replace(
                "watch_dir = \"logs\"",
                "watch_dir = \"logs\"\njson_fields = { ts = \"a..b\" }",
            ),
            "data.json_fields",
        ),
        (
            MINIMAL.replace("max_epsilon = 8.0", "max_epsilon = 8.0\nmin_batch_size = 0"),
            "privacy.min_batch_size",
        ),
    ];
    for (text, key) in cases {
        let e = ClientConfig::from_toml_str(&text).unwrap_err();
        assert_eq!(e.key(), Some(key), "{e}");
    }
    // Self-training: out-of-range values and unknown keys name the key.
    let e = ClientConfig::from_toml_str(&format!(
        "{MINIMAL}\n[labels.self_training]\nenabled = true\nmargin = 0.7\n"
    ))
    .unwrap_err();
    assert!(e.to_string().contains("labels.self_training.margin"), "{e}");
    let e = ClientConfig::from_toml_str(&format!(
        "{MINIMAL}\n[labels.self_training]\nshares = 0.5\n"
    ))
    .unwrap_err();
    assert!(e.to_string().contains("shares"), "{e}");
    // Bad CIDRs and header names: the parser names the key.
    let e = ClientConfig::from_toml_str(&MINIMAL.replace(
        "watch_dir = \"logs\"",
        "watch_dir = \"logs\"\ntrusted_proxies = [\"10.0.0.0/33\"]",
    ))
    .unwrap_err();
    assert!(e.to_string().contains("trusted_proxies"), "{e}");
    let e = ClientConfig::from_toml_str(&MINIMAL.replace(
        "watch_dir = \"logs\"",
        "watch_dir = \"logs\"\nreal_ip_header = \"x_client_ip\"",
    ))
    .unwrap_err();
    assert!(e.to_string().contains("real_ip_header"), "{e}");
    // Unknown keys and missing required keys: the parser names them.
    let e = ClientConfig::from_toml_str(&format!("{MINIMAL}\nbogus = 1\n")).unwrap_err();
    assert!(e.to_string().contains("bogus"), "{e}");
    let e = ClientConfig::from_toml_str(&MINIMAL.replace("max_epsilon = 8.0", "")).unwrap_err();
    assert!(e.to_string().contains("max_epsilon"), "{e}");
    // The old key is gone (its meaning changed): the parser names the new one.
    let e = ClientConfig::from_toml_str(&MINIMAL.replace(
        "max_epsilon = 8.0",
        "max_epsilon = 8.0\namplification = true",
    ))
    .unwrap_err();
    assert!(e.to_string().contains("trust_coordinator_sampling"), "{e}");
}

#[test]
fn the_example_file_parses_and_states_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("client.example.toml");
    let c = ClientConfig::load(&path).unwrap();
    assert_eq!(c.job.as_deref(), Some("bot-detector"));
    assert_eq!(c.privacy.max_epsilon, 8.0);
    // Uncommenting every commented default must not change anything.
    let text = std::fs::read_to_string(&path).unwrap();
    let uncommented: String = text
        .lines()
        .map(|l| {
            let t = l.trim_start();
            let is_key = t.starts_with("# ")
                && t[2..].split_once(" = ").is_some_and(|(k, _)| {
                    !k.contains(' ') && k.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_')
                });
            if is_key
                && !t.contains("files =")
                && !t.contains("max_clip_norm")
                && !t.contains("max_local_epochs")
                && !t.contains("max_steps")
                && !t.contains("max_examples_per_round")
                && !t.contains("asn_db")
                && !t.contains("crawler_ranges")
                && !t.contains("token_file")
            {
                format!("{}\n", &t[2..])
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let active = |t: &str| {
        t.lines()
            .filter(|l| !l.trim_start().starts_with('#') && l.contains(" = "))
            .count()
    };
    assert!(
        active(&uncommented) >= active(&text) + 20,
        "the defaults were uncommented"
    );
    let d = ClientConfig::from_toml_str(&uncommented).unwrap();
    let plain = ClientConfig::from_toml_str(&text).unwrap();
    assert_eq!(d, plain, "{uncommented}");
}

#[test]
fn relative_paths_follow_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("client.toml");
    std::fs::write(&p, MINIMAL).unwrap();
    let c = ClientConfig::load(&p).unwrap();
    assert_eq!(c.tls.ca, dir.path().join("pki/ca.pem"));
    assert_eq!(c.state_dir, dir.path().join("fedsec-client-state"));
    assert_eq!(c.data.watch_dir, Some(dir.path().join("logs")));
}

#[test]
fn log_format_proxies_and_network_files_reach_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let ranges = Path::new(env!("CARGO_MANIFEST_DIR")).join("../detector/data/crawler-ranges");
    std::fs::write(
        dir.path().join("asn.tsv"),
        "203.0.113.0\t203.0.113.255\t64500\tZZ\tTEST\n",
    )
    .unwrap();
    let text = MINIMAL.replace(
        "watch_dir = \"logs\"",
        &format!(
            "watch_dir = \"logs\"\nlog_format = \"vhost_combined\"\ntrusted_proxies = [\"10.0.0.0/8\", \"2001:db8::/32\"]\nreal_ip_header = \"cf_connecting_ip\"\nasn_db = \"asn.tsv\"\ncrawler_ranges = [{{ file = \"{}\" }}]\n[data.json_fields]\nts = \"time\"",
            ranges.join("googlebot.json").display()
        ),
    );
    let p = dir.path().join("client.toml");
    std::fs::write(&p, &text).unwrap();
    let c = ClientConfig::load(&p).unwrap();
    assert_eq!(c.data.asn_db, Some(dir.path().join("asn.tsv")));
    let pipe = c.data_options().pipeline().unwrap();
    assert_eq!(
        pipe.reader.line_format.as_ref().unwrap().source(),
        "vhost_combined"
    );
    assert_eq!(pipe.reader.client_ip.trusted_proxies.len(), 2);
    assert_eq!(pipe.reader.client_ip.header, RealIpHeader::CfConnectingIp);
    assert_eq!(pipe.reader.json_fields.ts, "time");
    assert_eq!(
        pipe.enrichment.asn_of(None, "203.0.113.7".parse().ok()),
        Some(64500)
    );
    assert_eq!(pipe.enrichment.crawlers.crawlers.len(), 1);
    // A configured file that is missing or broken is an error naming the key.
    std::fs::write(dir.path().join("asn.tsv"), "not a tsv\n").unwrap();
    let e = c.data_options().pipeline().unwrap_err();
    assert!(e.to_string().contains("data.asn_db"), "{e}");
    let mut missing = c.data_options();
    missing.asn_db = None;
    missing.crawler_ranges[0].file = dir.path().join("nope.json");
    let e = missing.pipeline().unwrap_err();
    assert!(e.to_string().contains("data.crawler_ranges"), "{e}");
    // Nothing configured: defaults (private proxies trusted, no files).
    let plain = ClientConfig::from_toml_str(MINIMAL)
        .unwrap()
        .data_options()
        .pipeline()
        .unwrap();
    assert!(plain.enrichment.asn.is_none() && plain.enrichment.crawlers.is_empty());
    assert_eq!(plain.reader.client_ip.trusted_proxies.len(), 7);
}
