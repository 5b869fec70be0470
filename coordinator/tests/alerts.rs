//! Alerts (issue 22): a real coordinator over loopback mTLS with real
//! clients, posting to a local HTTP receiver (a small axum/hyper server in
//! this file) that can answer, fail for a while, refuse, or hang.
//!
//! Every test captures the process's logs: the webhook URL (whose path
//! carries [`SECRET`]) must never appear in them.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use fedsec_coordinator::config::{AlertFormat, AlertsConfig};
use fedsec_coordinator::store::Store;
use fedsec_coordinator::store::StoreError;
use fedsec_coordinator::store::fault::Injected;
use fedsec_coordinator::store::sqlite::SqliteStore;
use fedsec_coordinator::{Coordinator, CoordinatorConfig};
use fedsec_proto::devca::Validity;
use fedsec_proto::tls::{ClientIdentity, ClientTls, PeerIdentity, ServerTls};
use fedsec_proto::v1::{self, ClientActionRequest};
use serde_json::Value;
use support::{Harness, TestClient, job, play_round, tenant_of};

/// In every webhook URL's path: must never be logged.
const SECRET: &str = "SECRET-webhook-token-7f3a9c";
const T: Duration = Duration::from_secs(10);

// ---- log capture -------------------------------------------------------

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of this test binary (info, debug for the coordinator).
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(buf.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "info,fedsec_coordinator=debug",
            ))
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buf
    })
    .clone()
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

/// Every test ends with this (nextest runs each test in its own process,
/// so each checks its own logs): the URL, or its path, was never logged.
fn assert_url_never_logged() {
    let text = log_text();
    assert!(
        text.contains("alerts on: webhook sink started"),
        "logs are captured"
    );
    assert!(
        !text.contains(SECRET),
        "the webhook URL leaked into the logs"
    );
    assert!(
        !text.contains("/hooks/T0/B0"),
        "the webhook URL's path leaked into the logs"
    );
}

// ---- the receiver ------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// 200 to everything.
    Answer,
    /// 503 to the first n requests, then 200.
    FailFirst(u32),
    /// 404 to everything.
    Refuse,
    /// Never answers.
    Hang,
}

#[derive(Debug, Clone)]
struct Hit {
    at: Instant,
    path: String,
    content_type: String,
    status: u16,
    body: Value,
}

#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    mode: Mode,
    hits: Arc<Mutex<Vec<Hit>>>,
    failed: Arc<Mutex<u32>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

async fn hook(
    State(r): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    if r.mode == Mode::Hang {
        std::future::pending::<()>().await;
    }
    let status = match r.mode {
        Mode::FailFirst(n) => {
            let mut failed = r.failed.lock().unwrap();
            if *failed < n {
                *failed += 1;
                503
            } else {
                200
            }
        }
        Mode::Refuse => 404,
        _ => 200,
    };
    r.hits.lock().unwrap().push(Hit {
        at: Instant::now(),
        path: uri.path().to_owned(),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
        status,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    StatusCode::from_u16(status).unwrap().into_response()
}

impl Receiver {
    async fn start(mode: Mode) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let mut r = Self {
            addr,
            mode,
            hits,
            failed: Arc::new(Mutex::new(0)),
            task: Arc::new(tokio::spawn(async {})),
        };
        let app = axum::Router::new().fallback(hook).with_state(r.clone());
        r.task = Arc::new(tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        }));
        r
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/T0/B0/{SECRET}", self.addr.port())
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// The first answered (200) hit matching `pred`, waiting up to `T`.
    async fn wait(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Hit {
        let until = Instant::now() + T;
        loop {
            if let Some(h) = self
                .hits()
                .into_iter()
                .find(|h| h.status == 200 && pred(&h.body))
            {
                return h;
            }
            assert!(
                Instant::now() < until,
                "no {what} alert; received {:#?}",
                self.hits()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Answered JSON alerts of `kind`.
    fn of_kind(&self, kind: &str) -> Vec<Value> {
        self.hits()
            .into_iter()
            .filter(|h| h.status == 200 && h.body["kind"] == kind)
            .map(|h| h.body)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

/// Writes the URL file (mode 0600) into `dir` and returns fast settings.
fn alerts_config(dir: &Path, url: &str, format: AlertFormat) -> AlertsConfig {
    let path = dir.join("webhook.url");
    std::fs::write(&path, format!("{url}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut a = AlertsConfig::with_url_file(path);
    a.format = format;
    a.timeout_ms = 1000;
    a.backoff_initial_ms = 100;
    a.backoff_max_ms = 1000;
    a.flush_timeout_ms = 1000;
    a.dedup_window_s = 0;
    a.max_per_kind_per_window = 1000;
    a
}

async fn start(rx: &Receiver, files: &Path, tweak: impl FnOnce(&mut AlertsConfig)) -> Harness {
    let mut a = alerts_config(files, &rx.url(), AlertFormat::Json);
    tweak(&mut a);
    Harness::start_with(|c| c.alerts = Some(a)).await
}

// ---- the tests ---------------------------------------------------------

/// An admin quarantines a client over gRPC (mTLS): the webhook receives
/// the alert with the right payload, in the generic JSON schema and as a
/// Slack message (escaped so a reason cannot mention `@channel`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantine_is_alerted_in_both_formats() {
    logs();
    for format in [AlertFormat::Json, AlertFormat::Slack] {
        let rx = Receiver::start(Mode::Answer).await;
        let files = tempfile::tempdir().unwrap();
        let a = alerts_config(files.path(), &rx.url(), format);
        let mut h = Harness::start_with(|c| c.alerts = Some(a)).await;
        let mut c = h.client("c000").await;
        c.register().await.unwrap();
        let t = Instant::now();
        h.admin_grpc("admin")
            .quarantine_client(ClientActionRequest {
                client_id: "c000".into(),
                reason: "poisoning suspected <!channel>".into(),
            })
            .await
            .unwrap();
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert!(c.register().await.is_err(), "the quarantine holds");
        let hit = match format {
            AlertFormat::Json => {
                rx.wait("quarantine", |b| b["kind"] == "client_quarantined")
                    .await
            }
            AlertFormat::Slack => {
                rx.wait("quarantine", |b| {
                    b["text"]
                        .as_str()
                        .is_some_and(|t| t.contains("client quarantined"))
                })
                .await
            }
        };
        assert_eq!(hit.path, format!("/hooks/T0/B0/{SECRET}"));
        assert_eq!(hit.content_type, "application/json");
        let b = &hit.body;
        match format {
            AlertFormat::Json => {
                assert_eq!(b["schema"], "fedsec.alert.v1");
                assert_eq!(b["severity"], "warning");
                assert_eq!(b["client"], "c000");
                assert_eq!(b["tenant"], tenant_of("c000"));
                assert_eq!(b["job"], "");
                assert_eq!(b["details"]["actor"], "admin admin", "{b}");
                assert_eq!(b["details"]["reason"], "poisoning suspected <!channel>");
                assert!(
                    b["message"]
                        .as_str()
                        .unwrap()
                        .contains("quarantined by admin admin")
                );
                let time = b["time"].as_str().unwrap();
                assert!(time.ends_with('Z') && time.len() == 24, "{time}");
                let ms = b["time_unix_ms"].as_i64().unwrap();
                assert!((fedsec_coordinator::now_unix_ms() - ms).abs() < 60_000);
            }
            AlertFormat::Slack => {
                let text = b["text"].as_str().unwrap();
                assert!(
                    text.starts_with("[WARNING] fedsec: client quarantined"),
                    "{text}"
                );
                assert!(text.contains("&lt;!channel&gt;") && !b.to_string().contains("<!channel>"));
                let blocks = b["blocks"].as_array().unwrap();
                assert_eq!(blocks[0]["type"], "header");
                let all = b.to_string();
                assert!(
                    all.contains("*Client*\\nc000") && all.contains("`client_quarantined`"),
                    "{all}"
                );
            }
        }
        assert_eq!(
            h.running()
                .metrics()
                .alerts("client_quarantined", "delivered"),
            1
        );
        h.shutdown().await;
    }
    assert_url_never_logged();
}

/// A transient store fault holds a job: one `store_fault` alert (not one
/// per retry), then `store_recovered` when the disk frees up; an admin's
/// pause is alerted too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_held_by_a_store_fault_or_paused_is_alerted() {
    use std::sync::atomic::{AtomicBool, Ordering};
    logs();
    let rx = Receiver::start(Mode::Answer).await;
    let files = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Injected::new(SqliteStore::open(dir.path()).unwrap()));
    let mut config = support::test_config(dir.path());
    config.alerts = Some(alerts_config(files.path(), &rx.url(), AlertFormat::Json));
    let pki = support::pki();
    let running = Coordinator::start_with_store(
        config,
        pki.server_tls().clone(),
        store.clone() as Arc<dyn Store>,
    )
    .await
    .unwrap();
    let mut h = Harness {
        pki,
        dir: Arc::new(dir),
        running: Some(running),
    };
    let admin = h.running().admin();
    let mut clients = h.clients(2).await;
    let mut spec = job("weather", 4, 1.0);
    spec.population = Some(2);
    spec.disable_noise = true;
    spec.rounds = 3;
    admin.create_job(spec).await.unwrap();
    let full = Arc::new(AtomicBool::new(true));
    {
        let full = full.clone();
        store.before("commit_round", move || {
            full.load(Ordering::SeqCst)
                .then(|| StoreError::Unavailable("database or disk is full (injected)".into()))
        });
    }
    play_round(&mut clients, "weather", (0, 0), T).await;
    let fault = rx
        .wait("store fault", |b| b["kind"] == "store_fault")
        .await
        .body;
    assert_eq!(fault["job"], "weather");
    assert_eq!(fault["severity"], "critical");
    assert_eq!(fault["details"]["during"], "round commit");
    assert!(
        fault["details"]["error"]
            .as_str()
            .unwrap()
            .contains("disk is full")
    );
    admin
        .wait_for_job("weather", T, |j| {
            j.store_fault.as_ref().is_some_and(|f| f.retries >= 3)
        })
        .await
        .unwrap();
    full.store(false, Ordering::SeqCst);
    let recovered = rx
        .wait("recovery", |b| b["kind"] == "store_recovered")
        .await
        .body;
    assert_eq!(
        (recovered["job"].as_str(), recovered["severity"].as_str()),
        (Some("weather"), Some("info"))
    );
    assert!(recovered["details"]["failed_tries"].as_u64().unwrap() >= 3);
    assert_eq!(
        rx.of_kind("store_fault").len(),
        1,
        "one alert per fault, not per retry"
    );
    admin
        .wait_for_job("weather", T, |j| j.rounds_completed == 1)
        .await
        .unwrap();

    admin.pause_job("weather").await.unwrap();
    let paused = rx.wait("pause", |b| b["kind"] == "job_paused").await.body;
    assert_eq!(paused["job"], "weather");
    assert_eq!(paused["severity"], "info");
    assert_eq!(paused["details"]["by_admin"], true);
    assert!(
        paused["message"]
            .as_str()
            .unwrap()
            .contains("paused by embedded")
    );
    h.shutdown().await;
    assert_url_never_logged();
}

/// A job whose ε crosses 80 % of its budget is alerted exactly once (the
/// de-duplication window is 0 here, so "once" is the crossing rule's),
/// and the end of the budget too. The budget is placed between two
/// rounds' ε measured on an identical probe job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_nearly_spent_is_alerted_once() {
    logs();
    let rx = Receiver::start(Mode::Answer).await;
    let files = tempfile::tempdir().unwrap();
    let mut h = start(&rx, files.path(), |_| {}).await;
    let admin = h.running().admin();
    let mut clients = h.clients(2).await;
    let spec = |id: &str, budget: Option<f64>| {
        let mut s = job(id, 4, 1.0);
        s.population = Some(2);
        s.rounds = 3;
        s.noise_multiplier = Some(2.0);
        s.epsilon_budget = budget;
        s
    };
    admin.create_job(spec("probe", None)).await.unwrap();
    let mut at = (0, 0);
    for _ in 0..3 {
        at = play_round(&mut clients, "probe", at, T).await;
    }
    admin
        .wait_for_job("probe", T, |j| j.state == v1::JobState::Completed as i32)
        .await
        .unwrap();
    let eps: Vec<f64> = admin
        .ledger("probe")
        .await
        .unwrap()
        .iter()
        .map(|e| e.epsilon_pld)
        .collect();
    assert_eq!(eps.len(), 3, "{eps:?}");
    assert!(
        rx.of_kind("budget_nearly_spent").is_empty(),
        "no budget, no alert"
    );
    // 0.8 x budget lies halfway between round 1's and round 2's ε.
    let budget = (eps[0] + eps[1]) / 2.0 / 0.8;
    admin.create_job(spec("spend", Some(budget))).await.unwrap();
    let mut at = (0, 0);
    for _ in 0..2 {
        at = play_round(&mut clients, "spend", at, T).await;
    }
    let _ = at;
    // ε grows sublinearly in rounds, so round 3 would exceed this budget:
    // the job ends BUDGET_EXHAUSTED after round 2.
    assert!(eps[2] > budget, "{eps:?} vs {budget}");
    admin
        .wait_for_job("spend", T, |j| {
            j.state == v1::JobState::BudgetExhausted as i32
        })
        .await
        .unwrap();
    let alert = rx
        .wait("budget", |b| b["kind"] == "budget_nearly_spent")
        .await
        .body;
    assert_eq!(alert["job"], "spend");
    assert_eq!(alert["details"]["round"], 2);
    assert!((alert["details"]["epsilon"].as_f64().unwrap() - eps[1]).abs() < 1e-9);
    assert!((alert["details"]["budget"].as_f64().unwrap() - budget).abs() < 1e-9);
    let end = rx
        .wait("exhausted", |b| b["kind"] == "budget_exhausted")
        .await
        .body;
    assert_eq!(end["job"], "spend");
    assert!(
        end["message"]
            .as_str()
            .unwrap()
            .contains("BUDGET_EXHAUSTED"),
        "{end}"
    );
    // Later rounds (or the end) raise no second one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rx.of_kind("budget_nearly_spent").len(),
        1,
        "{:#?}",
        rx.hits()
    );
    h.shutdown().await;
    assert_url_never_logged();
}

/// A webhook answering 503 twice, then 200: the same alert is retried
/// with exponential backoff (jittered over the upper half: the first gap
/// in [150, 300] ms, the second in [300, 600] ms) and delivered once.
/// A webhook answering 404 is not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_is_retried_with_backoff_until_it_recovers() {
    logs();
    let rx = Receiver::start(Mode::FailFirst(2)).await;
    let files = tempfile::tempdir().unwrap();
    let mut h = start(&rx, files.path(), |a| {
        a.backoff_initial_ms = 300;
        a.backoff_max_ms = 5000;
    })
    .await;
    let mut c = h.client("c000").await;
    c.register().await.unwrap();
    h.running()
        .admin()
        .quarantine_client("c000", "retry test")
        .await
        .unwrap();
    rx.wait("quarantine", |b| b["kind"] == "client_quarantined")
        .await;
    let hits = rx.hits();
    assert_eq!(
        hits.iter().map(|h| h.status).collect::<Vec<_>>(),
        [503, 503, 200],
        "{hits:#?}"
    );
    assert!(
        hits.iter().all(|x| x.body == hits[0].body),
        "the same alert each time"
    );
    let gap1 = hits[1].at - hits[0].at;
    let gap2 = hits[2].at - hits[1].at;
    assert!(
        gap1 >= Duration::from_millis(140) && gap1 < Duration::from_millis(1500),
        "{gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_millis(290) && gap2 < Duration::from_millis(2000),
        "{gap2:?}"
    );
    let m = h.running().metrics();
    assert_eq!(m.alerts("client_quarantined", "delivered"), 1);
    assert_eq!(m.alert_retries(), 2);
    h.shutdown().await;

    let rx = Receiver::start(Mode::Refuse).await;
    let files = tempfile::tempdir().unwrap();
    let mut h = start(&rx, files.path(), |_| {}).await;
    let mut c = h.client("c001").await;
    c.register().await.unwrap();
    h.running()
        .admin()
        .revoke_client("c001", "refused test")
        .await
        .unwrap();
    let until = Instant::now() + T;
    while h.running().metrics().alerts("client_revoked", "failed") == 0 {
        assert!(Instant::now() < until, "{:#?}", rx.hits());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rx.hits().len(), 1, "a 404 is final");
    assert!(log_text().contains("alert not delivered"));
    h.shutdown().await;
    assert_url_never_logged();
}

/// A webhook that accepts connections and never answers: rounds of
/// another job complete at full speed while an admin floods alerts
/// (pause/resume of a second job), admin calls return at once, the queue
/// never holds more than its capacity and the overflow is counted; the
/// shutdown's flush is bounded by `flush_timeout_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_webhook_never_holds_up_rounds_and_the_queue_stays_bounded() {
    logs();
    let rx = Receiver::start(Mode::Hang).await;
    let files = tempfile::tempdir().unwrap();
    let mut h = start(&rx, files.path(), |a| {
        a.queue_capacity = 2;
        a.timeout_ms = 3000;
        a.max_attempts = 2;
        a.flush_timeout_ms = 300;
    })
    .await;
    let admin = h.running().admin();
    let mut clients = h.clients(2).await;
    for (id, rounds) in [("hang", 3), ("other", 100)] {
        let mut s = job(id, 4, 1.0);
        s.population = Some(2);
        s.disable_noise = true;
        s.rounds = rounds;
        s.round_deadline_ms = 3000;
        admin.create_job(s).await.unwrap();
    }
    let metrics = h.running().metrics();
    let flood = {
        let (admin, metrics) = (admin.clone(), metrics.clone());
        tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            let mut deepest = 0;
            for _ in 0..20 {
                let t = Instant::now();
                admin.pause_job("other").await.unwrap();
                admin.resume_job("other").await.unwrap();
                slowest = slowest.max(t.elapsed());
                deepest = deepest.max(metrics.alert_queue());
            }
            (slowest, deepest)
        })
    };
    let t = Instant::now();
    let mut at = (0, 0);
    for _ in 0..3 {
        at = play_round(&mut clients, "hang", at, T).await;
    }
    admin
        .wait_for_job("hang", T, |j| j.state == v1::JobState::Completed as i32)
        .await
        .unwrap();
    let rounds = t.elapsed();
    let (slowest, deepest) = flood.await.unwrap();
    assert!(rounds < Duration::from_secs(3), "3 rounds took {rounds:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "an admin call waited {slowest:?}"
    );
    assert!(deepest <= 2, "queue depth {deepest}");
    let dropped = metrics.alerts("job_paused", "dropped");
    assert!(dropped >= 15, "dropped {dropped}");
    assert_eq!(metrics.alerts("job_paused", "delivered"), 0);
    assert!(rx.hits().is_empty());
    assert!(log_text().contains("alert queue full"));
    let t = Instant::now();
    h.shutdown().await;
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "shutdown took {:?}",
        t.elapsed()
    );
    assert!(metrics.alerts("job_paused", "shutdown") >= 1);
    assert_url_never_logged();
}

/// The server's certificate expiring in 2 days is alerted at start
/// (critical under 3 full days); a client registering with a certificate
/// expiring in 5 days is alerted naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_expiring_soon_are_alerted() {
    logs();
    let rx = Receiver::start(Mode::Answer).await;
    let files = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = support::pki();
    let ca_pem = pki.ca_pem().to_owned();
    let short = pki
        .ca()
        .issue_server(&["localhost".into(), "127.0.0.1".into()], Validity::Days(2))
        .unwrap();
    let tls = ServerTls::from_pem(&short.pem_with_ca(&ca_pem)).unwrap();
    let mut config = support::test_config(dir.path());
    config.alerts = Some(alerts_config(files.path(), &rx.url(), AlertFormat::Json));
    let running = Coordinator::start_with_tls(config, tls).await.unwrap();
    let server = rx
        .wait("server certificate", |b| {
            b["kind"] == "certificate_expiring" && b["details"]["role"] == "server certificate"
        })
        .await
        .body;
    assert_eq!(server["severity"], "critical", "{server}");
    // Whole days, rounded down (validity ends on a whole second).
    let left = server["details"]["days_left"].as_i64().unwrap();
    assert!((1..=2).contains(&left), "{server}");
    assert!(
        server["details"]["certificate_subject"]
            .as_str()
            .unwrap()
            .contains("localhost")
    );
    assert!(
        rx.of_kind("certificate_expiring")
            .iter()
            .all(|b| b["details"]["role"] != "client CA"),
        "the CA has ten years"
    );

    let id = ClientIdentity::new("tenant-late", "late").unwrap();
    let cert = pki
        .ca()
        .issue_peer(&PeerIdentity::Client(id), Validity::Days(5))
        .unwrap();
    let tls = ClientTls::from_pem(&cert.pem_with_ca(&ca_pem)).unwrap();
    let mut late = TestClient {
        id: "late".into(),
        grpc: v1::coordinator_client::CoordinatorClient::new(
            tls.channel(&running.endpoint()).unwrap(),
        ),
    };
    late.register().await.unwrap();
    let client = rx
        .wait("client certificate", |b| {
            b["kind"] == "certificate_expiring" && b["client"] == "late"
        })
        .await
        .body;
    assert_eq!(client["tenant"], "tenant-late");
    assert_eq!(client["severity"], "warning");
    let left = client["details"]["days_left"].as_i64().unwrap();
    assert!((4..=5).contains(&left), "{client}");
    assert_eq!(client["details"]["role"], "client certificate");
    // A client with the default one-year certificate raises nothing.
    let mut fresh = TestClient::connect(&pki, "tenant-fresh", "fresh", &running.endpoint());
    fresh.register().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        rx.of_kind("certificate_expiring")
            .iter()
            .all(|b| b["client"] != "fresh")
    );
    running.shutdown().await.unwrap();
    assert_url_never_logged();
}

/// Uploads of the wrong dimension rejected three times within the window
/// raise one `rejected_updates_burst` alert naming the job, the reason
/// and the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_rejected_updates_is_alerted() {
    logs();
    let rx = Receiver::start(Mode::Answer).await;
    let files = tempfile::tempdir().unwrap();
    let mut h = start(&rx, files.path(), |a| a.rejected_burst_count = 3).await;
    let mut clients = h.clients(2).await;
    let mut s = job("burst", 4, 1.0);
    s.population = Some(2);
    s.disable_noise = true;
    h.running().admin().create_job(s).await.unwrap();
    let task = clients[0].wait_task("burst", T).await;
    for i in 0..3u8 {
        let e = clients[0]
            .submit(&task, &[0.0; 3], &[i + 1])
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    }
    let b = rx
        .wait("burst", |b| b["kind"] == "rejected_updates_burst")
        .await
        .body;
    assert_eq!(b["job"], "burst");
    assert_eq!(b["details"]["count"], 3);
    assert_eq!(b["details"]["distinct_clients"], 1);
    assert_eq!(b["details"]["reasons"]["wrong_dimension"], 3, "{b}");
    assert_eq!(b["details"]["top_clients"]["c000"], 3);
    h.shutdown().await;
    assert_url_never_logged();
}

/// The URL is a secret: not in errors (a readable file, a clear-text
/// non-loopback URL), not in `Debug` output, not in any log line of this
/// test binary — including the warnings of refused and unreachable
/// webhooks, which this test makes sure were logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_url_never_appears_in_logs_errors_or_debug_output() {
    logs();
    let files = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let start_with = |a: AlertsConfig| {
        let mut c: CoordinatorConfig = support::test_config(dir.path());
        c.alerts = Some(a);
        let pki = support::pki();
        async move { Coordinator::start_with_tls(c, pki.server_tls().clone()).await }
    };
    // Readable by others: refused, naming the key, not the URL.
    let a = alerts_config(
        files.path(),
        &format!("https://hooks.example.com/x/{SECRET}"),
        AlertFormat::Slack,
    );
    assert!(!format!("{a:?}").contains(SECRET));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&a.url_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = start_with(a.clone()).await.unwrap_err().to_string();
        assert!(
            e.contains("alerts.url_file") && e.contains("mode 644"),
            "{e}"
        );
        assert!(!e.contains(SECRET), "{e}");
    }
    // Plain http beyond loopback: refused without quoting it.
    let a = alerts_config(
        files.path(),
        &format!("http://hooks.example.com/x/{SECRET}"),
        AlertFormat::Json,
    );
    let e = start_with(a).await.unwrap_err().to_string();
    assert!(
        e.contains("alerts.url_file") && e.contains("loopback"),
        "{e}"
    );
    assert!(
        !e.contains(SECRET) && !e.contains("hooks.example.com"),
        "{e}"
    );

    // An unreachable webhook (a closed port): retried, then given up.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{closed}/hooks/T0/B0/{SECRET}");
    let mut a = alerts_config(files.path(), &url, AlertFormat::Json);
    a.max_attempts = 2;
    a.backoff_initial_ms = 10;
    let running = start_with(a).await.unwrap();
    let admin = running.admin();
    let mut spec = job("secret", 4, 1.0);
    spec.population = Some(2);
    admin.create_job(spec).await.unwrap();
    admin.pause_job("secret").await.unwrap();
    let until = Instant::now() + T;
    while running.metrics().alerts("job_paused", "failed") == 0 {
        assert!(Instant::now() < until);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.shutdown().await.unwrap();
    let text = log_text();
    assert!(
        text.contains("alert delivery failed, retrying"),
        "the failure was logged"
    );
    assert!(
        text.contains("alert not delivered after 2 attempt(s)"),
        "{text}"
    );
    assert!(text.contains("alerts on: webhook sink started"));
    assert!(!text.contains(SECRET), "the URL leaked into the logs");
    assert!(
        !text.contains("/hooks/T0/B0"),
        "the URL's path leaked into the logs"
    );
    assert_url_never_logged();
}
