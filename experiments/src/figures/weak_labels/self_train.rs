//! Federated self-training in the simulator: each selected tenant without
//! ground truth scores its abstained training sessions with the global
//! model it downloaded and trains on the confident tails as pseudo-labels
//! ([`fedsec_detector::weak::self_train`]), next to the rules' silver
//! labels. Tenants with ground truth train on it unchanged. The round,
//! clipping, noise and accounting are the simulator's, untouched.

use fedsec_detector::dataset::Dataset;
use fedsec_detector::features::NUM_FEATURES;
use fedsec_detector::weak::self_train::pseudo_labels;
use fedsec_detector::weak::{SelfTraining, SilverPolicy};
use fedsec_model::ModelSpec;

use super::WeakPopulation;
use crate::data::{HoldoutSet, Population};
use crate::error::Result;
use crate::eval;
use crate::figures::Setup;
use crate::sim::{self, FedConfig, FedRun};

/// What a tenant needs to build its rows in a round.
pub struct Plan<'a> {
    wp: &'a WeakPopulation,
    truth: &'a [bool],
    policy: SilverPolicy,
    st: SelfTraining,
    model: ModelSpec,
    /// Per tenant: the abstained training rows' features (row-major).
    abstained: Vec<Vec<f32>>,
}

impl<'a> Plan<'a> {
    /// A plan over `wp` with ground truth where `truth` says so.
    pub fn new(
        wp: &'a WeakPopulation,
        truth: &'a [bool],
        policy: SilverPolicy,
        st: SelfTraining,
        model: ModelSpec,
    ) -> Self {
        let abstained = wp
            .tenants
            .iter()
            .map(|t| {
                let mut f = Vec::new();
                for i in t.abstained() {
                    f.extend_from_slice(t.data.train.row(i));
                }
                f
            })
            .collect();
        Self {
            wp,
            truth,
            policy,
            st,
            model,
            abstained,
        }
    }

    /// Tenant `t`'s rows in `round` from the global `weights`; `None` when
    /// nothing changes (ground truth, warm-up, nothing abstained).
    pub fn rows(&self, t: usize, round: u64, weights: &[f32]) -> Result<Option<Dataset>> {
        let truth = self.truth.get(t).copied().unwrap_or(false);
        let feats = &self.abstained[t];
        if truth || !self.st.active(round) || feats.len() < NUM_FEATURES {
            return Ok(None);
        }
        let p = eval::score(&self.model, weights, feats)?;
        let pseudo = pseudo_labels(&p, &self.st);
        Ok(Some(self.wp.tenants[t].training_rows(
            false,
            &self.policy,
            Some(&pseudo),
        )))
    }
}

/// Runs the federated job with self-training (a progress bar as `run_fed`).
pub fn run_fed(
    setup: &Setup,
    pop: &Population,
    holdout: &HoldoutSet,
    cfg: &FedConfig,
    plan: &Plan<'_>,
    label: &str,
) -> Result<FedRun> {
    let pb = crate::progress::bar(cfg.rounds, "federated", setup.quiet);
    pb.set_message(label.to_string());
    let rows = |t: usize, round: u64, w: &[f32]| plan.rows(t, round, w);
    let run = sim::run_with(pop, holdout, cfg, None, Some(&rows), &mut |r| {
        pb.set_position(r.round);
    })?;
    pb.finish_and_clear();
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::{HOLDOUT_FRACTION, Mode};

    #[test]
    fn rows_change_only_for_tenants_without_truth_after_the_warm_up() {
        let setup = Setup {
            mode: Mode::Fast,
            seed: 5,
            out: std::env::temp_dir(),
            threads: 1,
            quiet: true,
        };
        let cfg = fedsec_detector::synth::SynthConfig {
            tenants: 3,
            ..setup.population_config()
        };
        let wp = WeakPopulation::generate(&cfg, HOLDOUT_FRACTION, 1).unwrap();
        let truth = [true, false, false];
        let st = SelfTraining {
            enabled: true,
            share: 1.0,
            margin: 0.0,
            weight: 1.0,
            warmup_rounds: 2,
        };
        let model = crate::figures::model();
        let plan = Plan::new(&wp, &truth, SilverPolicy::default(), st, model.clone());
        let w = model.init_weights(1);
        // Ground truth wins; warm-up rounds train on the population's rows.
        assert!(plan.rows(0, 10, &w).unwrap().is_none());
        assert!(plan.rows(1, 2, &w).unwrap().is_none());
        let t = (1..wp.len())
            .find(|&t| !wp.tenants[t].abstained().is_empty())
            .expect("a tenant without truth has abstained sessions");
        let base = wp.tenants[t].training_rows(false, &SilverPolicy::default(), None);
        let rows = plan
            .rows(t, 3, &w)
            .unwrap()
            .expect("pseudo-labels after the warm-up");
        // Abstained rows are left out by the policy unless weighted; with
        // share 1 and margin 0 every abstained row gets a pseudo-label.
        let abstained = wp.tenants[t].abstained().len();
        let weighted = SilverPolicy::default().abstained_weight > 0.0;
        let expected = if weighted {
            base.len()
        } else {
            base.len() + abstained
        };
        assert_eq!(rows.len(), expected);
    }
}
