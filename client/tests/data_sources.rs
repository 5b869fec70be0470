//! Local data: a watched directory picks up new and growing log files while
//! the participant runs, joined with their labels; sessions handed in by the
//! host count too.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;

use fedsec_client::{DataOptions, DataSource, Event, LabelOptions, PrivacyPolicy};
use fedsec_detector::logs::{LogReader, ReaderConfig};
use fedsec_detector::session::{Sessionizer, sessionize};
use support::{Harness, builder, state_dir, tenant_logs, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_directory_picks_up_new_and_growing_logs() {
    let h = Harness::start().await;
    let source = h.dir.path().join("generated");
    let logs = tenant_logs(&source, 2, 41);
    let watched = h.dir.path().join("watched");
    std::fs::create_dir_all(&watched).unwrap();
    let p = builder(
        &h.endpoint(),
        h.pki.client_tls("tenant-w", "client-w").unwrap(),
        DataSource::watch_dir(&watched),
        PrivacyPolicy::new(10.0, 1e-5),
        &state_dir(h.dir.path(), "w"),
        1,
    )
    // Ground truth only: a session split across two polls must wait for its
    // label rather than take a silver one (weak labels: tests/weak_labels.rs).
    .data_options(DataOptions {
        min_examples: 10,
        rescan_interval: std::time::Duration::from_millis(200),
        labels: LabelOptions {
            weak: false,
            ..LabelOptions::default()
        },
        ..DataOptions::default()
    })
    .build()
    .unwrap();
    let handle = p.handle();
    let mut rx = p.subscribe();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(p.run(async move {
        let _ = stopped.await;
    }));

    // How many labelled sessions each tenant has, by the detector's own join.
    let expected: Vec<usize> = logs
        .iter()
        .map(|f| {
            let mut n = 0;
            let mut reader = LogReader::new(
                std::fs::File::open(&f.log)
                    .map(std::io::BufReader::new)
                    .unwrap(),
                ReaderConfig::default(),
            );
            sessionize(&mut reader, &mut Sessionizer::default(), |_| n += 1, |_| {}).unwrap();
            n
        })
        .collect();

    // A first tenant appears, labels first, then its log in two pieces
    // (the second piece lands while the participant is running).
    std::fs::copy(
        logs[0].labels.as_ref().unwrap(),
        watched.join("a.labels.jsonl"),
    )
    .unwrap();
    let text = std::fs::read(&logs[0].log).unwrap();
    let cut = text[..text.len() / 2]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    std::fs::write(watched.join("a.log"), &text[..cut]).unwrap();
    let mut loaded = 0;
    while loaded < expected[0] {
        if let Event::DataLoaded { added, .. } = wait_for(&mut rx, "tenant a's sessions", |e| {
            matches!(e, Event::DataLoaded { .. })
        })
        .await
        {
            loaded += added;
            if loaded < expected[0] && cut < text.len() {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(watched.join("a.log"))
                    .unwrap();
                f.write_all(&text[cut..]).unwrap();
            }
        }
    }
    // Splitting the file may split a session in two (its halves read in
    // different polls), never lose one: a split half has no label.
    assert!(
        loaded <= expected[0] && loaded + 2 >= expected[0],
        "{loaded} vs {}",
        expected[0]
    );

    // A second tenant's files appear.
    std::fs::copy(
        logs[1].labels.as_ref().unwrap(),
        watched.join("b.labels.jsonl"),
    )
    .unwrap();
    std::fs::copy(&logs[1].log, watched.join("b.log")).unwrap();
    let mut more = 0;
    while more < expected[1] {
        if let Event::DataLoaded { added, .. } = wait_for(&mut rx, "tenant b's sessions", |e| {
            matches!(e, Event::DataLoaded { .. })
        })
        .await
        {
            more += added;
        }
    }
    assert_eq!(more, expected[1]);
    let (train, holdout) = handle.data_counts();
    assert_eq!(train + holdout, loaded + more);
    assert!(holdout > 0 && train > 3 * holdout);

    // The host can hand in labelled sessions too.
    let mut sessions = Vec::new();
    let mut reader = LogReader::new(
        std::fs::File::open(&logs[0].log)
            .map(std::io::BufReader::new)
            .unwrap(),
        ReaderConfig::default(),
    );
    sessionize(
        &mut reader,
        &mut Sessionizer::default(),
        |s| sessions.push(s),
        |_| {},
    )
    .unwrap();
    let kept = handle.add_labelled_sessions(sessions.iter().take(10).map(|s| (s, true)));
    assert_eq!(kept, 10);
    let (t2, h2) = handle.data_counts();
    assert_eq!(t2 + h2, train + holdout + 10);
    // No model yet: scoring says so.
    assert!(matches!(
        handle.score_sessions(&sessions[..1]),
        Err(fedsec_client::ScoreError::NoModel)
    ));
    stop.send(()).unwrap();
    run.await.unwrap().unwrap();
}
