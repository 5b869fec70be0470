//! Fuzzing on stable Rust (issue 16): seeded generators feed the decoders
//! every byte of which comes from the network, a log file or an operator's
//! file, and check they never panic and never allocate in proportion to a
//! size an input *claims* rather than the bytes it brought.
//!
//! Targets (round-robin, one generated input each per turn):
//!
//! | target | what | property beyond "no panic" |
//! |---|---|---|
//! | `tensor` | [`TensorDecoder`] over random chunk sequences and digests | a well-formed encoding decodes to the same values; a bad one leaves no partial chunk |
//! | `framing` | prost decoding of every upload/download/admin message from mutated encodings (length prefixes claiming up to 2⁶⁴) | re-encoding a decoded message decodes to the same message |
//! | `clf` | the combined-family log parser over mutated real log lines | — |
//! | `json_log` | the JSON-lines log parser over mutated lines | — |
//! | `format` | format-string compilation and parsing with mutated formats | — |
//! | `config` | coordinator and client TOML (incl. `[[jobs]]` job specs) from mutated example files | — |
//! | `job_proto` | `JobSpec::from_proto` over mutated `JobConfig` messages (claimed sizes up to 2⁶⁴) | — |
//! | `receipt` | receipt JSON decoding and verification over mutated valid receipts, old and summary form (history inline with its digest, or referenced) | a verified receipt states ε ≥ the recomputed ε; an inline history must match its digest |
//!
//! Inputs: `FEDSEC_FUZZ_INPUTS` (default 120,000: the CI mode, 22 s in a
//! test-profile build on a loaded 2-core machine), seed `FEDSEC_FUZZ_SEED`
//! (default 16). `scripts/fuzz` runs 1,000,000.
//!
//! Allocation cap: before the first input the test lowers its own address
//! space limit (`RLIMIT_AS`, via util-linux `prlimit`) to its current size
//! plus [`ALLOC_HEADROOM`]. Inputs are decoded one at a time and freed, so
//! any single input that allocates in proportion to a claimed size (the
//! generators claim up to 2⁶⁴ bytes, values or rounds) fails the allocation
//! and aborts the run. (A per-input counting allocator needs `unsafe impl
//! GlobalAlloc`, which the workspace forbids.)

#![allow(clippy::unwrap_used, missing_docs)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use fedsec_detector::logs::client::ClientIpPolicy;
use fedsec_detector::logs::format::LineFormat;
use fedsec_detector::logs::{clf, json};
use fedsec_privacy::{PrivacyReceipt, ReceiptSummary, RoundCharge};
use fedsec_proto::tensor::{TensorDecoder, digest, encode_chunks};
use fedsec_proto::v1;
use prost::Message;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Address space the run may take beyond its size before the first input.
const ALLOC_HEADROOM: u64 = 1 << 30;

/// Numbers that break naive size and range handling.
const EXTREMES: &[&str] = &[
    "0",
    "-1",
    "1",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "1e308",
    "-1e308",
    "1e-320",
    "nan",
    "inf",
    "-inf",
    "0.0",
    "1e18",
    "99999999999999999999999999",
];

struct Gen {
    rng: ChaCha8Rng,
}

impl Gen {
    fn new(seed: u64, input: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed ^ input.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        }
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            self.rng.random_range(0..n)
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.rng.fill_bytes(&mut v);
        v
    }

    /// A varint claiming a huge length or count.
    fn huge_varint(&mut self) -> Vec<u8> {
        let v: u64 = match self.below(4) {
            0 => u64::MAX,
            1 => 1 << (32 + self.below(31)),
            2 => u64::from(u32::MAX),
            _ => self.rng.random(),
        };
        let mut out = Vec::new();
        prost::encoding::encode_varint(v, &mut out);
        out
    }

    /// Byte-level mutations of `seed` (1–4 of them).
    fn mutate_bytes(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..1 + self.below(4) {
            let at = self.below(v.len() + 1);
            match self.below(7) {
                0 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v[i] ^= 1 << self.below(8);
                }
                1 => {
                    let n = 1 + self.below(8);
                    let b = self.bytes(n);
                    v.splice(at..at, b);
                }
                2 if !v.is_empty() => {
                    let end = (at + 1 + self.below(16)).min(v.len());
                    v.drain(at.min(end)..end);
                }
                3 => v.truncate(at),
                4 if at < v.len() => {
                    let end = (at + 1 + self.below(64)).min(v.len());
                    let dup = v[at..end].to_vec();
                    v.splice(at..at, dup);
                }
                5 => {
                    let h = self.huge_varint();
                    v.splice(at..at, h);
                }
                _ => {
                    let i = self.below(v.len().max(1));
                    if i < v.len() {
                        v[i] = *[0u8, 0xFF, 0x80, b'"', b'\\', b'{', b'[', b'\n', b'=']
                            [self.below(9)..]
                            .first()
                            .unwrap();
                    }
                }
            }
        }
        v
    }

    /// Text mutations: numbers replaced by extremes, plus byte mutations,
    /// kept as (lossy) UTF-8.
    fn mutate_text(&mut self, seed: &str) -> String {
        let mut s = seed.to_owned();
        for _ in 0..self.below(3) {
            let digits: Vec<usize> = s
                .char_indices()
                .filter(|(_, c)| c.is_ascii_digit())
                .map(|(i, _)| i)
                .collect();
            if digits.is_empty() {
                break;
            }
            let start = digits[self.below(digits.len())];
            let end = s[start..]
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == '-'))
                .map_or(s.len(), |n| start + n);
            let x = EXTREMES[self.below(EXTREMES.len())];
            s.replace_range(start..end, x);
        }
        if self.chance(0.7) {
            String::from_utf8_lossy(&self.mutate_bytes(s.as_bytes())).into_owned()
        } else {
            s
        }
    }
}

/// Seeds shared by the targets (built once).
struct Seeds {
    log_lines: Vec<String>,
    json_lines: Vec<String>,
    formats: Vec<String>,
    coordinator_toml: String,
    client_toml: String,
    messages: Vec<(usize, Vec<u8>)>,
    job_config: Vec<u8>,
    receipts: Vec<String>,
    policy: ClientIpPolicy,
    zeros: Vec<u8>,
}

fn uncomment(example: &str) -> String {
    example
        .lines()
        .map(|l| {
            let t = l.trim_start();
            match t.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[')
                        || rest.split_once(" = ").is_some_and(|(k, _)| {
                            k.chars()
                                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
                        }) =>
                {
                    rest.to_owned()
                }
                _ => l.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn seeds() -> Seeds {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut log_lines = Vec::new();
    let logs = format!("{root}/detector/tests/data/real-logs");
    let mut files: Vec<_> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        log_lines.extend(text.lines().take(200).map(str::to_owned));
    }
    let json_lines = vec![
        r#"{"time":"2024-03-04T09:15:02+00:00","remote_addr":"::ffff:10.0.0.2","request":"GET /x?y HTTP/1.1","status":"200","body_bytes_sent":"77","http_user_agent":"curl/8.4.0","http_x_forwarded_for":"198.51.100.3"}"#.to_owned(),
        r#"{"time":"2024-03-04T09:15:03Z","remote_addr":"203.0.113.9","request":"POST /login HTTP/2.0","status":401,"body_bytes_sent":0,"http_user_agent":"Mozilla/5.0","http_referer":"-"}"#.to_owned(),
    ];
    let formats = fedsec_detector::logs::format::PRESETS
        .iter()
        .flat_map(|(name, f)| [(*name).to_owned(), (*f).to_owned()])
        .collect();
    let coordinator_toml = uncomment(
        &std::fs::read_to_string(format!("{root}/coordinator/coordinator.example.toml")).unwrap(),
    );
    let client_toml =
        uncomment(&std::fs::read_to_string(format!("{root}/client/client.example.toml")).unwrap());
    let task = v1::Task {
        job_id: "bots".into(),
        round: 3,
        attempt: 1,
        base_version: 2,
        clip_norm: 1.0,
        deadline_unix_ms: 1_700_000_000_000,
        sampling_rate: 0.1,
        noise_multiplier: 1.1,
        delta: 1e-5,
        noise_enabled: true,
        ..Default::default()
    };
    let header = v1::SubmitUpdateRequest {
        part: Some(v1::submit_update_request::Part::Header(v1::UpdateHeader {
            job_id: "bots".into(),
            round: 3,
            attempt: 1,
            base_version: 2,
            num_params: 1000,
            nonce: vec![7; 16],
            within_clip: true,
        })),
    };
    let chunk = v1::SubmitUpdateRequest {
        part: Some(v1::submit_update_request::Part::Chunk(v1::TensorChunk {
            data: vec![0x3F; 4096].into(),
        })),
    };
    let trailer = v1::SubmitUpdateRequest {
        part: Some(v1::submit_update_request::Part::Trailer(
            v1::UpdateTrailer {
                sha256: vec![1; 32],
            },
        )),
    };
    let job =
        fedsec_coordinator::JobSpec::new("bots", fedsec_model::ModelSpec::logistic(31), 0.1, 100);
    let job_config = job.to_proto().encode_to_vec();
    let messages = vec![
        (0, header.encode_to_vec()),
        (0, chunk.encode_to_vec()),
        (0, trailer.encode_to_vec()),
        (1, task.encode_to_vec()),
        (2, job_config.clone()),
        (
            3,
            v1::GetModelRequest {
                job_id: "bots".into(),
                version: 4,
            }
            .encode_to_vec(),
        ),
    ];
    let mut receipts = Vec::new();
    // Receipts as earlier coordinators stored them (1, 2, 5 rounds), then in
    // the summary form (issue 16): inline with a reference, and referenced
    // only (300 rounds).
    for n in [1u64, 2, 5, 1, 2, 300] {
        let rounds: Vec<RoundCharge> = (1..=n)
            .map(|r| RoundCharge {
                round: r,
                sampling_rate: 0.05,
                noise_multiplier: 1.2,
                clip_norm: 1.0,
                sensitivity: 1.0,
                count_stddev: 0.0,
                expected_cohort: 5.0,
                committed_unix_ms: 1_700_000_000_000,
            })
            .collect();
        let r = PrivacyReceipt::compute(rounds, 1e-5).unwrap();
        if receipts.len() < 3 {
            receipts.push(serde_json::to_string(&r).unwrap());
        } else {
            receipts.push(serde_json::to_string(&ReceiptSummary::of(&r).unwrap()).unwrap());
        }
    }
    Seeds {
        log_lines,
        json_lines,
        formats,
        coordinator_toml,
        client_toml,
        messages,
        job_config,
        receipts,
        policy: ClientIpPolicy::default(),
        zeros: vec![0u8; (1 << 20) + 16],
    }
}

fn tensor(g: &mut Gen, s: &Seeds) {
    let big = g.chance(0.02);
    let dim = 1 + g.below(if big { 400_000 } else { 3_000 });
    let values: Vec<f32> = (0..dim).map(|i| i as f32 * 0.5 - 3.0).collect();
    let mut out = vec![0f32; dim];
    if g.chance(0.3) {
        let mut dec = TensorDecoder::new(&mut out);
        for c in encode_chunks(&values) {
            dec.push(&c).unwrap();
        }
        dec.finish(&digest(&values)).unwrap();
        assert_eq!(out, values);
        return;
    }
    let mut dec = TensorDecoder::new(&mut out);
    for _ in 0..1 + g.below(6) {
        let len = match g.below(5) {
            0 => g.below(16),
            1 => 4 * g.below(1 + dim),
            2 => 64 * 1024 + g.below(8),
            3 => (1 << 20) + 4 * g.below(3),
            _ => g.below(200_000),
        };
        // Random bytes for small chunks, a shared buffer for big ones (the
        // decoder's checks do not depend on the content).
        let random;
        let chunk: &[u8] = if len <= 4096 {
            random = g.bytes(len);
            &random
        } else {
            &s.zeros[..len.min(s.zeros.len())]
        };
        let before = dec.received();
        if dec.push(chunk).is_err() {
            assert_eq!(dec.received(), before, "a refused chunk wrote nothing");
        }
    }
    let n = if g.chance(0.8) { 32 } else { g.below(64) };
    let d = g.bytes(n);
    let _ = dec.finish(&d);
}

fn framing(g: &mut Gen, s: &Seeds) {
    let (kind, seed) = &s.messages[g.below(s.messages.len())];
    let bytes = if g.chance(0.1) {
        let n = g.below(256);
        g.bytes(n)
    } else {
        g.mutate_bytes(seed)
    };
    // Compared as bytes: decoded floats may be NaN.
    fn round_trip<M: Message + Default>(b: &[u8]) {
        if let Ok(m) = M::decode(b) {
            let once = m.encode_to_vec();
            let again = M::decode(once.as_slice()).unwrap().encode_to_vec();
            assert_eq!(again, once);
        }
    }
    match kind {
        0 => round_trip::<v1::SubmitUpdateRequest>(&bytes),
        1 => round_trip::<v1::Task>(&bytes),
        2 => round_trip::<v1::JobConfig>(&bytes),
        _ => round_trip::<v1::GetModelRequest>(&bytes),
    }
    round_trip::<v1::GetModelResponse>(&bytes);
    round_trip::<v1::PrivacyReceipt>(&bytes);
    round_trip::<v1::GetRoundHistoryResponse>(&bytes);
}

fn clf_target(g: &mut Gen, s: &Seeds) {
    let i = g.below(s.log_lines.len());
    let line = g.mutate_text(&s.log_lines[i]);
    let _ = clf::parse_line(&line);
}

fn json_target(g: &mut Gen, s: &Seeds) {
    let i = g.below(s.json_lines.len());
    let line = g.mutate_text(&s.json_lines[i]);
    let _ = json::parse_line(&line);
}

fn format_target(g: &mut Gen, s: &Seeds) {
    let fmt = if g.chance(0.5) {
        s.formats[g.below(s.formats.len())].clone()
    } else {
        let i = g.below(s.formats.len());
        g.mutate_text(&s.formats[i])
    };
    if let Ok(f) = LineFormat::compile(&fmt) {
        let i = g.below(s.log_lines.len());
        let line = g.mutate_text(&s.log_lines[i]);
        let _ = f.parse(&line, &s.policy);
    }
}

fn config_target(g: &mut Gen, s: &Seeds) {
    if g.chance(0.5) {
        let t = g.mutate_text(&s.coordinator_toml);
        let _ = fedsec_coordinator::CoordinatorConfig::from_toml_str(&t);
    } else {
        let t = g.mutate_text(&s.client_toml);
        let _ = fedsec_client::config::ClientConfig::from_toml_str(&t);
    }
}

fn job_proto_target(g: &mut Gen, s: &Seeds) {
    let bytes = g.mutate_bytes(&s.job_config);
    if let Ok(msg) = v1::JobConfig::decode(bytes.as_slice()) {
        let dangerous = fedsec_coordinator::config::DangerousConfig {
            allow_simulation_noise: g.chance(0.5),
            allow_disabled_noise: g.chance(0.5),
        };
        let _ = fedsec_coordinator::JobSpec::from_proto(&msg, &dangerous);
    }
}

fn receipt_target(g: &mut Gen, s: &Seeds) {
    let i = g.below(s.receipts.len());
    let text = g.mutate_text(&s.receipts[i]);
    // Verification runs the accountants (~0.1 s in a debug build): one
    // decoded receipt in 200.
    if let Ok(r) = serde_json::from_str::<PrivacyReceipt>(&text)
        && r.rounds.len() <= 16
        && g.chance(0.005)
        && r.verify().is_ok()
    {
        let recomputed = PrivacyReceipt::compute(r.rounds.clone(), r.delta).unwrap();
        assert!(
            r.epsilon_pld
                >= recomputed.epsilon_pld * (1.0 - fedsec_privacy::receipt::VERIFY_RELATIVE_SLACK),
            "verified receipt understates ε: {text}"
        );
    }
    // The summary form: an inline history must match its reference (any
    // mutation of either is refused), and what expands and verifies states
    // no less than its history costs.
    if let Ok(summary) = serde_json::from_str::<ReceiptSummary>(&text) {
        let _ = summary.history_rounds();
        if summary.rounds.as_ref().is_some_and(|r| r.len() <= 16)
            && g.chance(0.005)
            && let Ok(full) = summary.expand(None)
            && full.verify().is_ok()
        {
            let recomputed = PrivacyReceipt::compute(full.rounds.clone(), full.delta).unwrap();
            assert!(
                full.epsilon_pld
                    >= recomputed.epsilon_pld
                        * (1.0 - fedsec_privacy::receipt::VERIFY_RELATIVE_SLACK),
                "verified summary understates ε: {text}"
            );
        }
    }
    let _ = fedsec_coordinator::Receipt::from_json(&text);
}

type Target = fn(&mut Gen, &Seeds);

const TARGETS: [(&str, Target); 8] = [
    ("tensor", tensor),
    ("framing", framing),
    ("clf", clf_target),
    ("json_log", json_target),
    ("format", format_target),
    ("config", config_target),
    ("job_proto", job_proto_target),
    ("receipt", receipt_target),
];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Lowers this process's soft address-space limit to its current size
/// plus [`ALLOC_HEADROOM`]; returns the limit, or `None` without `prlimit`.
fn cap_address_space() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let cap = kb * 1024 + ALLOC_HEADROOM;
    let ok = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--as={cap}:"))
        .status()
        .ok()?
        .success();
    ok.then_some(cap)
}

#[test]
fn decoders_never_panic_nor_allocate_for_claimed_sizes() {
    let inputs = env_u64("FEDSEC_FUZZ_INPUTS", 120_000);
    let seed = env_u64("FEDSEC_FUZZ_SEED", 16);
    let seeds = seeds();
    let cap = cap_address_space();
    match cap {
        Some(c) => eprintln!("fuzz: address space capped at {} MiB", c >> 20),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI needs util-linux prlimit for the allocation cap"
            );
            eprintln!("fuzz: WARNING no prlimit: the allocation cap is not enforced");
        }
    }
    let started = Instant::now();
    let mut counts = [0u64; TARGETS.len()];
    let mut seconds = [0f64; TARGETS.len()];
    let mut panics = Vec::new();
    for i in 0..inputs {
        let t = (i % TARGETS.len() as u64) as usize;
        let (name, target) = TARGETS[t];
        let mut g = Gen::new(seed, i);
        let t0 = Instant::now();
        if catch_unwind(AssertUnwindSafe(|| target(&mut g, &seeds))).is_err() {
            panics.push(format!("{name}: input {i} (seed {seed})"));
        }
        seconds[t] += t0.elapsed().as_secs_f64();
        counts[t] += 1;
    }
    for (t, (name, _)) in TARGETS.iter().enumerate() {
        eprintln!(
            "fuzz: {name:10} {:>9} inputs {:>7.2} s",
            counts[t], seconds[t]
        );
    }
    eprintln!(
        "fuzz: {inputs} inputs in {:.1} s, {} panic(s)",
        started.elapsed().as_secs_f64(),
        panics.len()
    );
    assert!(
        panics.is_empty(),
        "panics (re-run with FEDSEC_FUZZ_SEED={seed}): {panics:#?}"
    );
}
