//! `GetRoundHistory`: a job's round history, page by page.
//!
//! A published version's receipt states ε over rounds `1..=R` and names them
//! by a digest ([`fedsec_privacy::HistoryRef`]) instead of embedding them:
//! the charges are stored once per job (the ledger) and served from the
//! job's in-memory copy of it, at most [`MAX_HISTORY_PAGE_ROUNDS`] per call,
//! in round order. Every charge served was committed before it entered that
//! copy, so a page never shows a round the store could lose.

use fedsec_proto::MAX_HISTORY_PAGE_ROUNDS;
use fedsec_proto::v1::{GetRoundHistoryRequest, GetRoundHistoryResponse};

use crate::accounting::charge_to_proto;
use crate::error::Error;
use crate::job::JobRuntime;

/// The page `request` asks for (its job id already checked and resolved).
pub(crate) fn page(
    job: &JobRuntime,
    request: &GetRoundHistoryRequest,
) -> Result<GetRoundHistoryResponse, Error> {
    if request.first_round == 0 {
        return Err(Error::InvalidArgument(
            "first_round must be at least 1 (rounds are numbered from 1)".into(),
        ));
    }
    let max = match request.max_rounds {
        0 => MAX_HISTORY_PAGE_ROUNDS,
        n => n.min(MAX_HISTORY_PAGE_ROUNDS),
    };
    let (charges, rounds_committed) = job.charges_page(request.first_round, max as usize);
    Ok(GetRoundHistoryResponse {
        rounds: charges.iter().map(charge_to_proto).collect(),
        rounds_committed,
    })
}
