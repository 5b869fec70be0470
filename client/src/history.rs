//! The round history a privacy receipt references: fetched page by page
//! (`Coordinator/GetRoundHistory`), checked against the receipt's digest,
//! and only then verified.
//!
//! A long job's receipt does not embed its history (that would grow every
//! model version by 179 B per round); it names rounds `1..=R` by a SHA-256
//! hash chain ([`fedsec_privacy::HistoryChain`]). This module turns a
//! download header's receipt into a verified [`PrivacyReceipt`]:
//!
//! - a history held inline (short jobs, receipts written before references)
//!   is checked against the reference when there is one;
//! - a referenced history is fetched in order, each page checked (rounds
//!   consecutive, no more than asked), the chain compared with the receipt's
//!   digest; a coordinator serving a history that does not hash to it gets
//!   its receipt refused with [`HistoryError::Mismatch`]'s message;
//! - then [`PrivacyReceipt::verify`] recomputes ε over it.
//!
//! Pages count against the caller's `GetModel` rate limit; a rate-limited
//! page is retried after the coordinator's hint, so a history longer than
//! the burst costs time, not a restarted download.
//!
//! The last verified history of each job is cached in the connection
//! ([`HistoryCache`]): histories only grow, so the next version's check
//! fetches only the rounds committed since (and falls back to a full fetch
//! if the cached prefix does not lead to the new digest).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fedsec_privacy::{
    HistoryChain, HistoryError, HistoryRef, PrivacyReceipt, ReceiptSummary, RoundCharge,
};
use fedsec_proto::MAX_HISTORY_PAGE_ROUNDS;
use fedsec_proto::v1::{self, GetRoundHistoryRequest};

use crate::error::RpcError;
use crate::rpc::Rpc;

/// Longest round history this client accepts from a receipt: 2^21 rounds
/// (twice the coordinator's maximum job length; ~134 MB in memory). A
/// receipt claiming more is refused before anything is fetched.
pub const MAX_HISTORY_ROUNDS: u64 = 1 << 21;

/// Jobs whose last verified history one connection keeps.
const CACHED_JOBS: usize = 8;

/// Rate-limited page calls one fetch waits out (each for the coordinator's
/// `retry-after-ms` hint, at most [`MAX_PAGE_WAIT`]): pages count against
/// the `GetModel` rate limit (burst 60 by default), so a history of more
/// than ~60 pages (~10⁶ rounds) outruns the burst and must wait, not start
/// the whole download again.
const MAX_PAGE_WAITS: u32 = 1_000;

/// Longest single wait for a rate-limited page.
const MAX_PAGE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a referenced history could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A call failed (worth retrying).
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The coordinator's answer was refused (the receipt is not usable).
    #[error("{0}")]
    Refused(String),
}

/// A job's verified history and its chain.
type Verified = (Vec<RoundCharge>, HistoryChain);

/// The last verified history per job, shared by clones of one [`Rpc`].
#[derive(Debug, Clone, Default)]
pub struct HistoryCache {
    jobs: Arc<Mutex<HashMap<String, Verified>>>,
}

impl HistoryCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Verified>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached history of `job_id` if it is a prefix no longer than `rounds`.
    fn prefix(&self, job_id: &str, rounds: u64) -> Option<Verified> {
        self.lock()
            .get(job_id)
            .filter(|(_, chain)| chain.rounds() <= rounds)
            .cloned()
    }

    fn keep(&self, job_id: &str, history: &[RoundCharge], chain: HistoryChain) {
        let mut jobs = self.lock();
        if jobs.len() >= CACHED_JOBS && !jobs.contains_key(job_id) {
            jobs.clear();
        }
        jobs.insert(job_id.to_owned(), (history.to_vec(), chain));
    }
}

fn charge_of(c: &v1::RoundCharge) -> RoundCharge {
    RoundCharge {
        round: c.round,
        sampling_rate: c.sampling_rate,
        noise_multiplier: c.noise_multiplier,
        clip_norm: c.clip_norm,
        sensitivity: c.sensitivity,
        count_stddev: c.count_stddev,
        expected_cohort: c.expected_cohort,
        committed_unix_ms: c.committed_unix_ms,
    }
}

impl Rpc {
    /// Rounds `1..=reference.rounds` of `job_id`'s history, checked against
    /// `reference` (consecutive rounds, every page within what was asked,
    /// the hash chain equal to the digest).
    pub async fn fetch_history(
        &self,
        job_id: &str,
        reference: &HistoryRef,
    ) -> Result<Vec<RoundCharge>, FetchError> {
        let total = reference.rounds;
        if total > MAX_HISTORY_ROUNDS {
            return Err(FetchError::Refused(format!(
                "the receipt references {total} rounds, more than this client accepts \
                 ({MAX_HISTORY_ROUNDS})"
            )));
        }
        reference
            .digest()
            .map_err(|e| FetchError::Refused(e.to_string()))?;
        if let Some((mut history, mut chain)) = self.histories().prefix(job_id, total) {
            self.extend(job_id, total, &mut history, &mut chain).await?;
            if chain.check(reference).is_ok() {
                self.histories().keep(job_id, &history, chain);
                return Ok(history);
            }
            // The cached prefix does not lead there: fetch it all again.
        }
        let (mut history, mut chain) = (Vec::new(), HistoryChain::new());
        self.extend(job_id, total, &mut history, &mut chain).await?;
        chain
            .check(reference)
            .map_err(|e| FetchError::Refused(e.to_string()))?;
        self.histories().keep(job_id, &history, chain);
        Ok(history)
    }

    /// Fetches rounds `chain.rounds() + 1 ..= total` onto `history`.
    async fn extend(
        &self,
        job_id: &str,
        total: u64,
        history: &mut Vec<RoundCharge>,
        chain: &mut HistoryChain,
    ) -> Result<(), FetchError> {
        let refuse = |m: String| FetchError::Refused(m);
        history.reserve(usize::try_from(total - chain.rounds()).unwrap_or(0));
        let mut waits = 0u32;
        while chain.rounds() < total {
            let first = chain.rounds() + 1;
            let want = (total - chain.rounds()).min(u64::from(MAX_HISTORY_PAGE_ROUNDS));
            let page = match self.history_page(job_id, first, want as u32).await {
                Ok(page) => page,
                Err(e) if e.code == tonic::Code::ResourceExhausted && waits < MAX_PAGE_WAITS => {
                    waits += 1;
                    let wait = e
                        .retry_after
                        .unwrap_or(std::time::Duration::from_millis(100))
                        .min(MAX_PAGE_WAIT);
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if page.rounds.is_empty() {
                return Err(refuse(format!(
                    "the coordinator's round history of job {job_id:?} ends at round {}, but \
                     the receipt covers {total} rounds",
                    chain.rounds()
                )));
            }
            if page.rounds.len() as u64 > want {
                return Err(refuse(format!(
                    "asked for {want} rounds of history from round {first}, the coordinator sent {}",
                    page.rounds.len()
                )));
            }
            for c in &page.rounds {
                let c = charge_of(c);
                chain
                    .push(&c)
                    .map_err(|e| refuse(format!("round history page from round {first}: {e}")))?;
                history.push(c);
            }
        }
        Ok(())
    }

    /// One `GetRoundHistory` call.
    async fn history_page(
        &self,
        job_id: &str,
        first_round: u64,
        max_rounds: u32,
    ) -> Result<v1::GetRoundHistoryResponse, RpcError> {
        let mut grpc = self.client("GetRoundHistory")?;
        let call = grpc.get_round_history(GetRoundHistoryRequest {
            job_id: job_id.into(),
            first_round,
            max_rounds,
        });
        match tokio::time::timeout(self.timeout(), call).await {
            Err(_) => Err(RpcError::timeout("GetRoundHistory", self.timeout())),
            Ok(Err(s)) => Err(self.err("GetRoundHistory", &s)),
            Ok(Ok(r)) => Ok(r.into_inner()),
        }
    }

    /// The verified receipt of a download header, or why it is not usable.
    /// Fetches a referenced history (an error only when a call failed, so
    /// the caller may retry); a history not matching the receipt's digest,
    /// a malformed receipt or one that does not verify is refused.
    pub(crate) async fn resolve_receipt(
        &self,
        job_id: &str,
        receipt: Option<&v1::PrivacyReceipt>,
    ) -> Result<Result<PrivacyReceipt, String>, RpcError> {
        let Some(r) = receipt else {
            return Ok(Err("the model came without a privacy receipt".to_owned()));
        };
        let summary = match serde_json::from_str::<ReceiptSummary>(&r.json) {
            Ok(s) => s,
            Err(e) => {
                return Ok(Err(format!(
                    "the privacy receipt does not state a DP guarantee ({e})"
                )));
            }
        };
        let fetched = match (&summary.history, summary.needs_history()) {
            (Some(reference), true) => match self.fetch_history(job_id, reference).await {
                Ok(h) => Some(h),
                Err(FetchError::Rpc(e)) => return Err(e),
                Err(FetchError::Refused(m)) => {
                    return Ok(Err(format!(
                        "the privacy receipt's round history is refused: {m}"
                    )));
                }
            },
            _ => None,
        };
        let full = match summary.expand(fetched) {
            Ok(full) => full,
            Err(e @ HistoryError::NoHistory) => {
                return Ok(Err(format!("the privacy receipt is unusable: {e}")));
            }
            Err(e) => {
                return Ok(Err(format!(
                    "the privacy receipt's round history is refused: {e}"
                )));
            }
        };
        Ok(match full.verify() {
            Ok(()) => Ok(full),
            Err(e) => Err(format!("the privacy receipt does not verify: {e}")),
        })
    }
}
