//! Timings behind `genmod bench` and `cargo bench`: the same workloads as the reference
//! scripts in `bench/reference/`, so a row can show genmod, the reference and their ratio.
//! Nothing here is asserted in tests: absolute times depend on the machine.

pub mod ablation;
pub mod classical;
pub mod default_runs;
pub mod lockstep;
pub mod neural;
pub mod quality;
pub mod suite;

use std::time::Instant;

/// Median wall time of `reps` runs of `f`, in seconds, after one untimed warm-up run.
pub fn median_seconds(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// One row of a benchmark table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub workload: String,
    pub unit: &'static str,
    /// genmod's figure: the median of its measurements.
    pub genmod: f64,
    /// The reference's figure (scikit-learn or PyTorch), when it was measured.
    pub reference: Option<f64>,
    pub reference_name: &'static str,
    /// Whether a smaller figure is better (times) or a larger one (throughputs).
    pub lower_is_better: bool,
    /// Speed-ups of the interleaved pairs (genmod's measurement and the reference's right
    /// after it), when the row was timed that way.
    pub pair_speedups: Vec<f64>,
    /// Peak resident memory of each side's process during the row's measurements, MiB.
    pub peak_mib: [Option<f64>; 2],
}

impl Row {
    /// A row without pairs or memory figures.
    pub fn new(
        workload: impl Into<String>,
        unit: &'static str,
        genmod: f64,
        reference: Option<f64>,
        reference_name: &'static str,
        lower_is_better: bool,
    ) -> Self {
        Self {
            workload: workload.into(),
            unit,
            genmod,
            reference,
            reference_name,
            lower_is_better,
            pair_speedups: Vec::new(),
            peak_mib: [None, None],
        }
    }

    /// How many times better genmod is than the reference (> 1 means genmod wins): the
    /// median pair's speed-up where the sides were timed in pairs, else the ratio of the
    /// medians.
    pub fn speedup(&self) -> Option<f64> {
        if !self.pair_speedups.is_empty() {
            return Some(median(&self.pair_speedups));
        }
        self.reference.map(|r| {
            if self.lower_is_better {
                r / self.genmod
            } else {
                self.genmod / r
            }
        })
    }

    /// The lowest and highest pair speed-up.
    pub fn speedup_range(&self) -> Option<(f64, f64)> {
        let v = &self.pair_speedups;
        (!v.is_empty()).then(|| min_max(v))
    }
}

/// The smallest and largest of `v`; (∞, −∞) for none.
pub fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// The median of `v` (the upper one of an even count); NaN for none.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A Markdown table of rows; the memory column appears when some row has a figure.
pub fn markdown(rows: &[Row]) -> String {
    let memory = rows.iter().any(|r| r.peak_mib.iter().any(Option::is_some));
    let mut s = String::from(
        "| workload | unit | genmod | reference | reference value | genmod speed-up |",
    );
    s.push_str(if memory {
        " peak RSS MiB, genmod / reference |\n|---|---|---|---|---|---|---|\n"
    } else {
        "\n|---|---|---|---|---|---|\n"
    });
    for r in rows {
        let speedup = match (r.speedup(), r.speedup_range()) {
            (Some(v), Some((lo, hi))) => format!("{v:.2}x [{lo:.2}–{hi:.2}]"),
            (Some(v), None) => format!("{v:.2}x"),
            (None, _) => "-".into(),
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {speedup} |",
            r.workload,
            r.unit,
            figure(r.genmod),
            r.reference_name,
            r.reference.map_or("not measured".into(), figure),
        ));
        if memory {
            let mib = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
            s.push_str(&format!(
                " {} / {} |",
                mib(r.peak_mib[0]),
                mib(r.peak_mib[1])
            ));
        }
        s.push('\n');
    }
    s
}

/// A measured figure with as many digits as a noisy measurement deserves: whole numbers for
/// throughputs, three significant digits for times.
fn figure(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// This process's peak resident memory (VmHWM) in MiB, where the system reports it: over
/// its whole life, which is why `bench neural` measures memory in a fresh process.
pub fn peak_rss_mib() -> Option<f64> {
    status_kib("VmHWM:").map(|k| k / 1024.0)
}

fn status_kib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paired rows report the median pair and its range, not the ratio of the medians: a
    /// pair whose two sides were slowed together does not flip the row.
    #[test]
    fn a_paired_row_reports_its_median_pair_and_range() {
        let mut row = Row::new("w", "img/s", 100.0, Some(80.0), "PyTorch", false);
        assert_eq!(row.speedup(), Some(1.25));
        row.pair_speedups = vec![1.5, 0.9, 1.4, 1.6, 1.3];
        assert_eq!(row.speedup(), Some(1.4));
        assert_eq!(row.speedup_range(), Some((0.9, 1.6)));
        row.peak_mib = [Some(412.4), None];
        let table = markdown(&[row]);
        assert!(table.contains("| 1.40x [0.90–1.60] | 412 / - |"), "{table}");
        assert!(table.lines().nth(1).unwrap().matches("---").count() == 7);
    }
}
