//! The vendored candle-core stores the first gradient reaching a tensor instead of adding it
//! onto zeros (vendor/README.md). These check what that must not change: single-use and
//! fan-in gradients, the subtracting rules it leaves alone, and contiguous results.

use candle_core::{Device, Tensor, Var};

fn var(values: &[f32]) -> Var {
    Var::from_slice(values, values.len(), &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn a_single_use_passes_its_gradient_through_unchanged() {
    let x = var(&[1.0, -2.0, 0.5]);
    let grads = (x.as_tensor() * 3.0)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(values(grads.get(x.as_tensor()).unwrap()), [3.0, 3.0, 3.0]);
}

#[test]
fn fan_in_sums_every_path() {
    // y = Σ (2x + x²): dy/dx = 2 + 2x, through two uses of x.
    let x = var(&[1.0, -2.0, 0.5]);
    let t = x.as_tensor();
    let y = ((t * 2.0).unwrap() + t.sqr().unwrap()).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(values(grads.get(t).unwrap()), [4.0, -2.0, 3.0]);
    // x + x: the same incoming gradient reaches both sides of the addition.
    let grads = (t + t).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(values(grads.get(t).unwrap()), [2.0, 2.0, 2.0]);
}

#[test]
fn subtraction_and_a_mixed_fan_in_keep_their_signs() {
    // y = Σ (a − x) + Σ x·a: dy/dx = a − 1, dy/da = 1 + x.
    let (a, x) = (var(&[2.0, 3.0]), var(&[5.0, -1.0]));
    let (at, xt) = (a.as_tensor(), x.as_tensor());
    let y =
        ((at - xt).unwrap().sum_all().unwrap() + (xt * at).unwrap().sum_all().unwrap()).unwrap();
    let grads = y.backward().unwrap();
    assert_eq!(values(grads.get(xt).unwrap()), [1.0, 2.0]);
    assert_eq!(values(grads.get(at).unwrap()), [6.0, 0.0]);
}

#[test]
fn a_broadcast_gradient_is_stored_contiguous() {
    // x (3) broadcast over 2 rows: each entry's gradient is the sum over the rows.
    let x = var(&[1.0, 2.0, 3.0]);
    let w = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], (2, 3), &Device::Cpu).unwrap();
    let y = x.as_tensor().broadcast_as((2, 3)).unwrap().mul(&w).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    let g = grads.get(x.as_tensor()).unwrap();
    assert!(g.is_contiguous());
    assert_eq!(values(g), [5.0, 7.0, 9.0]);
}

/// An op whose backward pass returns a gradient of the wrong shape.
struct WrongShapedGradient;

impl candle_core::CustomOp1 for WrongShapedGradient {
    fn name(&self) -> &'static str {
        "wrong-shaped-gradient"
    }
    fn cpu_fwd(
        &self,
        s: &candle_core::CpuStorage,
        l: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        Ok((s.clone(), l.shape().clone()))
    }
    fn bwd(&self, _: &Tensor, _: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(Tensor::cat(&[grad, grad], 0)?))
    }
}

#[test]
fn a_gradient_of_the_wrong_shape_is_an_error_not_stored() {
    let x = var(&[1.0, 2.0]);
    let y = x.as_tensor().apply_op1(WrongShapedGradient).unwrap();
    let err = y.sum_all().unwrap().backward().unwrap_err().to_string();
    assert!(err.contains("shape mismatch"), "{err}");
}

/// The element at multi-index `index` of a tensor of `dims` read through `strides`.
fn strided_element(data: &[f32], offset: usize, strides: &[usize], index: &[usize]) -> f32 {
    data[offset + index.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>()]
}

#[test]
fn copying_a_broadcast_matches_reading_each_element() {
    // The vendored copy fills runs for stride-0 inner dimensions; every layout here must
    // come out as reading the source element by element would.
    let source: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
    let base = Tensor::from_slice(&source, (2, 3, 4), &Device::Cpu).unwrap();
    let cases: Vec<(&str, Tensor)> = vec![
        // A scalar spread over everything (the gradient of sum_all).
        (
            "scalar",
            base.get(1)
                .unwrap()
                .get(2)
                .unwrap()
                .get(3)
                .unwrap()
                .broadcast_as((2, 3, 5))
                .unwrap(),
        ),
        // Per-channel values over batch and space (a batch-norm mean's gradient).
        (
            "per channel",
            base.get(0)
                .unwrap()
                .get(1)
                .unwrap()
                .reshape((1, 4, 1, 1))
                .unwrap()
                .broadcast_as((3, 4, 2, 5))
                .unwrap(),
        ),
        // A transposed, offset view with a broadcast inner dimension.
        (
            "transposed",
            base.narrow(2, 1, 3)
                .unwrap()
                .t()
                .unwrap()
                .unsqueeze(3)
                .unwrap()
                .broadcast_as((2, 3, 3, 6))
                .unwrap(),
        ),
        // Broadcast outer dimension only: the generic path.
        (
            "outer",
            base.get(0)
                .unwrap()
                .unsqueeze(0)
                .unwrap()
                .broadcast_as((2, 3, 4))
                .unwrap(),
        ),
    ];
    for (name, view) in cases {
        let (storage, layout) = view.storage_and_layout();
        let data: Vec<f32> = match &*storage {
            candle_core::Storage::Cpu(cpu) => cpu.as_slice::<f32>().unwrap().to_vec(),
            _ => unreachable!("built on the CPU"),
        };
        let dims = layout.dims().to_vec();
        let strides = layout.stride().to_vec();
        let offset = layout.start_offset();
        drop(storage);
        let mut expected = Vec::new();
        let mut index = vec![0; dims.len()];
        for _ in 0..dims.iter().product::<usize>() {
            expected.push(strided_element(&data, offset, &strides, &index));
            for d in (0..dims.len()).rev() {
                index[d] += 1;
                if index[d] < dims[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        assert_eq!(values(&view.contiguous().unwrap()), expected, "{name}");
    }
}
