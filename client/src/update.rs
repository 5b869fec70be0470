//! Turning a local training result into what is uploaded: clip the delta to
//! the task's C with the privacy crate, and add the task's client-side noise
//! (distributed DP mode) with its floating-point-safe source. Pure numerics.

use fedsec_privacy::{GaussianNoise, OpenDpGaussian, clip_in_place};

/// What clipping (and noise) did to an update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prepared {
    /// L2 norm of the delta before clipping.
    pub norm: f64,
    /// Whether the norm was at most C before clipping (the header's `within_clip`).
    pub within_clip: bool,
    /// Stddev of the noise added (0: none).
    pub noise_stddev: f64,
}

/// Why an update could not be prepared.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PrepareError {
    /// Clipping refused the vector or the clip norm.
    #[error(transparent)]
    Clip(#[from] fedsec_privacy::ClipError),
    /// The noise source failed.
    #[error(transparent)]
    Noise(#[from] fedsec_privacy::NoiseError),
    /// The noised update does not fit in f32.
    #[error("the noised update overflows f32")]
    Overflow,
}

/// Clips `delta` in place to L2 norm `clip_norm`, then, if `noise_stddev > 0`,
/// adds i.i.d. `N(0, noise_stddev²)` to every coordinate with
/// [`OpenDpGaussian`] (the task's `client_noise` in `NOISE_MODE_CLIENT`).
pub fn prepare(
    delta: &mut [f32],
    clip_norm: f64,
    noise_stddev: f64,
) -> Result<Prepared, PrepareError> {
    let norm = clip_in_place(delta, clip_norm)?;
    if noise_stddev > 0.0 {
        let mut wide: Vec<f64> = delta.iter().map(|&x| f64::from(x)).collect();
        OpenDpGaussian::new().add_noise(&mut wide, noise_stddev)?;
        for (d, w) in delta.iter_mut().zip(&wide) {
            let v = *w as f32;
            if !v.is_finite() {
                return Err(PrepareError::Overflow);
            }
            *d = v;
        }
    }
    Ok(Prepared {
        norm,
        within_clip: norm <= clip_norm,
        noise_stddev: noise_stddev.max(0.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedsec_privacy::l2_norm;

    #[test]
    fn clips_to_c_and_reports_within_clip_honestly() {
        let mut v = vec![3.0f32, 4.0];
        let p = prepare(&mut v, 1.0, 0.0).unwrap();
        assert_eq!(p.norm, 5.0);
        assert!(!p.within_clip);
        assert!(l2_norm(&v).unwrap() <= 1.0);
        let mut small = vec![0.3f32, 0.4];
        let p = prepare(&mut small, 1.0, 0.0).unwrap();
        assert!(p.within_clip);
        assert_eq!(small, vec![0.3, 0.4], "inside the ball: untouched");
        let mut bad = vec![f32::NAN];
        assert!(matches!(
            prepare(&mut bad, 1.0, 0.0),
            Err(PrepareError::Clip(_))
        ));
    }

    #[test]
    fn client_noise_has_the_requested_spread() {
        let n = 20_000;
        let mut v = vec![0.0f32; n];
        let p = prepare(&mut v, 1.0, 0.5).unwrap();
        assert_eq!(p.noise_stddev, 0.5);
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / (n - 1) as f64;
        // sd of the mean is 0.5/√n ≈ 0.0035; of the variance ≈ 0.25·√(2/n) ≈ 0.0025.
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 0.25).abs() < 0.0125, "variance {var}");
    }
}
