//! When a run has diverged, and from which step.
//!
//! A loss that becomes NaN or infinite ends a run at once. A loss can also explode while
//! staying finite: a GAN at learning rate 50 runs on with losses of 10¹¹ and never learns
//! again. The rule for that, per watched loss:
//!
//! - its *reference level* is the largest of 1 nat, its first finite value in this run, and
//!   the median of its last [`WINDOW`] values that were not exploding;
//! - a value above [`FACTOR`] times the reference level is *exploding*;
//! - [`STREAK`] exploding values in a row are a divergence, dated from the first of them.
//!
//! The floor of 1 nat keeps a loss that legitimately nears 0 (a discriminator that wins
//! for a while) from making any later ordinary value look explosive; the first value keeps
//! the reference at the untrained model's level while the loss falls; the streak lets a
//! short spike pass. None of the project's models comes near 100 nats above its starting
//! loss in a healthy run.
//!
//! A checkpoint is *good* once the [`STREAK`] steps that start from its weights were all
//! healthy. "Its next step was finite" is not enough: after an explosion that subsides,
//! the weights can give one finite loss and NaN the step after, whatever the learning
//! rate. [`Fallback`] tracks which checkpoint is the newest good one, so that a divergence
//! can name it and the rotation of old checkpoints never deletes it.

use crate::neural::{Metric, Metrics};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

/// How many times its reference level a loss must exceed to be exploding.
pub const FACTOR: f64 = 100.0;
/// Exploding steps in a row that make a divergence.
pub const STREAK: u32 = 10;
/// Values the running median is taken over.
pub const WINDOW: usize = 200;

/// What one step's losses say.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// No watched loss is exploding.
    Healthy,
    /// Some loss is exploding, since step `since`, but not yet for [`STREAK`] steps.
    Suspect { since: u64 },
    /// The run diverged at step `since`; `why` says how.
    Diverged {
        loss: Metric,
        value: f64,
        since: u64,
        why: Why,
    },
}

/// How a run diverged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Why {
    /// The loss became NaN or infinite.
    NotFinite,
    /// The loss stayed above `threshold` (FACTOR times its reference level) for STREAK steps.
    Exploded { threshold: f64 },
}

#[derive(Debug, Default)]
struct LossHistory {
    first: Option<f64>,
    recent: VecDeque<f64>,
    /// The first step of the current run of exploding values, and its length.
    streak: Option<(u64, u32)>,
}

impl LossHistory {
    fn threshold(&self) -> f64 {
        let mut sorted: Vec<f64> = self.recent.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let median = if sorted.is_empty() {
            0.0
        } else {
            let m = sorted.len() / 2;
            if sorted.len() % 2 == 1 {
                sorted[m]
            } else {
                0.5 * (sorted[m - 1] + sorted[m])
            }
        };
        FACTOR * median.max(self.first.unwrap_or(0.0).abs()).max(1.0)
    }
}

/// Watches the losses of one run, step by step.
#[derive(Debug, Default)]
pub struct Watch {
    losses: Vec<(Metric, LossHistory)>,
}

impl Watch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Judges step `step`'s values of the `watched` losses (those absent from `metrics` are
    /// skipped).
    pub fn observe(&mut self, step: u64, metrics: &Metrics, watched: &[Metric]) -> Verdict {
        let mut verdict = Verdict::Healthy;
        for &loss in watched {
            let Some(value) = crate::neural::metric(metrics, loss) else {
                continue;
            };
            if !value.is_finite() {
                return Verdict::Diverged {
                    loss,
                    value,
                    since: step,
                    why: Why::NotFinite,
                };
            }
            let history = match self.losses.iter_mut().find(|(m, _)| *m == loss) {
                Some((_, h)) => h,
                None => {
                    self.losses.push((loss, LossHistory::default()));
                    &mut self.losses.last_mut().expect("just pushed").1
                }
            };
            if history.first.is_none() {
                history.first = Some(value);
            }
            let threshold = history.threshold();
            if value.abs() > threshold {
                let (since, len) = history.streak.map_or((step, 1), |(s, n)| (s, n + 1));
                history.streak = Some((since, len));
                if len >= STREAK {
                    return Verdict::Diverged {
                        loss,
                        value,
                        since,
                        why: Why::Exploded { threshold },
                    };
                }
                verdict = match verdict {
                    Verdict::Suspect { since: s } => Verdict::Suspect {
                        since: s.min(since),
                    },
                    _ => Verdict::Suspect { since },
                };
            } else {
                history.streak = None;
                if history.recent.len() == WINDOW {
                    history.recent.pop_front();
                }
                history.recent.push_back(value.abs());
            }
        }
        verdict
    }
}

/// The checkpoints a run can fall back to after a divergence.
#[derive(Debug, Default)]
pub struct Fallback {
    good: Option<(u64, PathBuf)>,
    /// Checkpoints written but not yet followed by STREAK healthy steps.
    pending: Vec<(u64, PathBuf)>,
    /// The first step of the current run of healthy steps.
    healthy_since: Option<u64>,
}

impl Fallback {
    /// `good`: a checkpoint known to be good from the start (the one a run resumes from),
    /// with its step.
    pub fn new(good: Option<(u64, PathBuf)>) -> Self {
        Self {
            good,
            ..Self::default()
        }
    }

    /// A checkpoint of the weights after `step` steps was written to `path`.
    pub fn written(&mut self, step: u64, path: PathBuf) {
        self.pending.retain(|(s, _)| *s != step);
        self.pending.push((step, path));
    }

    /// Step `step` was judged `verdict`.
    pub fn judged(&mut self, step: u64, verdict: &Verdict) {
        if *verdict != Verdict::Healthy {
            // Every pending checkpoint has this step within its first STREAK: none can be
            // good now.
            self.healthy_since = None;
            self.pending.clear();
            return;
        }
        let since = *self.healthy_since.get_or_insert(step);
        let confirmed = |c: u64| c >= since && step + 1 >= c + STREAK as u64;
        if let Some(newest) = self
            .pending
            .iter()
            .filter(|(c, _)| confirmed(*c))
            .max_by_key(|(c, _)| *c)
        {
            self.good = Some(newest.clone());
        }
        self.pending.retain(|(c, _)| !confirmed(*c) && *c >= since);
    }

    /// The newest good checkpoint, with its step.
    pub fn good(&self) -> Option<&(u64, PathBuf)> {
        self.good.as_ref()
    }

    /// What the rotation of old checkpoints must keep: the good one and those that may
    /// still become good.
    pub fn protected(&self) -> Vec<&Path> {
        self.good
            .iter()
            .chain(&self.pending)
            .map(|(_, p)| p.as_path())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(values: &[f64]) -> Vec<Verdict> {
        let mut w = Watch::new();
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| w.observe(i as u64, &vec![(Metric::DLoss, v)], &[Metric::DLoss]))
            .collect()
    }

    #[test]
    fn a_non_finite_loss_diverges_at_once() {
        let v = run(&[1.3, 1.2, f64::NAN]);
        assert_eq!(v[1], Verdict::Healthy);
        assert!(matches!(
            v[2],
            Verdict::Diverged {
                since: 2,
                why: Why::NotFinite,
                ..
            }
        ));
    }

    /// Lr 50 on the MLP GAN: 1.36 at the first step, then 10¹¹ for ten steps.
    #[test]
    fn ten_steps_above_a_hundred_times_the_reference_diverge_from_the_first() {
        let mut values = vec![1.36];
        values.extend([2.3e11; 10]);
        let v = run(&values);
        assert_eq!(v[1], Verdict::Suspect { since: 1 });
        assert_eq!(v[9], Verdict::Suspect { since: 1 });
        match &v[10] {
            Verdict::Diverged {
                since: 1,
                why: Why::Exploded { threshold },
                ..
            } => assert!((threshold - 136.0).abs() < 1e-9, "{threshold}"),
            other => panic!("expected a divergence from step 1, got {other:?}"),
        }
    }

    /// A discriminator that wins for a while (its loss near 0) and then meets a
    /// better generator (back to 1.4) is ordinary GAN training; so is a spike of nine steps.
    #[test]
    fn a_loss_that_nears_zero_and_recovers_or_spikes_briefly_is_healthy() {
        let mut values = vec![1.39; 50];
        values.extend([0.001; 300]);
        values.extend([1.4; 50]);
        values.extend([500.0; 9]);
        values.extend([1.4; 50]);
        let v = run(&values);
        assert!(v.iter().all(|x| !matches!(x, Verdict::Diverged { .. })));
        assert_eq!(v[400], Verdict::Suspect { since: 400 });
        assert_eq!(*v.last().unwrap(), Verdict::Healthy);
    }

    /// The VAE starts near 543 nats and falls to 100: the first value sets the level, so
    /// the fall never makes a later value look explosive.
    #[test]
    fn a_falling_loss_keeps_its_first_value_as_the_reference() {
        let mut values: Vec<f64> = (0..300).map(|i| 543.0 - 1.4 * i as f64).collect();
        values.extend([5e4; 20]);
        let v = run(&values);
        assert!(v.iter().all(|x| !matches!(x, Verdict::Diverged { .. })));
        values.extend([6e4; 10]);
        let v = run(&values);
        assert!(matches!(
            v.last().unwrap(),
            Verdict::Diverged { since: 320, .. }
        ));
    }

    /// Checkpoints every 5 steps; steps 23 and 24 explode. The checkpoint at 5 has ten
    /// healthy steps after it by step 14, the one at 10 by step 19; the one at 15 would need 15..=24 and 20 would
    /// need 20..=29, so neither becomes good; 25 does at step 34 and 30 at step 39.
    #[test]
    fn a_checkpoint_is_good_after_ten_healthy_steps_from_its_weights() {
        let mut f = Fallback::new(None);
        let suspect = Verdict::Suspect { since: 23 };
        for step in 0..40u64 {
            if step % 5 == 0 && step > 0 {
                f.written(step, PathBuf::from(format!("ckpt-{step}")));
            }
            let v = if (23..25).contains(&step) {
                suspect.clone()
            } else {
                Verdict::Healthy
            };
            f.judged(step, &v);
            let good = f.good().map(|(s, _)| *s);
            let expected = match step {
                0..=13 => None,
                14..=18 => Some(5),
                19..=33 => Some(10),
                34..=38 => Some(25),
                _ => Some(30),
            };
            assert_eq!(good, expected, "after step {step}");
            if step == 22 {
                let kept: Vec<_> = f
                    .protected()
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                assert_eq!(kept, ["ckpt-10", "ckpt-15", "ckpt-20"]);
            }
        }
    }
}
