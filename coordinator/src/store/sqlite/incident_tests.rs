//! Unit tests of the SQLite store's incident-response records: the
//! contributions record (written with the commit or abandonment, sealed,
//! pruned, never apart from the ledger) and tenant containment.

use super::tests::{attempt, commit, job, version};
use super::*;
use crate::store::{AttemptState, Contribution, ContributionOutcome};

fn accepted(client: &str, norm: f64, t: i64) -> Contribution {
    Contribution {
        client_id: client.into(),
        tenant_id: format!("t-{client}"),
        outcome: ContributionOutcome::Accepted,
        reason: String::new(),
        norm: Some(norm),
        clipped: norm > 1.0,
        screen_json: None,
        unix_ms: t,
    }
}

fn rejected(client: &str, t: i64) -> Contribution {
    Contribution {
        client_id: client.into(),
        tenant_id: format!("t-{client}"),
        outcome: ContributionOutcome::Rejected,
        reason: "non_finite: update value 3 is NaN or infinite".into(),
        norm: None,
        clipped: false,
        screen_json: Some(r#"{"cosine":-0.9}"#.into()),
        unix_ms: t,
    }
}

fn store(key: Option<AtRestKey>) -> SqliteStore {
    let s = SqliteStore::in_memory_with_key(key).unwrap();
    s.insert_job(&job("j"), &version(0, 0)).unwrap();
    for c in ["a", "b"] {
        s.upsert_client(&ClientIdentity::new(&format!("t-{c}"), c).unwrap(), "x", 1)
            .unwrap();
    }
    s
}

fn all(s: &SqliteStore) -> Vec<ContributionRecord> {
    s.contributions(&ContributionFilter::default()).unwrap()
}

/// Round 1 commits with a's accepted update and b's rejected upload;
/// round 2's first attempt is abandoned with a's accepted update.
fn two_rounds(s: &SqliteStore) {
    s.open_attempt(&attempt(1, 1)).unwrap();
    let mut c = commit(1, 1);
    c.participants = vec!["a".into()];
    c.contributions = vec![accepted("a", 2.5, 10), rejected("b", 11)];
    assert_eq!(s.commit_round(&c).unwrap(), (1, 1));
    s.open_attempt(&attempt(2, 1)).unwrap();
    s.abandon_attempt(
        "j",
        2,
        1,
        &AttemptClose {
            accepted: 1,
            rejected: 0,
            note: "job paused".into(),
            closed_unix_ms: 20,
            contributions: vec![accepted("a", 0.5, 19)],
        },
    )
    .unwrap();
}

fn check_two_rounds(s: &SqliteStore) {
    let rows = all(s);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(
        (
            rows[0].round,
            rows[0].attempt,
            rows[0].seq,
            rows[0].model_version
        ),
        (1, 1, 1, Some(1))
    );
    assert_eq!(rows[0].contribution, accepted("a", 2.5, 10));
    assert_eq!(rows[1].contribution, rejected("b", 11));
    assert_eq!(rows[1].model_version, Some(1));
    assert_eq!(
        (rows[2].round, rows[2].model_version),
        (2, None),
        "abandoned"
    );
    let of_a = s
        .contributions(&ContributionFilter {
            client_id: Some("a".into()),
            ..ContributionFilter::default()
        })
        .unwrap();
    assert_eq!(of_a.len(), 2);
    let of_tb = s
        .contributions(&ContributionFilter {
            tenant_id: Some("t-b".into()),
            job_id: Some("j".into()),
            ..ContributionFilter::default()
        })
        .unwrap();
    assert_eq!(of_tb.len(), 1);
    assert_eq!(of_tb[0].contribution.outcome, ContributionOutcome::Rejected);
}

#[test]
fn contributions_are_written_with_the_commit_and_the_abandonment() {
    let s = store(None);
    two_rounds(&s);
    check_two_rounds(&s);
}

#[test]
fn with_encryption_at_rest_the_record_is_sealed_and_bound_to_its_attempt() {
    let s = store(Some(AtRestKey::from_bytes(&[9; 32])));
    two_rounds(&s);
    check_two_rounds(&s);
    {
        let conn = s.conn();
        let clear: Vec<(String, String, String, Option<f64>)> = conn
            .prepare("SELECT client_id, tenant_id, outcome, norm FROM contributions")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            clear
                .iter()
                .all(|(c, t, o, n)| c.is_empty() && t.is_empty() && o == "SEALED" && n.is_none()),
            "{clear:?}"
        );
        // A sealed row moved to another attempt does not open.
        conn.execute("UPDATE contributions SET attempt = 7 WHERE round = 2", [])
            .unwrap();
    }
    assert!(matches!(
        s.contributions(&ContributionFilter::default()),
        Err(StoreError::Encryption(_))
    ));
    // A clear row slipped into a sealed database is refused too.
    s.conn()
        .execute_batch(
            "DELETE FROM contributions WHERE round = 2; \
             UPDATE contributions SET sealed = NULL, client_id = 'x', outcome = 'ACCEPTED' \
             WHERE seq = 1;",
        )
        .unwrap();
    assert!(matches!(
        s.contributions(&ContributionFilter::default()),
        Err(StoreError::Encryption(_))
    ));
}

#[test]
fn a_fault_while_recording_contributions_commits_nothing() {
    let s = store(None);
    s.open_attempt(&attempt(1, 1)).unwrap();
    s.conn()
        .execute_batch(
            "CREATE TRIGGER fail BEFORE INSERT ON contributions \
             BEGIN SELECT RAISE(ABORT, 'injected fault'); END;",
        )
        .unwrap();
    let mut c = commit(1, 1);
    c.contributions = vec![accepted("a", 0.3, 5)];
    assert!(s.commit_round(&c).is_err());
    // Nothing of the round was written: no version, no ledger entry, no
    // progress, no participation, the attempt still open.
    assert_eq!(s.versions("j").unwrap().len(), 1);
    assert!(s.ledger("j").unwrap().is_empty());
    let j = s.job("j").unwrap().unwrap();
    assert_eq!((j.rounds_completed, j.current_version), (0, 0));
    assert!(
        s.clients()
            .unwrap()
            .iter()
            .all(|c| c.rounds_participated == 0)
    );
    assert_eq!(s.attempts("j").unwrap()[0].state, AttemptState::Open);
    assert!(all(&s).is_empty());
    // Once the fault clears the same commit lands with its record.
    s.conn().execute_batch("DROP TRIGGER fail;").unwrap();
    assert_eq!(s.commit_round(&c).unwrap(), (1, 1));
    assert_eq!(all(&s).len(), 1);
}

#[test]
fn retention_prunes_old_rows_then_the_oldest_beyond_the_cap() {
    let s = store(None);
    two_rounds(&s);
    assert_eq!(s.prune_contributions(11, 100).unwrap(), 1, "t = 10 goes");
    assert_eq!(
        s.prune_contributions(0, 1).unwrap(),
        1,
        "the oldest beyond 1"
    );
    let rows = all(&s);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].contribution.unix_ms, 19);
    assert_eq!(s.prune_contributions(0, 1).unwrap(), 0, "idempotent");
}

#[test]
fn containing_a_tenant_quarantines_its_active_identities_and_holds_new_ones() {
    let s = SqliteStore::in_memory().unwrap();
    let id = |t: &str, c: &str| ClientIdentity::new(t, c).unwrap();
    for (t, c) in [
        ("evil", "e1"),
        ("evil", "e2"),
        ("evil", "e3"),
        ("good", "g1"),
    ] {
        s.upsert_client(&id(t, c), "x", 1).unwrap();
    }
    s.set_client_status("e3", ClientStatus::Revoked, "lost key")
        .unwrap();
    let (hold, ids) = s.contain_tenant("evil", "poisoning", 5).unwrap();
    assert_eq!(hold.quarantined, vec!["e1", "e2"]);
    let status = |s: &SqliteStore, c: &str| {
        s.clients()
            .unwrap()
            .into_iter()
            .find(|r| r.identity.client_id == c)
            .unwrap()
            .status
    };
    assert_eq!(ids.len(), 3);
    assert_eq!(status(&s, "e1"), ClientStatus::Quarantined);
    assert_eq!(status(&s, "e3"), ClientStatus::Revoked);
    assert_eq!(
        status(&s, "g1"),
        ClientStatus::Active,
        "other tenants untouched"
    );
    assert!(matches!(
        s.contain_tenant("evil", "again", 6),
        Err(StoreError::Conflict(_))
    ));
    // A registration that raced the containment is stored quarantined.
    let e4 = s.upsert_client(&id("evil", "e4"), "x", 7).unwrap();
    assert_eq!(e4.status, ClientStatus::Quarantined);
    assert_eq!(
        s.contained_tenants().unwrap()[0].quarantined,
        vec!["e1", "e2", "e4"]
    );
    let (released, _) = s.release_tenant("evil", "cleaned").unwrap().unwrap();
    assert_eq!(released.quarantined.len(), 3);
    for c in ["e1", "e2", "e4"] {
        assert_eq!(status(&s, c), ClientStatus::Active, "{c}");
    }
    assert_eq!(
        status(&s, "e3"),
        ClientStatus::Revoked,
        "revocation is permanent"
    );
    assert!(s.contained_tenants().unwrap().is_empty());
    assert!(s.release_tenant("evil", "twice").unwrap().is_none());
}

#[test]
fn audit_events_concerning_a_tenant_match_its_clients_and_tenant_events() {
    let s = SqliteStore::in_memory().unwrap();
    let ev = |kind: &str, client: &str, detail: &str| NewAuditEvent {
        unix_ms: 1,
        kind: kind.into(),
        job_id: String::new(),
        client_id: client.into(),
        detail: detail.into(),
    };
    s.append_audit(&ev("update_rejected", "e1", "x")).unwrap();
    s.append_audit(&ev("update_rejected", "g1", "x")).unwrap();
    s.append_audit(&ev("tenant_contained", "", "tenant evil: by admin a: why"))
        .unwrap();
    s.append_audit(&ev(
        "tenant_contained",
        "",
        "tenant evilcorp: by admin a: other",
    ))
    .unwrap();
    let got = s
        .audit_events_concerning(&["e1".into()], Some("evil"), 10)
        .unwrap();
    let kinds: Vec<(&str, &str)> = got
        .iter()
        .map(|a| (a.event.kind.as_str(), a.event.client_id.as_str()))
        .collect();
    assert_eq!(kinds, [("tenant_contained", ""), ("update_rejected", "e1")]);
    assert_eq!(s.audit_events_concerning(&[], None, 10).unwrap().len(), 0);
}
