//! One open round attempt: its cohort, deadline, running sum and the
//! one-submission-per-tenant bookkeeping.
//!
//! The privacy unit is the tenant: the cohort is a set of tenant ids, and a
//! tenant contributes at most one update per round, whichever of its client
//! identities sends it (a second identity of the same tenant is refused
//! with ALREADY_EXISTS). The round's mutable state sits behind one
//! short-held mutex. An upload first *claims* its tenant's slot (rejecting
//! duplicates and concurrent uploads), decodes outside the lock, then
//! *accepts* under the lock, which
//! re-checks that the round is still open and adds the re-clipped update to
//! the sum. Closing the round takes the state under the same lock, so an
//! update is either in the released sum or its sender got an error — never
//! both, never neither. A claim that is dropped without being accepted
//! (error, cancelled stream, disconnected client) frees the slot.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use fedsec_privacy::{ClipError, Measured};
use fedsec_proto::v1;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::aggregate::{AddError, Added, RoundSum};
use crate::error::{Error, RejectReason};
use crate::store::{Contribution, ContributionOutcome};

/// Who is sending a tenant's submission: the client identity and its nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sender {
    client_id: String,
    nonce: Vec<u8>,
}

/// Where one tenant's submission stands in this attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    /// Being received.
    InProgress(Sender),
    /// Added to the sum.
    Accepted(Sender),
    /// Flagged by the update screen and left out of the sum (the tenant's
    /// one submission of the round is used up).
    Excluded(Sender),
}

/// Mutable state of an open round.
#[derive(Debug)]
struct State {
    open: bool,
    sum: RoundSum,
    /// By tenant id.
    slots: HashMap<String, Slot>,
    /// Client identities whose updates were accepted (one per tenant).
    participants: Vec<String>,
    rejected: u64,
    /// The attempt's record of who took part, in decision order.
    contributions: Vec<Contribution>,
    /// Rejections recorded per client identity (bounded by
    /// [`MAX_REJECTIONS_RECORDED`]).
    rejections_recorded: HashMap<String, u32>,
    /// Tenants whose update the screen left out of the sum.
    excluded: u64,
}

/// Rejected submissions of one client identity recorded per attempt; later
/// ones are still counted (the ledger's `rejected`) and audited
/// (`update_rejected`, within the identity's audit-row budget), not
/// recorded again.
pub(crate) const MAX_REJECTIONS_RECORDED: u32 = 8;

/// Longest rejection detail kept in the record.
const MAX_RECORDED_DETAIL_BYTES: usize = 256;

/// What an open round starts from.
#[derive(Debug)]
pub(crate) struct Opening {
    /// Job id.
    pub job_id: String,
    /// Round number.
    pub round: u64,
    /// Attempt number.
    pub attempt: u32,
    /// The model version the round trains on.
    pub base_version: u64,
    /// The clip norm C of the round.
    pub clip_norm: f64,
    /// Model dimension.
    pub dim: usize,
    /// When the round closes.
    pub deadline: Instant,
    /// The same deadline, Unix ms.
    pub deadline_unix_ms: i64,
    /// The selected tenants.
    pub selected: HashSet<String>,
    /// The task served to selected clients.
    pub task: v1::Task,
}

/// An open round attempt of one job.
#[derive(Debug)]
pub(crate) struct OpenRound {
    /// Job id.
    pub job_id: String,
    /// Round (1-based).
    pub round: u64,
    /// Attempt (1-based).
    pub attempt: u32,
    /// Model version updates must be computed against.
    pub base_version: u64,
    /// Clip norm C of this round.
    pub clip_norm: f64,
    /// Submission deadline.
    pub deadline: Instant,
    /// Submission deadline, Unix ms.
    pub deadline_unix_ms: i64,
    /// Selected tenant ids (the cohort; the privacy unit is the tenant).
    pub selected: HashSet<String>,
    /// The task handed to selected clients (`remaining_ms` filled per call).
    pub task: v1::Task,
    state: Mutex<State>,
    /// Signalled when every selected client has been accepted.
    pub all_reported: Notify,
    /// Turns `true` when the round closes (uploads in progress are cut off).
    closed: watch::Sender<bool>,
}

/// What closing a round hands to the release step.
#[derive(Debug)]
pub(crate) struct Closed {
    /// The sum and its counters.
    pub sum: RoundSum,
    /// Client identities whose updates were accepted, in acceptance order
    /// (at most one per tenant).
    pub participants: Vec<String>,
    /// Rejected submissions (excluded updates included).
    pub rejected: u64,
    /// Who took part and how (accepted, rejected), in decision order.
    pub contributions: Vec<Contribution>,
    /// Updates the screen left out of the sum.
    pub excluded: u64,
}

/// Outcome of claiming a client's slot.
#[derive(Debug)]
pub(crate) enum Claim {
    /// Go ahead and receive the update; dropping the claim frees the slot.
    Fresh(ClaimGuard),
    /// The same nonce was already accepted: idempotent success.
    AlreadyAccepted,
}

/// A tenant's claimed slot; freed on drop unless [`OpenRound::accept`] succeeded.
#[derive(Debug)]
pub(crate) struct ClaimGuard {
    round: Arc<OpenRound>,
    tenant_id: String,
    sender: Sender,
    done: bool,
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut st = self.round.lock();
        if st.slots.get(&self.tenant_id) == Some(&Slot::InProgress(self.sender.clone())) {
            st.slots.remove(&self.tenant_id);
        }
    }
}

impl OpenRound {
    /// A new open round.
    pub(crate) fn new(o: Opening) -> Self {
        let Opening {
            job_id,
            round,
            attempt,
            base_version,
            clip_norm,
            dim,
            deadline,
            deadline_unix_ms,
            selected,
            task,
        } = o;
        Self {
            job_id,
            round,
            attempt,
            base_version,
            clip_norm,
            deadline,
            deadline_unix_ms,
            selected,
            task,
            state: Mutex::new(State {
                open: true,
                sum: RoundSum::new(dim),
                slots: HashMap::new(),
                participants: Vec::new(),
                rejected: 0,
                contributions: Vec::new(),
                rejections_recorded: HashMap::new(),
                excluded: 0,
            }),
            all_reported: Notify::new(),
            closed: watch::channel(false).0,
        }
    }

    /// Resolves once the round is closed.
    pub(crate) async fn closed(&self) {
        let mut rx = self.closed.subscribe();
        let _ = rx.wait_for(|closed| *closed).await;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether submissions are still taken (open and before the deadline).
    pub(crate) fn accepting(&self) -> bool {
        Instant::now() < self.deadline && self.lock().open
    }

    /// Whether the tenant's update has been accepted in this attempt.
    pub(crate) fn has_accepted(&self, tenant_id: &str) -> bool {
        matches!(self.lock().slots.get(tenant_id), Some(Slot::Accepted(_)))
    }

    /// Whether every selected tenant has been accepted (or had its update
    /// excluded by the screen: it will not send another this round).
    pub(crate) fn all_in(&self) -> bool {
        let st = self.lock();
        !self.selected.is_empty()
            && st.participants.len() as u64 + st.excluded == self.selected.len() as u64
    }

    /// Counts a rejected submission against this attempt and, while the
    /// attempt is open, records it (at most [`MAX_REJECTIONS_RECORDED`] per
    /// identity).
    pub(crate) fn record_rejection(
        &self,
        tenant_id: &str,
        client_id: &str,
        reason: RejectReason,
        detail: &str,
    ) {
        let mut st = self.lock();
        st.rejected += 1;
        if !st.open {
            return;
        }
        let n = st
            .rejections_recorded
            .entry(client_id.to_owned())
            .or_insert(0);
        if *n >= MAX_REJECTIONS_RECORDED {
            return;
        }
        *n += 1;
        st.contributions.push(Contribution {
            client_id: client_id.to_owned(),
            tenant_id: tenant_id.to_owned(),
            outcome: ContributionOutcome::Rejected,
            reason: format!(
                "{}: {}",
                reason.label(),
                crate::fields::prefix(
                    detail
                        .strip_prefix(reason.label())
                        .and_then(|d| d.strip_prefix(": "))
                        .unwrap_or(detail),
                    MAX_RECORDED_DETAIL_BYTES
                )
            ),
            norm: None,
            clipped: false,
            screen_json: None,
            unix_ms: crate::engine::now_unix_ms(),
        });
    }

    fn stale(&self) -> Error {
        Error::rejected(
            RejectReason::StaleRound,
            format!(
                "stale round: round {} attempt {} of job {:?} is closed",
                self.round, self.attempt, self.job_id
            ),
        )
    }

    /// Claims the tenant's slot for an upload by `client_id` with `nonce`:
    /// one submission per tenant per round. The same identity resending
    /// the same nonce after acceptance is an idempotent success; anything
    /// else after acceptance — another nonce, or another identity of the
    /// same tenant — is refused.
    pub(crate) fn claim(
        self: &Arc<Self>,
        tenant_id: &str,
        client_id: &str,
        nonce: &[u8],
    ) -> Result<Claim, Error> {
        let mut st = self.lock();
        if !st.open || Instant::now() >= self.deadline {
            return Err(self.stale());
        }
        let sender = Sender {
            client_id: client_id.to_owned(),
            nonce: nonce.to_vec(),
        };
        match st.slots.get(tenant_id) {
            Some(Slot::Accepted(s)) if *s == sender => return Ok(Claim::AlreadyAccepted),
            Some(Slot::Accepted(s)) if s.client_id == client_id => {
                return Err(Error::rejected(
                    RejectReason::Duplicate,
                    format!(
                        "tenant already submitted this round: an update with another nonce was \
                         already accepted for round {} of job {:?}",
                        self.round, self.job_id
                    ),
                ));
            }
            Some(Slot::Accepted(_)) => {
                return Err(Error::rejected(
                    RejectReason::Duplicate,
                    format!(
                        "tenant already submitted this round: tenant {tenant_id:?} already has an \
                         update accepted for round {} of job {:?} from another of its client \
                         identities (one submission per tenant per round)",
                        self.round, self.job_id
                    ),
                ));
            }
            Some(Slot::Excluded(_)) => {
                return Err(Error::rejected(
                    RejectReason::Duplicate,
                    format!(
                        "tenant already submitted this round: its update for round {} of job {:?} \
                         was excluded by the job's update screen (one submission per tenant per round)",
                        self.round, self.job_id
                    ),
                ));
            }
            Some(Slot::InProgress(_)) => {
                return Err(Error::rejected(
                    RejectReason::InProgress,
                    "another upload of this tenant for this round is still being received; retry after it ends",
                ));
            }
            None => {}
        }
        st.slots
            .insert(tenant_id.to_owned(), Slot::InProgress(sender.clone()));
        Ok(Claim::Fresh(ClaimGuard {
            round: self.clone(),
            tenant_id: tenant_id.to_owned(),
            sender,
            done: false,
        }))
    }

    /// [`accept_screened`](Self::accept_screened) without screen scores
    /// (the unit tests' form).
    #[cfg(test)]
    pub(crate) fn accept(
        &self,
        claim: ClaimGuard,
        update: &[f32],
        claims_within_clip: bool,
    ) -> Result<Added, Error> {
        self.accept_screened(claim, update, claims_within_clip, None)
    }

    /// Re-clips and adds a fully received, digest-checked update. Returns
    /// what the re-clipping did; the sum is untouched on error. The update is
    /// validated and measured before the round's lock is taken, so
    /// concurrent uploads serialise only on the one-pass add. The update
    /// screen's scores (JSON), when given, are kept in the attempt's record
    /// of who took part.
    pub(crate) fn accept_screened(
        &self,
        mut claim: ClaimGuard,
        update: &[f32],
        claims_within_clip: bool,
        screen_json: Option<String>,
    ) -> Result<Added, Error> {
        let measured = Measured::new(update).map_err(|e| match e {
            ClipError::NonFinite { index } => non_finite(index),
            other => Error::Clip {
                what: "measuring an update",
                source: other,
            },
        })?;
        let mut st = self.lock();
        if !st.open || Instant::now() >= self.deadline {
            return Err(self.stale());
        }
        let added = st
            .sum
            .add(&measured, self.clip_norm, claims_within_clip)
            .map_err(|e| match e {
                AddError::NonFinite { index } => non_finite(index),
                AddError::Dimension { expected, actual } => Error::rejected(
                    RejectReason::WrongDimension,
                    format!("update has {actual} values, the model has {expected}"),
                ),
                e @ AddError::ClipNorm(_) => Error::Accumulate(e),
            })?;
        st.participants.push(claim.sender.client_id.clone());
        let slot = Slot::Accepted(claim.sender.clone());
        let row = (ContributionOutcome::Accepted, String::new());
        self.settle(
            st,
            &mut claim,
            slot,
            row,
            Some(added.norm),
            added.clipped,
            screen_json,
        );
        Ok(added)
    }

    /// Records a claimed tenant's outcome in the round (its slot, its row of
    /// who took part), marks the claim done, and wakes the round's close
    /// once every selected tenant has reported.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &self,
        mut st: MutexGuard<'_, State>,
        claim: &mut ClaimGuard,
        slot: Slot,
        (outcome, reason): (ContributionOutcome, String),
        norm: Option<f64>,
        clipped: bool,
        screen_json: Option<String>,
    ) {
        st.slots.insert(claim.tenant_id.clone(), slot);
        st.contributions.push(Contribution {
            client_id: claim.sender.client_id.clone(),
            tenant_id: claim.tenant_id.clone(),
            outcome,
            reason,
            norm,
            clipped,
            screen_json,
            unix_ms: crate::engine::now_unix_ms(),
        });
        claim.done = true;
        let all = st.participants.len() as u64 + st.excluded == self.selected.len() as u64;
        drop(st);
        if all {
            self.all_reported.notify_one();
        }
    }

    /// Leaves a claimed update out of the sum (the update screen flagged it
    /// and the job's policy excludes): the sum is untouched, the tenant's
    /// submission for this round is used up, and the round counts it.
    /// Refused like [`accept`](Self::accept) once the round is closed.
    /// `norm` is the update's norm as received and `screen_json` the
    /// screen's scores, both kept in the attempt's record of who took part.
    pub(crate) fn exclude(
        &self,
        mut claim: ClaimGuard,
        norm: f64,
        screen_json: Option<String>,
    ) -> Result<(), Error> {
        let mut st = self.lock();
        if !st.open || Instant::now() >= self.deadline {
            return Err(self.stale());
        }
        st.excluded += 1;
        let slot = Slot::Excluded(claim.sender.clone());
        let row = (
            ContributionOutcome::Excluded,
            "screened: excluded by the job's update screen".to_owned(),
        );
        self.settle(st, &mut claim, slot, row, Some(norm), false, screen_json);
        Ok(())
    }

    /// Closes the round: no update is accepted afterwards. Returns the sum
    /// (the first call only).
    pub(crate) fn close(&self) -> Option<Closed> {
        let mut st = self.lock();
        if !st.open {
            return None;
        }
        st.open = false;
        self.closed.send_replace(true);
        let sum = std::mem::replace(&mut st.sum, RoundSum::new(0));
        Some(Closed {
            sum,
            participants: std::mem::take(&mut st.participants),
            // Excluded updates are counted here, under the lock that
            // excluded them (the service does not count them again).
            rejected: st.rejected + st.excluded,
            excluded: st.excluded,
            contributions: std::mem::take(&mut st.contributions),
        })
    }
}

fn non_finite(index: usize) -> Error {
    Error::rejected(
        RejectReason::NonFinite,
        format!("update value {index} is NaN or infinite"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn round(selected: &[&str]) -> Arc<OpenRound> {
        Arc::new(OpenRound::new(Opening {
            job_id: "j".into(),
            round: 1,
            attempt: 1,
            base_version: 0,
            clip_norm: 1.0,
            dim: 2,
            deadline: Instant::now() + Duration::from_secs(60),
            deadline_unix_ms: 0,
            selected: selected.iter().map(|s| (*s).to_owned()).collect(),
            task: v1::Task::default(),
        }))
    }

    fn fresh(c: Claim) -> ClaimGuard {
        match c {
            Claim::Fresh(g) => g,
            Claim::AlreadyAccepted => panic!("expected a fresh claim"),
        }
    }

    #[test]
    fn one_submission_per_client_with_idempotent_retries() {
        let r = round(&["ta", "tb"]);
        let g = fresh(r.claim("ta", "a", b"n1").unwrap());
        // A concurrent second upload is refused while the first runs.
        assert_eq!(
            r.claim("ta", "a", b"n1").unwrap_err().reject_reason(),
            Some(RejectReason::InProgress)
        );
        r.accept(g, &[0.5, 0.0], true).unwrap();
        assert!(matches!(
            r.claim("ta", "a", b"n1").unwrap(),
            Claim::AlreadyAccepted
        ));
        assert_eq!(
            r.claim("ta", "a", b"n2").unwrap_err().reject_reason(),
            Some(RejectReason::Duplicate)
        );
        assert!(!r.all_in());
        // A failed upload frees the slot.
        let g = fresh(r.claim("tb", "b", b"x").unwrap());
        assert_eq!(
            r.accept(g, &[f32::INFINITY, 0.0], true)
                .unwrap_err()
                .reject_reason(),
            Some(RejectReason::NonFinite)
        );
        let g = fresh(r.claim("tb", "b", b"y").unwrap());
        drop(g);
        let g = fresh(r.claim("tb", "b", b"z").unwrap());
        r.accept(g, &[0.0, 3.0], false).unwrap();
        assert!(r.all_in());
        let closed = r.close().unwrap();
        assert_eq!(closed.participants, vec!["a", "b"]);
        assert_eq!(closed.sum.accepted(), 2);
        assert_eq!(closed.sum.clipped(), 1);
        let sum = closed.sum.sum();
        assert_eq!(sum[0], 0.5, "inside the ball: untouched");
        assert!(
            sum[1] <= 1.0 && sum[1] > 1.0 - 1e-12,
            "re-clipped to C: {}",
            sum[1]
        );
        assert!(r.close().is_none());
    }

    #[test]
    fn one_submission_per_tenant_whatever_the_identity() {
        let r = round(&["t"]);
        let g = fresh(r.claim("t", "c1", b"n1").unwrap());
        // While c1's upload runs, c2 of the same tenant must wait.
        assert_eq!(
            r.claim("t", "c2", b"n2").unwrap_err().reject_reason(),
            Some(RejectReason::InProgress)
        );
        r.accept(g, &[0.5, 0.0], true).unwrap();
        assert!(
            r.all_in(),
            "the tenant is the unit: one report completes it"
        );
        // Another identity of the tenant, even with the same nonce, is refused.
        for nonce in [&b"n1"[..], b"n2"] {
            let e = r.claim("t", "c2", nonce).unwrap_err();
            assert_eq!(e.reject_reason(), Some(RejectReason::Duplicate));
            assert!(
                e.to_string()
                    .contains("tenant already submitted this round"),
                "{e}"
            );
        }
        // The accepting identity's retry stays idempotent.
        assert!(matches!(
            r.claim("t", "c1", b"n1").unwrap(),
            Claim::AlreadyAccepted
        ));
        assert!(r.has_accepted("t"));
        let closed = r.close().unwrap();
        assert_eq!(closed.participants, vec!["c1"]);
        assert_eq!(closed.sum.accepted(), 1);
    }

    #[test]
    fn an_excluded_update_leaves_the_sum_alone_and_uses_up_the_tenants_turn() {
        let r = round(&["ta", "tb"]);
        let g = fresh(r.claim("ta", "a", b"n").unwrap());
        r.accept(g, &[0.5, 0.0], true).unwrap();
        let before = r.lock().sum.sum().to_vec();
        let g = fresh(r.claim("tb", "b", b"x").unwrap());
        r.exclude(g, 1e3, Some(r#"{"norm":1000.0}"#.to_owned()))
            .unwrap();
        assert_eq!(r.lock().sum.sum(), &before[..], "nothing of it in the sum");
        assert!(r.all_in(), "the excluded tenant will not report again");
        for (client, nonce) in [("b", &b"x"[..]), ("b", b"y"), ("b2", b"z")] {
            assert_eq!(
                r.claim("tb", client, nonce).unwrap_err().reject_reason(),
                Some(RejectReason::Duplicate)
            );
        }
        let closed = r.close().unwrap();
        assert_eq!(closed.participants, vec!["a"]);
        assert_eq!((closed.sum.accepted(), closed.excluded), (1, 1));
        assert_eq!(closed.rejected, 1, "an excluded update counts as rejected");
        assert_eq!(closed.sum.sum(), &before[..]);
        // The record of who took part names the exclusion with its scores.
        let rows: Vec<_> = closed
            .contributions
            .iter()
            .map(|c| {
                (
                    c.client_id.as_str(),
                    c.outcome,
                    c.norm,
                    c.screen_json.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("a", ContributionOutcome::Accepted, Some(0.5), None),
                (
                    "b",
                    ContributionOutcome::Excluded,
                    Some(1e3),
                    Some(r#"{"norm":1000.0}"#)
                ),
            ]
        );
    }

    #[test]
    fn nothing_is_accepted_after_close() {
        let r = round(&["ta"]);
        let g = fresh(r.claim("ta", "a", b"n").unwrap());
        let closed = r.close().unwrap();
        assert_eq!(
            r.accept(g, &[0.1, 0.1], true).unwrap_err().reject_reason(),
            Some(RejectReason::StaleRound)
        );
        assert_eq!(closed.sum.accepted(), 0);
        assert_eq!(
            r.claim("ta", "a", b"m").unwrap_err().reject_reason(),
            Some(RejectReason::StaleRound)
        );
    }
}
