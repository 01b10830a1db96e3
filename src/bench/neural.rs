//! Neural workloads: steady-state training throughput (images per second) of each model at
//! a given batch size, on the embedded digits, the same nets as `bench/reference/pytorch_neural.py`.

use crate::data::mnist;
use crate::neural::{self, ModelKind, NeuralConfig};
use crate::train::shape_of;
use candle_core::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// Median images per second over three timed blocks of `steps` steps, after 5 warm-up steps.
pub fn throughput(kind: ModelKind, batch: usize, steps: usize) -> f64 {
    let split = mnist::embedded();
    let cfg = NeuralConfig::new(kind);
    let mut model = neural::build(&cfg, shape_of(&split), 10, &Device::Cpu, 0).expect("model");
    let table = model.pixel_scale().table();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let order = split.train.epoch_order(0, 0);
    let mut step = 0u64;
    let mut run = |n: usize, step: &mut u64| {
        for _ in 0..n {
            let b = (*step as usize * batch) % (order.len() - batch);
            let batch = split
                .train
                .batch_of(&order[b..b + batch], &table, &Device::Cpu)
                .expect("batch");
            model.train_step(&batch, *step, &mut rng).expect("step");
            *step += 1;
        }
    };
    run(5, &mut step);
    let mut rates: Vec<f64> = (0..3)
        .map(|_| {
            let t = Instant::now();
            run(steps, &mut step);
            (batch * steps) as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[1]
}
