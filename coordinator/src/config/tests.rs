use fedsec_model::ModelSpec;
use fedsec_privacy::NoiseKind;
use fedsec_proto::model::ModelSpecWire;
use fedsec_proto::v1;

use super::*;

const MINIMAL: &str = r#"
    data_dir = "/tmp/x"
    admins = ["ops"]
    [tls]
    ca = "ca.pem"
    cert = "server.pem"
    key = "server.key"
    [[jobs]]
    id = "bots"
    model = { kind = "mlp", input_dim = 25, hidden = [64] }
    population = 50
    sampling_rate = 0.1
"#;

fn invalid_key(text: &str) -> String {
    match CoordinatorConfig::from_toml_str(text) {
        Err(ConfigError::Invalid { key, .. }) => key,
        other => panic!("expected an invalid-key error, got {other:?}"),
    }
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = CoordinatorConfig::from_toml_str(MINIMAL).unwrap();
    assert_eq!(c.listen, "0.0.0.0:7443".parse().unwrap());
    assert_eq!(c.poll_interval_ms, 2000);
    assert!(c.metrics.enabled);
    assert_eq!(c.metrics.listen, "127.0.0.1:9464".parse().unwrap());
    assert_eq!(c.limits.max_concurrent_uploads, 8);
    assert!(c.dangerous.is_none());
    let j = &c.jobs[0];
    assert_eq!(j.rounds, 100);
    assert_eq!(j.clipping.clip_norm, 1.0);
    assert_eq!(j.delta, 1e-5);
    assert_eq!(j.min_clients, 2);
    assert_eq!(j.population, Some(50));
    assert_eq!(j.population_drift, 0.2);
    assert_eq!(j.cohort(), Some((0.1, 5.0)));
    assert_eq!(j.round_deadline_ms, 60_000);
    assert_eq!(j.noise_source, NoiseKind::Discrete);
    assert_eq!(j.noise_level(), NoiseLevel::Multiplier(1.0));
    assert_eq!(j.sampling(), Sampling::Rate(0.1));
    assert_eq!(j.budget(), None);
}

#[test]
fn errors_name_the_key() {
    let bad_clip = MINIMAL.replace(
        "sampling_rate = 0.1",
        "sampling_rate = 0.1\nclipping = { clip_norm = -1.0 }",
    );
    assert_eq!(invalid_key(&bad_clip), "jobs[0].clipping.clip_norm");
    let e = CoordinatorConfig::from_toml_str(&bad_clip).unwrap_err();
    assert_eq!(
        e.to_string(),
        "jobs[0].clipping.clip_norm: must be > 0 (got -1)"
    );
    assert_eq!(
        invalid_key(&MINIMAL.replace("sampling_rate = 0.1", "sampling_rate = 1.5")),
        "jobs[0].sampling_rate"
    );
    assert_eq!(
        invalid_key(&MINIMAL.replace("sampling_rate = 0.1", "expected_cohort = 0")),
        "jobs[0].expected_cohort"
    );
    assert_eq!(
        invalid_key(&MINIMAL.replace("sampling_rate = 0.1", "")),
        "jobs[0].sampling_rate"
    );
    assert_eq!(
        invalid_key(&MINIMAL.replace("sampling_rate = 0.1", "sampling_rate = 0.1\ndelta = 1.0")),
        "jobs[0].delta"
    );
    assert_eq!(
        invalid_key(&MINIMAL.replace("admins = [\"ops\"]", "admins = [\"bad name\"]")),
        "admins[0]"
    );
    assert_eq!(
        invalid_key(&MINIMAL.replace("id = \"bots\"", "")),
        "jobs[0].id"
    );
    assert_eq!(
        invalid_key(&MINIMAL.replace("hidden = [64]", "hidden = []")),
        "jobs[0].model"
    );
}

#[test]
fn population_is_declared_and_min_clients_bounds_the_expected_cohort() {
    let without = MINIMAL.replace("population = 50\n", "");
    let e = CoordinatorConfig::from_toml_str(&without).unwrap_err();
    assert_eq!(e.key(), Some("jobs[0].population"));
    assert!(e.to_string().contains("required"), "{e}");
    assert_eq!(
        invalid_key(&MINIMAL.replace("population = 50", "population = 0")),
        "jobs[0].population"
    );
    // q × population = 0.1 × 50 = 5: min_clients 5 is fine, 6 is not.
    let with_min = |m: u32| {
        MINIMAL.replace(
            "sampling_rate = 0.1",
            &format!("sampling_rate = 0.1\nmin_clients = {m}"),
        )
    };
    assert!(CoordinatorConfig::from_toml_str(&with_min(5)).is_ok());
    let e = CoordinatorConfig::from_toml_str(&with_min(6)).unwrap_err();
    assert_eq!(e.key(), Some("jobs[0].min_clients"));
    assert!(e.to_string().contains("expected cohort"), "{e}");
    assert_eq!(invalid_key(&with_min(0)), "jobs[0].min_clients");
    // An expected cohort fixes q = m / population.
    let cohort = MINIMAL.replace("sampling_rate = 0.1", "expected_cohort = 10");
    let c = CoordinatorConfig::from_toml_str(&cohort).unwrap();
    assert_eq!(c.jobs[0].cohort(), Some((0.2, 10.0)));
    assert_eq!(
        invalid_key(&MINIMAL.replace("sampling_rate = 0.1", "expected_cohort = 51")),
        "jobs[0].expected_cohort"
    );
    assert_eq!(
        invalid_key(&MINIMAL.replace(
            "sampling_rate = 0.1",
            "sampling_rate = 0.1\npopulation_drift = 0.0"
        )),
        "jobs[0].population_drift"
    );
}

#[test]
fn init_weights_paths_need_init_weights_dir() {
    let with_path = MINIMAL.replace(
        "sampling_rate = 0.1",
        "sampling_rate = 0.1\ninit_weights_path = \"w.safetensors\"",
    );
    assert_eq!(invalid_key(&with_path), "jobs[0].init_weights_path");
    let with_dir = with_path.replacen(
        "admins = [\"ops\"]",
        "admins = [\"ops\"]\ninit_weights_dir = \"weights\"",
        1,
    );
    let c = CoordinatorConfig::from_toml_str(&with_dir).unwrap();
    assert_eq!(c.init_weights_dir.as_deref(), Some(Path::new("weights")));
}

#[test]
fn the_example_config_is_valid() {
    let c =
        CoordinatorConfig::from_toml_str(include_str!("../../coordinator.example.toml")).unwrap();
    assert_eq!(c.jobs.len(), 1);
    let j = &c.jobs[0];
    assert_eq!(j.noise_level(), NoiseLevel::TargetEpsilon(8.0));
    assert_eq!(j.budget(), Some(8.0));
    assert_eq!(j.model.num_params(), 51 * 64 + 64 + 64 + 1);
    // Every default written in the example is the real default.
    let d = CoordinatorConfig::default();
    assert_eq!(
        (c.listen, c.poll_interval_ms),
        (d.listen, d.poll_interval_ms)
    );
    assert_eq!(c.metrics, d.metrics);
    assert_eq!(c.limits, d.limits);
    assert_eq!(c.rate_limits, d.rate_limits);
    assert_eq!(c.storage, d.storage);
    assert_eq!(c.signing, d.signing);
    assert_eq!(c.auth, d.auth, "tokens are off unless configured");
    // ... and every [limits] key is written out, not left to its default.
    let example = include_str!("../../coordinator.example.toml");
    let limits = toml::to_string(&d.limits).unwrap();
    for key in limits.lines().filter_map(|l| l.split(" = ").next()) {
        assert!(
            example.lines().any(|l| l.starts_with(&format!("{key} = "))),
            "the example config does not list limits.{key}"
        );
    }
    assert_eq!(j.clipping, ClippingSpec::default());
    assert_eq!(j.training, TrainingSpec::default());
    assert_eq!(j.server_optimizer, ServerOptimizerSpec::default());
    assert_eq!(j.screen, crate::config::ScreenSpec::default());
    // ... and every [jobs.screen] key is written out.
    let screen = toml::to_string(&crate::config::ScreenSpec::default()).unwrap();
    for key in screen.lines().filter_map(|l| l.split(" = ").next()) {
        assert!(
            example.lines().any(|l| l.starts_with(&format!("{key} = "))),
            "the example config does not list jobs.screen.{key}"
        );
    }
    assert_eq!(j.population_drift, default_population_drift());
    assert_eq!(j.min_clients, default_min_clients());
    assert_eq!(j.population, Some(300));
}

/// Uncommenting the example's `[auth.tokens]` block gives exactly the
/// defaults (with its issuer, audience and JWKS file), and every key of the
/// table is in the block.
#[test]
fn the_example_token_section_states_the_defaults() {
    let example = include_str!("../../coordinator.example.toml");
    let start = example.find("# [auth.tokens]").unwrap();
    let end = start + example[start..].find("\n\n").unwrap();
    let block: String = example[start..end]
        .lines()
        .filter(|l| !l.starts_with("# #"))
        .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(l)))
        .collect();
    let text = MINIMAL.replacen("[[jobs]]", &format!("{block}\n[[jobs]]"), 1);
    let c = CoordinatorConfig::from_toml_str(&text).unwrap();
    let t = c.auth.tokens.unwrap();
    let d = crate::config::TokensConfig::with_jwks_file(
        "https://idp.example.com/realms/fedsec",
        "fedsec-coordinator",
        "jwks.json",
    );
    assert_eq!(t, d);
    let keys = toml::to_string(&d).unwrap();
    for key in keys.lines().filter_map(|l| l.split(" = ").next()) {
        if key.starts_with('[') || key.is_empty() {
            continue;
        }
        assert!(
            block.contains(&format!("{key} = ")),
            "the example does not list {key}"
        );
    }
    assert!(block.contains("jwks_url") || example[start..end].contains("jwks_url"));
}

#[test]
fn rate_limit_and_storage_keys_are_validated() {
    // Top-level tables must precede [[jobs]]: use inline tables.
    let with = |extra: &str| {
        MINIMAL.replacen(
            "admins = [\"ops\"]",
            &format!("admins = [\"ops\"]\n{extra}"),
            1,
        )
    };
    let c = CoordinatorConfig::from_toml_str(&with(
        "rate_limits = { get_task_burst = 5, submit_update_per_minute = 30.0 }\n\
         storage = { encryption_key_file = \"k.hex\" }",
    ))
    .unwrap();
    assert_eq!(c.rate_limits.get_task_burst, 5);
    assert_eq!(c.rate_limits.submit_update_per_minute, 30.0);
    assert_eq!(c.rate_limits.register_burst, 20, "unset keys keep defaults");
    assert_eq!(
        c.storage.encryption_key_file.as_deref(),
        Some(Path::new("k.hex"))
    );
    // [signing]: a key path, relative paths kept as written here; an
    // empty one names the key; unknown keys are errors.
    let c = CoordinatorConfig::from_toml_str(&with("signing = { key_file = \"r.pem\" }")).unwrap();
    assert_eq!(c.signing.key_file.as_deref(), Some(Path::new("r.pem")));
    assert_eq!(
        c.signing.key_path(Path::new("/d")),
        (Path::new("r.pem").to_owned(), false)
    );
    assert_eq!(
        CoordinatorConfig::default()
            .signing
            .key_path(Path::new("/d")),
        (Path::new("/d/release-signing.pem").to_owned(), true)
    );
    assert_eq!(
        invalid_key(&with("signing = { key_file = \"\" }")),
        "signing.key_file"
    );
    assert!(CoordinatorConfig::from_toml_str(&with("signing = { key = \"x\" }")).is_err());
    assert_eq!(
        invalid_key(&with("rate_limits = { get_model_burst = 0 }")),
        "rate_limits.get_model_burst"
    );
    assert_eq!(
        invalid_key(&with("rate_limits = { register_per_minute = 0.0 }")),
        "rate_limits.register_per_minute"
    );
    assert_eq!(
        invalid_key(&with("rate_limits = { audit_window_ms = 10 }")),
        "rate_limits.audit_window_ms"
    );
    assert_eq!(
        invalid_key(&with("storage = { encryption_key_file = \"\" }")),
        "storage.encryption_key_file"
    );
    let e = CoordinatorConfig::from_toml_str(&with("rate_limits = { burst = 3 }")).unwrap_err();
    assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
}

#[test]
fn remote_metrics_need_a_bearer_token() {
    let with = |extra: &str| {
        MINIMAL.replacen(
            "admins = [\"ops\"]",
            &format!("admins = [\"ops\"]\n{extra}"),
            1,
        )
    };
    assert_eq!(
        invalid_key(&with("metrics = { listen = \"0.0.0.0:9464\" }")),
        "metrics.bearer_token_file"
    );
    let c = CoordinatorConfig::from_toml_str(&with(
        "metrics = { listen = \"0.0.0.0:9464\", bearer_token_file = \"m.token\", tls = true }",
    ))
    .unwrap();
    assert_eq!(
        c.metrics.bearer_token_file.as_deref(),
        Some(Path::new("m.token"))
    );
    assert!(c.metrics.tls);
    // Loopback needs nothing; a disabled endpoint needs nothing.
    assert!(
        CoordinatorConfig::from_toml_str(&with("metrics = { listen = \"127.0.0.1:1\" }")).is_ok()
    );
    assert!(
        CoordinatorConfig::from_toml_str(&with(
            "metrics = { enabled = false, listen = \"0.0.0.0:1\" }"
        ))
        .is_ok()
    );
}

#[test]
fn unknown_keys_are_refused() {
    let e = CoordinatorConfig::from_toml_str(&format!("{MINIMAL}\nnoise = 3\n")).unwrap_err();
    assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
    assert!(e.to_string().contains("noise"), "{e}");
}

#[test]
fn dangerous_settings_need_the_dangerous_section() {
    let sim = MINIMAL.replace(
        "sampling_rate = 0.1",
        "sampling_rate = 0.1\nnoise_source = \"simulation\"",
    );
    let e = CoordinatorConfig::from_toml_str(&sim).unwrap_err();
    assert_eq!(e.key(), Some("jobs[0].noise_source"));
    assert!(e.to_string().contains("allow_simulation_noise"));
    // Top-level keys must precede [[jobs]], so use the inline form.
    let ok = sim.replacen(
        "admins = [\"ops\"]",
        "admins = [\"ops\"]\ndangerous = { allow_simulation_noise = true }",
        1,
    );
    assert!(CoordinatorConfig::from_toml_str(&ok).is_ok());

    let off = MINIMAL.replace(
        "sampling_rate = 0.1",
        "sampling_rate = 0.1\ndisable_noise = true",
    );
    assert_eq!(invalid_key(&off), "jobs[0].disable_noise");
}

#[test]
fn discrete_noise_is_the_default_and_needs_no_dangerous_flag() {
    // Without noise_source the job gets the production default, `discrete`.
    let c = CoordinatorConfig::from_toml_str(MINIMAL).unwrap();
    assert_eq!(c.jobs[0].noise_source, NoiseKind::Discrete);
    assert!(c.dangerous.is_none());
    // Named explicitly (and opendp too), with no [dangerous] section: accepted.
    for name in ["discrete", "opendp"] {
        let named = MINIMAL.replace(
            "sampling_rate = 0.1",
            &format!("sampling_rate = 0.1\nnoise_source = \"{name}\""),
        );
        let c = CoordinatorConfig::from_toml_str(&named).unwrap();
        assert_eq!(c.jobs[0].noise_source.as_str(), name);
    }
    // Every source that is not production-safe needs the flag.
    for kind in [
        NoiseKind::OpenDp,
        NoiseKind::Discrete,
        NoiseKind::Simulation,
    ] {
        let mut spec = c.jobs[0].clone();
        spec.noise_source = kind;
        let refused = spec.dangerous_violation(&DangerousConfig::default());
        assert_eq!(refused.is_some(), !kind.is_production_safe(), "{kind}");
    }
}

#[test]
fn proto_roundtrip_keeps_the_definition() {
    let c = CoordinatorConfig::from_toml_str(MINIMAL).unwrap();
    let spec = &c.jobs[0];
    let back = JobSpec::from_proto(&spec.to_proto(), &DangerousConfig::default()).unwrap();
    assert_eq!(&back, spec);
}

#[test]
fn proto_zeros_mean_defaults_and_errors_are_prefixed() {
    let msg = v1::JobConfig {
        model_spec: Some(ModelSpec::logistic(4).to_proto()),
        sampling: Some(v1::job_config::Sampling::ExpectedCohort(10)),
        population: 40,
        ..Default::default()
    };
    let spec = JobSpec::from_proto(&msg, &DangerousConfig::default()).unwrap();
    assert_eq!(spec.rounds, 100);
    assert_eq!(spec.population, Some(40));
    assert_eq!(spec.population_drift, 0.2);
    let e = JobSpec::from_proto(
        &v1::JobConfig {
            population: 0,
            ..msg.clone()
        },
        &DangerousConfig::default(),
    )
    .unwrap_err();
    assert_eq!(e.key(), Some("config.population"));
    assert_eq!(spec.sampling(), Sampling::Cohort(10));
    assert_eq!(spec.delta, 1e-5);
    let bad = v1::JobConfig {
        noise_source: "fast".into(),
        ..msg.clone()
    };
    let e = JobSpec::from_proto(&bad, &DangerousConfig::default()).unwrap_err();
    assert_eq!(e.key(), Some("config.noise_source"));
    let e =
        JobSpec::from_proto(&v1::JobConfig::default(), &DangerousConfig::default()).unwrap_err();
    assert_eq!(e.key(), Some("config.model_spec"));
}

#[test]
fn the_screen_section_is_validated_by_key() {
    let with = |screen: &str| MINIMAL.to_owned() + &format!("\n[jobs.screen]\n{screen}\n");
    let c = CoordinatorConfig::from_toml_str(&with("policy = \"quarantine\"\nmin_cosine = -0.5"))
        .unwrap();
    let s = &c.jobs[0].screen;
    assert_eq!(s.policy, crate::config::ScreenPolicyKind::Quarantine);
    assert_eq!(s.min_cosine, -0.5);
    assert_eq!(s.max_norm_ratio, 1.01, "unset keys keep their defaults");
    let no_section = CoordinatorConfig::from_toml_str(MINIMAL).unwrap();
    assert_eq!(
        no_section.jobs[0].screen,
        crate::config::ScreenSpec::default()
    );
    assert_eq!(
        no_section.jobs[0].screen.policy,
        crate::config::ScreenPolicyKind::Exclude
    );
    // An unknown policy and an unknown key are refused, naming them.
    let e = CoordinatorConfig::from_toml_str(&with("policy = \"drop\"")).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("policy") && msg.contains("drop"), "{msg}");
    let e = CoordinatorConfig::from_toml_str(&with("max_norm = 2.0")).unwrap_err();
    assert!(e.to_string().contains("max_norm"), "{e}");
    // Out-of-range thresholds name the key.
    for (line, key) in [
        ("max_norm_ratio = 0.5", "jobs[0].screen.max_norm_ratio"),
        ("min_cosine = 2.0", "jobs[0].screen.min_cosine"),
        ("history_len = 0", "jobs[0].screen.history_len"),
        ("min_history = 20", "jobs[0].screen.min_history"),
        ("max_norm_z = -1.0", "jobs[0].screen.max_norm_z"),
    ] {
        let e = CoordinatorConfig::from_toml_str(&with(line)).unwrap_err();
        assert_eq!(e.key(), Some(key), "{line}: {e}");
    }
}

#[test]
fn the_screen_travels_over_the_admin_api() {
    let spec = CoordinatorConfig::from_toml_str(MINIMAL).unwrap().jobs[0].clone();
    let mut msg = spec.to_proto();
    assert_eq!(msg.screen.as_ref().unwrap().policy, "exclude");
    let d = DangerousConfig::default();
    let back = JobSpec::from_proto(&msg, &d).unwrap();
    assert_eq!(back.screen, spec.screen);
    // Unset fields are the defaults; set ones are taken.
    msg.screen = Some(v1::ScreenConfig {
        policy: "log".into(),
        min_cosine: Some(0.0),
        ..Default::default()
    });
    let s = JobSpec::from_proto(&msg, &d).unwrap().screen;
    assert_eq!(s.policy, crate::config::ScreenPolicyKind::Log);
    assert_eq!(s.min_cosine, 0.0);
    assert_eq!(s.max_norm_ratio, 1.01);
    msg.screen = None;
    assert_eq!(
        JobSpec::from_proto(&msg, &d).unwrap().screen,
        crate::config::ScreenSpec::default()
    );
    for (screen, key) in [
        (
            v1::ScreenConfig {
                policy: "drop".into(),
                ..Default::default()
            },
            "config.screen.policy",
        ),
        (
            v1::ScreenConfig {
                max_norm_ratio: Some(0.9),
                ..Default::default()
            },
            "config.screen.max_norm_ratio",
        ),
        (
            v1::ScreenConfig {
                history_len: Some(5000),
                ..Default::default()
            },
            "config.screen.history_len",
        ),
    ] {
        msg.screen = Some(screen);
        let e = JobSpec::from_proto(&msg, &d).unwrap_err();
        assert_eq!(e.key(), Some(key), "{e}");
    }
}
