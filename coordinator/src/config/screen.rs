//! A job's update screen (`[jobs.screen]` / `JobConfig.screen`): the policy
//! for flagged updates and the thresholds of the round core's rules
//! (`fedsec_round::screen`). Every key has a default; unknown keys and
//! unknown policies are refused with the key named.

use fedsec_proto::v1;
use fedsec_round::{ScreenConfig, ScreenPolicy, ScreenThresholds};
use serde::{Deserialize, Serialize};

use super::{CResult, ConfigError};

/// What a job does with a flagged update.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScreenPolicyKind {
    /// WARN event, metric, round record; the update stays in the sum.
    Log,
    /// As `log`, and the update is left out of the sum (the default).
    #[default]
    Exclude,
    /// As `exclude`, and the sending client identity is quarantined (audited).
    Quarantine,
}

impl From<ScreenPolicyKind> for ScreenPolicy {
    fn from(k: ScreenPolicyKind) -> Self {
        match k {
            ScreenPolicyKind::Log => Self::Log,
            ScreenPolicyKind::Exclude => Self::Exclude,
            ScreenPolicyKind::Quarantine => Self::Quarantine,
        }
    }
}

impl From<ScreenPolicy> for ScreenPolicyKind {
    fn from(p: ScreenPolicy) -> Self {
        match p {
            ScreenPolicy::Log => Self::Log,
            ScreenPolicy::Exclude => Self::Exclude,
            ScreenPolicy::Quarantine => Self::Quarantine,
        }
    }
}

fn d() -> ScreenThresholds {
    ScreenThresholds::default()
}
fn d_max_norm_ratio() -> f64 {
    d().max_norm_ratio
}
fn d_min_cosine() -> f64 {
    d().min_cosine
}
fn d_min_sign_agreement() -> f64 {
    d().min_sign_agreement
}
fn d_max_layer_share() -> f64 {
    d().max_layer_share
}
fn d_history_len() -> u32 {
    d().history_len as u32
}
fn d_min_history() -> u32 {
    d().min_history as u32
}
fn d_max_norm_z() -> f64 {
    d().max_norm_z
}
fn d_max_cosine_z() -> f64 {
    d().max_cosine_z
}

/// A job's update screen. See the README's "Update screening" for what
/// each statistic is and `privacy/README.md` for why it keeps the DP
/// argument.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScreenSpec {
    /// `log`, `exclude` (default) or `quarantine`.
    #[serde(default)]
    pub policy: ScreenPolicyKind,
    /// Norm before re-clipping above `max_norm_ratio × C` is flagged (≥ 1). Default 1.01.
    #[serde(default = "d_max_norm_ratio")]
    pub max_norm_ratio: f64,
    /// Cosine with the previous published update below this is flagged; -1 = off (default).
    #[serde(default = "d_min_cosine")]
    pub min_cosine: f64,
    /// Sign agreement with the previous published update below this is flagged; 0 = off (default).
    #[serde(default = "d_min_sign_agreement")]
    pub min_sign_agreement: f64,
    /// Share of the squared norm in one layer above this is flagged; 1 = off (default).
    #[serde(default = "d_max_layer_share")]
    pub max_layer_share: f64,
    /// Past scores kept per tenant, 1..=1024. Default 16.
    #[serde(default = "d_history_len")]
    pub history_len: u32,
    /// Past scores needed before the history rules fire, 1..=history_len. Default 4.
    #[serde(default = "d_min_history")]
    pub min_history: u32,
    /// Robust z of the norm above the tenant's own history that is flagged; 0 = off. Default 6.
    #[serde(default = "d_max_norm_z")]
    pub max_norm_z: f64,
    /// Robust z of the cosine below the tenant's own history that is flagged; 0 = off (default).
    #[serde(default = "d_max_cosine_z")]
    pub max_cosine_z: f64,
}

impl Default for ScreenSpec {
    fn default() -> Self {
        Self::from_config(&ScreenConfig::default())
    }
}

impl ScreenSpec {
    /// The round core's config.
    pub fn config(&self) -> ScreenConfig {
        ScreenConfig {
            policy: self.policy.into(),
            thresholds: ScreenThresholds {
                max_norm_ratio: self.max_norm_ratio,
                min_cosine: self.min_cosine,
                min_sign_agreement: self.min_sign_agreement,
                max_layer_share: self.max_layer_share,
                history_len: self.history_len as usize,
                min_history: self.min_history as usize,
                max_norm_z: self.max_norm_z,
                max_cosine_z: self.max_cosine_z,
            },
        }
    }

    fn from_config(c: &ScreenConfig) -> Self {
        let t = &c.thresholds;
        Self {
            policy: c.policy.into(),
            max_norm_ratio: t.max_norm_ratio,
            min_cosine: t.min_cosine,
            min_sign_agreement: t.min_sign_agreement,
            max_layer_share: t.max_layer_share,
            history_len: u32::try_from(t.history_len).unwrap_or(u32::MAX),
            min_history: u32::try_from(t.min_history).unwrap_or(u32::MAX),
            max_norm_z: t.max_norm_z,
            max_cosine_z: t.max_cosine_z,
        }
    }

    /// Checks every threshold; the error names `{prefix}.screen.{field}`.
    pub fn validate(&self, prefix: &str) -> CResult {
        self.config()
            .thresholds
            .validate()
            .map_err(|e| ConfigError::invalid(format!("{prefix}.screen.{}", e.field), e.reason))
    }

    /// From the Admin API's `ScreenConfig`: unset fields take their
    /// defaults; an unknown policy is refused naming `config.screen.policy`.
    pub fn from_proto(m: &v1::ScreenConfig) -> CResult<Self> {
        let d = Self::default();
        let policy = if m.policy.is_empty() {
            d.policy
        } else {
            m.policy
                .parse::<ScreenPolicy>()
                .map_err(|e| ConfigError::invalid("config.screen.policy", e.to_string()))?
                .into()
        };
        let count = |key: &str, v: Option<u32>, default: u32| -> CResult<u32> {
            match v {
                None => Ok(default),
                Some(v) if v as usize <= fedsec_round::screen::MAX_HISTORY_LEN => Ok(v),
                Some(v) => Err(ConfigError::invalid(
                    format!("config.screen.{key}"),
                    format!(
                        "{v} must be at most {}",
                        fedsec_round::screen::MAX_HISTORY_LEN
                    ),
                )),
            }
        };
        Ok(Self {
            policy,
            max_norm_ratio: m.max_norm_ratio.unwrap_or(d.max_norm_ratio),
            min_cosine: m.min_cosine.unwrap_or(d.min_cosine),
            min_sign_agreement: m.min_sign_agreement.unwrap_or(d.min_sign_agreement),
            max_layer_share: m.max_layer_share.unwrap_or(d.max_layer_share),
            history_len: count("history_len", m.history_len, d.history_len)?,
            min_history: count("min_history", m.min_history, d.min_history)?,
            max_norm_z: m.max_norm_z.unwrap_or(d.max_norm_z),
            max_cosine_z: m.max_cosine_z.unwrap_or(d.max_cosine_z),
        })
    }

    /// As the Admin API's `ScreenConfig` (every field set).
    pub fn to_proto(&self) -> v1::ScreenConfig {
        v1::ScreenConfig {
            policy: ScreenPolicy::from(self.policy).as_str().to_owned(),
            max_norm_ratio: Some(self.max_norm_ratio),
            min_cosine: Some(self.min_cosine),
            min_sign_agreement: Some(self.min_sign_agreement),
            max_layer_share: Some(self.max_layer_share),
            history_len: Some(self.history_len),
            min_history: Some(self.min_history),
            max_norm_z: Some(self.max_norm_z),
            max_cosine_z: Some(self.max_cosine_z),
        }
    }
}
