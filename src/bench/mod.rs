//! Timings behind `genmod bench` and `cargo bench`: the same workloads as the reference
//! scripts in `bench/reference/`, so a row can show genmod, the reference and their ratio.
//! Nothing here is asserted in tests: absolute times depend on the machine.

pub mod classical;
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
    pub genmod: f64,
    /// The reference's figure (scikit-learn or PyTorch), when it was measured.
    pub reference: Option<f64>,
    pub reference_name: &'static str,
    /// Whether a smaller figure is better (times) or a larger one (throughputs).
    pub lower_is_better: bool,
}

impl Row {
    /// How many times better genmod is than the reference (> 1 means genmod wins).
    pub fn speedup(&self) -> Option<f64> {
        self.reference.map(|r| {
            if self.lower_is_better {
                r / self.genmod
            } else {
                self.genmod / r
            }
        })
    }
}

/// A Markdown table of rows.
pub fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| workload | unit | genmod | reference | reference value | genmod speed-up |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.workload,
            r.unit,
            figure(r.genmod),
            r.reference_name,
            r.reference.map_or("not measured".into(), figure),
            r.speedup().map_or("-".into(), |v| format!("{v:.2}x")),
        ));
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
