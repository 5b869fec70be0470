//! What the upload path does with an update the job's screen flagged:
//! count it (`fedsec_updates_screened_total{job, outcome}`), quarantine the
//! sending identity under policy `quarantine` (through the Admin API's
//! audited quarantine, actor `update-screen`), and emit one structured
//! WARN event with target `fedsec::screen` naming the job, round, client,
//! tenant, the statistics that fired and their values, and the outcome.
//! Alert sinks subscribe to that target.

use std::sync::Arc;

use fedsec_proto::tls::ClientIdentity;
use fedsec_round::{Added, ScreenPolicy, Screened};

use super::coordinator::CoordinatorService;
use crate::admin::AdminApi;
use crate::alerts::Alert;
use crate::error::Error;
use crate::job::JobRuntime;
use crate::job::screen::scores_json;
use crate::round::OpenRound;

/// The audit actor of quarantines decided by the screen.
pub(crate) const SCREEN_ACTOR: &str = "update-screen";

impl CoordinatorService {
    /// Handles a flagged update after the accept / exclude decision
    /// (`outcome`: `Ok(Some)` added, `Ok(None)` excluded, `Err` refused for
    /// another reason such as a closed round).
    pub(super) async fn flagged(
        &self,
        client: &ClientIdentity,
        job: &Arc<JobRuntime>,
        round: &OpenRound,
        s: &Screened,
        outcome: &Result<Option<Added>, Error>,
    ) {
        let summary = s.summary();
        let mut outcome_name = match outcome {
            Ok(Some(_)) => "logged",
            Ok(None) => "excluded",
            Err(_) => "refused",
        };
        // Quarantined on the evidence, even if the round closed meanwhile.
        if !matches!(outcome, Ok(Some(_))) && job.screen.policy == ScreenPolicy::Quarantine {
            let reason = format!(
                "update screen: job {} round {}: {summary}",
                job.id(),
                round.round
            );
            let reason: String = reason.chars().take(900).collect();
            match AdminApi::new(self.engine.clone(), SCREEN_ACTOR)
                .quarantine_client(&client.client_id, &reason)
                .await
            {
                Ok(_) => outcome_name = "quarantined",
                Err(e) => tracing::error!(
                    target: "fedsec::screen",
                    job = %job.id(),
                    client = %client.client_id,
                    error = %e,
                    "could not quarantine a client the update screen flagged; its update is excluded"
                ),
            }
        }
        self.engine.metrics.update_screened(job.id(), outcome_name);
        let statistics = s
            .findings
            .iter()
            .map(|f| f.statistic.as_str())
            .collect::<Vec<_>>()
            .join(",");
        tracing::warn!(
            target: "fedsec::screen",
            job = %job.id(),
            round = round.round,
            attempt = round.attempt,
            client = %client.client_id,
            tenant = %client.tenant_id,
            statistic = %statistics,
            values = %summary,
            norm_ratio = s.stats.norm_ratio,
            cosine = s.stats.cosine.unwrap_or(f64::NAN),
            policy = %job.screen.policy,
            outcome = outcome_name,
            scores = %scores_json(s),
            "update flagged by the update screen ({outcome_name}): {summary}"
        );
        self.engine.alerts.send(Alert::update_anomaly(
            job.id(),
            &client.client_id,
            &client.tenant_id,
            round.round,
            s.stats.norm_ratio,
            &summary,
            outcome_name,
        ));
    }
}
