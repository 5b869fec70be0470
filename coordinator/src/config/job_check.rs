//! Validation of a [`JobSpec`]: every value checked, the error naming the
//! offending key (`jobs[0].clipping.clip_norm: must be > 0 (got -1)`), and
//! the `[dangerous]` settings a job needs.

use fedsec_proto::tls::is_valid_id;

use super::{CResult, ConfigError, DangerousConfig, JobSpec, MAX_CANARIES, MAX_POPULATION};

pub(super) fn positive_finite(key: &str, v: f64) -> CResult {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(key, format!("must be > 0 (got {v})")))
    }
}

pub(super) fn in_unit_open(key: &str, v: f64) -> CResult {
    if v > 0.0 && v < 1.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("must be in (0, 1) (got {v})"),
        ))
    }
}

pub(super) fn momentum_range(key: &str, v: f64) -> CResult {
    if (0.0..1.0).contains(&v) {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("must be in [0, 1) (got {v})"),
        ))
    }
}

impl JobSpec {
    /// Why the `[dangerous]` settings in force forbid this job, if they do
    /// (simulation noise or disabled noise without its flag). Checked at
    /// creation and again for every stored job at every start and resume.
    pub fn dangerous_violation(&self, dangerous: &DangerousConfig) -> Option<String> {
        if !self.noise_source.is_production_safe() && !dangerous.allow_simulation_noise {
            return Some(
                "it uses noise_source = \"simulation\" (not floating-point safe) and the \
                 coordinator config no longer has [dangerous] allow_simulation_noise = true"
                    .into(),
            );
        }
        if self.disable_noise && !dangerous.allow_disabled_noise {
            return Some(
                "it publishes without noise (disable_noise = true) and the coordinator \
                 config no longer has [dangerous] allow_disabled_noise = true"
                    .into(),
            );
        }
        None
    }

    /// Checks every value; `key` prefixes the offending key in the error
    /// (e.g. `jobs[0]`). `dangerous` decides whether unsafe noise settings
    /// are allowed.
    pub fn validate(&self, key: &str, dangerous: &DangerousConfig) -> CResult {
        let k = |field: &str| format!("{key}.{field}");
        if !self.id.is_empty() && !is_valid_id(&self.id) {
            return Err(ConfigError::invalid(
                k("id"),
                format!(
                    "{} is not a valid id ([A-Za-z0-9][A-Za-z0-9._-]{{0,63}})",
                    crate::fields::shown(&self.id)
                ),
            ));
        }
        if self.name.len() > crate::fields::MAX_NAME_BYTES {
            return Err(ConfigError::invalid(
                k("name"),
                format!("longer than {} bytes", crate::fields::MAX_NAME_BYTES),
            ));
        }
        self.model
            .validate()
            .map_err(|e| ConfigError::invalid(k("model"), e.to_string()))?;
        if !(1..=1_000_000).contains(&self.rounds) {
            return Err(ConfigError::invalid(
                k("rounds"),
                format!("must be in 1..=1000000 (got {})", self.rounds),
            ));
        }
        match (self.sampling_rate, self.expected_cohort) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    k("sampling_rate"),
                    "set either sampling_rate or expected_cohort, not both",
                ));
            }
            (None, None) => {
                return Err(ConfigError::invalid(
                    k("sampling_rate"),
                    "one of sampling_rate or expected_cohort is required",
                ));
            }
            (Some(q), None) => {
                if !(q > 0.0 && q <= 1.0) {
                    return Err(ConfigError::invalid(
                        k("sampling_rate"),
                        format!("must be in (0, 1] (got {q})"),
                    ));
                }
            }
            (None, Some(m)) => {
                if m == 0 {
                    return Err(ConfigError::invalid(
                        k("expected_cohort"),
                        "must be at least 1",
                    ));
                }
            }
        }
        let c = &self.clipping;
        positive_finite(&k("clipping.clip_norm"), c.clip_norm)?;
        if c.adaptive {
            in_unit_open(&k("clipping.target_quantile"), c.target_quantile)?;
            positive_finite(&k("clipping.learning_rate"), c.learning_rate)?;
            if !(c.count_stddev.is_finite() && c.count_stddev >= 0.0) {
                return Err(ConfigError::invalid(
                    k("clipping.count_stddev"),
                    format!("must be >= 0 (got {})", c.count_stddev),
                ));
            }
            if self.disable_noise {
                return Err(ConfigError::invalid(
                    k("clipping.adaptive"),
                    "adaptive clipping needs noise; it cannot be combined with disable_noise",
                ));
            }
        }
        match (self.noise_multiplier, self.target_epsilon) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    k("noise_multiplier"),
                    "set either noise_multiplier or target_epsilon, not both",
                ));
            }
            (Some(z), None) => positive_finite(&k("noise_multiplier"), z)?,
            (None, Some(eps)) => positive_finite(&k("target_epsilon"), eps)?,
            (None, None) => {}
        }
        in_unit_open(&k("delta"), self.delta)?;
        if self.delta < fedsec_privacy::accounting::pld::DELTA_FLOOR {
            return Err(ConfigError::invalid(
                k("delta"),
                format!(
                    "must be at least {:e}, the smallest δ the PLD accountant answers for (got {:e})",
                    fedsec_privacy::accounting::pld::DELTA_FLOOR,
                    self.delta
                ),
            ));
        }
        if let Some(b) = self.epsilon_budget {
            positive_finite(&k("epsilon_budget"), b)?;
        }
        self.validate_population(&k)?;
        if !(50..=86_400_000).contains(&self.round_deadline_ms) {
            return Err(ConfigError::invalid(
                k("round_deadline_ms"),
                format!("must be in 50..=86400000 (got {})", self.round_deadline_ms),
            ));
        }
        let t = &self.training;
        if t.local_epochs == 0 {
            return Err(ConfigError::invalid(
                k("training.local_epochs"),
                "must be at least 1",
            ));
        }
        if t.batch_size == 0 {
            return Err(ConfigError::invalid(
                k("training.batch_size"),
                "must be at least 1",
            ));
        }
        positive_finite(&k("training.learning_rate"), t.learning_rate)?;
        momentum_range(&k("training.momentum"), t.momentum)?;
        positive_finite(
            &k("server_optimizer.learning_rate"),
            self.server_optimizer.learning_rate,
        )?;
        momentum_range(
            &k("server_optimizer.momentum"),
            self.server_optimizer.momentum,
        )?;
        if !self.noise_source.is_production_safe() && !dangerous.allow_simulation_noise {
            return Err(ConfigError::invalid(
                k("noise_source"),
                "\"simulation\" noise is not floating-point safe; refused unless the \
                 coordinator config has [dangerous] allow_simulation_noise = true",
            ));
        }
        if self.disable_noise {
            if !dangerous.allow_disabled_noise {
                return Err(ConfigError::invalid(
                    k("disable_noise"),
                    "publishing without noise voids all privacy; refused unless the \
                     coordinator config has [dangerous] allow_disabled_noise = true",
                ));
            }
            if self.target_epsilon.is_some() || self.epsilon_budget.is_some() {
                return Err(ConfigError::invalid(
                    k("disable_noise"),
                    "an ε target or budget cannot be met without noise",
                ));
            }
        }
        self.screen.validate(key)?;
        if let Some(a) = &self.audit
            && (a.canaries == 1 || a.canaries > MAX_CANARIES)
        {
            return Err(ConfigError::invalid(
                k("audit.canaries"),
                format!(
                    "must be 0 (no audit) or 2..={} (got {})",
                    MAX_CANARIES, a.canaries
                ),
            ));
        }
        if let Some(p) = &self.init_weights_path {
            if p.as_os_str().is_empty() {
                return Err(ConfigError::invalid(
                    k("init_weights_path"),
                    "must not be empty when set",
                ));
            }
            if p.as_os_str().len() > crate::fields::MAX_PATH_BYTES {
                return Err(ConfigError::invalid(
                    k("init_weights_path"),
                    format!(
                        "{} bytes, the limit is {}",
                        p.as_os_str().len(),
                        crate::fields::MAX_PATH_BYTES
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The declared population, the expected cohort and `min_clients`:
    /// data-independent checks, done when the job is created.
    fn validate_population(&self, k: &dyn Fn(&str) -> String) -> CResult {
        let Some(n) = self.population else {
            return Err(ConfigError::invalid(
                k("population"),
                "required: the number of tenants the job is sized for (public; the fixed \
                 denominator is sampling_rate × population)",
            ));
        };
        if !(1..=MAX_POPULATION).contains(&n) {
            return Err(ConfigError::invalid(
                k("population"),
                format!("must be in 1..={MAX_POPULATION} (got {n})"),
            ));
        }
        if let Some(m) = self.expected_cohort
            && u64::from(m) > n
        {
            return Err(ConfigError::invalid(
                k("expected_cohort"),
                format!("{m} is more than the population of {n} tenants (q would exceed 1)"),
            ));
        }
        if !(self.population_drift.is_finite() && self.population_drift > 0.0) {
            return Err(ConfigError::invalid(
                k("population_drift"),
                format!("must be > 0 (got {})", self.population_drift),
            ));
        }
        if self.min_clients == 0 {
            return Err(ConfigError::invalid(k("min_clients"), "must be at least 1"));
        }
        if let Some((q, cohort)) = self.cohort()
            && cohort < f64::from(self.min_clients)
        {
            return Err(ConfigError::invalid(
                k("min_clients"),
                format!(
                    "the expected cohort q × population = {q} × {n} = {cohort} is below \
                     min_clients = {} (min_clients is the smallest expected cohort a job may \
                     have; every round is released whatever its realised cohort)",
                    self.min_clients
                ),
            ));
        }
        Ok(())
    }
}
