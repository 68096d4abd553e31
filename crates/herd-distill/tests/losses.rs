//! Every loss and its gradient against PyTorch autograd on fixed logits
//! (tests/fixtures/distill/losses.json, written by
//! tools/make_distill_fixtures.py), for the full and the top-k teacher; and
//! the fused, chunked head against herd-train's plain cross-entropy.

use std::path::Path;

use candle_core::{Device, Tensor, Var};
use herd_distill::{head_loss, DistillLoss, LossSpec, TeacherRow};
use herd_train::record::Example;
use serde_json::Value;

fn fixture() -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/distill/losses.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn ints(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("int") as u32)
        .collect()
}

#[test]
fn losses_and_gradients_match_pytorch() {
    let f = fixture();
    let (n, v, k) = (
        f["n"].as_u64().unwrap() as usize,
        f["vocab"].as_u64().unwrap() as usize,
        f["k"].as_u64().unwrap() as usize,
    );
    let (student, teacher, labels) = (
        floats(&f["student"]),
        floats(&f["teacher"]),
        ints(&f["labels"]),
    );
    let (ids, lps, tail) = (
        ints(&f["topk_ids"]),
        floats(&f["topk_logprobs"]),
        floats(&f["topk_tail"]),
    );
    let (beta, alpha) = (f["beta"].as_f64().unwrap(), f["alpha"].as_f64().unwrap());
    let mut checked = 0;
    for (name, expected) in f["cases"].as_object().expect("cases") {
        let (kind, form) = name.split_once('/').expect("kind/form");
        let loss = match kind {
            "ce" => DistillLoss::CrossEntropy,
            "fkl" => DistillLoss::ForwardKl,
            "rkl" => DistillLoss::ReverseKl,
            "jsd" => DistillLoss::Jsd { beta },
            "skl" => DistillLoss::SkewKl { alpha },
            other => panic!("unknown loss {other}"),
        };
        let spec = LossSpec {
            loss,
            temperature: f["temperature"].as_f64().unwrap(),
            kd_weight: f["kd_weight"].as_f64().unwrap(),
        };
        let mut grad = vec![0f32; n * v];
        let mut total = 0.0;
        for i in 0..n {
            let row = match form {
                "full" => TeacherRow::Logits(&teacher[i * v..(i + 1) * v]),
                _ => TeacherRow::TopK {
                    ids: &ids[i * k..(i + 1) * k],
                    logprobs: &lps[i * k..(i + 1) * k],
                    tail: tail[i],
                },
            };
            total += spec.position(
                &student[i * v..(i + 1) * v],
                Some(row),
                labels[i],
                1.0,
                &mut grad[i * v..(i + 1) * v],
            );
        }
        let want = expected["loss"].as_f64().unwrap();
        assert!(
            (total - want).abs() < 1e-5,
            "{name}: loss {total}, PyTorch {want}"
        );
        for (j, (g, w)) in grad.iter().zip(floats(&expected["grad"])).enumerate() {
            assert!(
                (g - w).abs() < 1e-5,
                "{name}: gradient {j} is {g}, PyTorch {w}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 10);
}

/// The fused op's loss and both gradients equal plain autograd through
/// `hidden · headᵀ` and log-softmax, including across chunk boundaries.
#[test]
fn fused_head_equals_unfused_cross_entropy() {
    let dev = &Device::Cpu;
    let (n, dim, vocab) = (37, 8, 11);
    let values = |len: usize, seed: usize| -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0) - 1.0)
            .collect()
    };
    let hidden = Var::from_vec(values(n * dim, 1), (n, dim), dev).unwrap();
    let head = Var::from_vec(values(vocab * dim, 2), (vocab, dim), dev).unwrap();
    // One example whose n + 1 ids all count, except the first.
    let ids: Vec<u32> = (0..=n as u32).map(|i| (i * 5) % vocab as u32).collect();
    let target = (0..=n).map(|i| i > 0).collect();
    let example = Example {
        ids: ids.clone(),
        target,
    };
    let spec = LossSpec {
        loss: DistillLoss::CrossEntropy,
        temperature: 1.0,
        kd_weight: 0.0,
    };
    let fused = head_loss(
        hidden.as_tensor(),
        head.as_tensor(),
        spec,
        vocab,
        vec![example],
        None,
    )
    .unwrap();
    let fused_grads = fused.backward().unwrap();
    let logits = hidden
        .as_tensor()
        .matmul(&head.as_tensor().t().unwrap())
        .unwrap();
    let labels = Tensor::from_vec(ids[1..].to_vec(), (n, 1), dev).unwrap();
    let plain = candle_nn_free_ce(&logits, &labels);
    let plain_grads = plain.backward().unwrap();
    let close = |a: &Tensor, b: &Tensor| {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    assert!(close(&fused, &plain) < 1e-4, "loss");
    for var in [&hidden, &head] {
        let (a, b) = (
            fused_grads.get(var.as_tensor()).unwrap(),
            plain_grads.get(var.as_tensor()).unwrap(),
        );
        assert!(close(a, b) < 1e-5, "gradient differs by {}", close(a, b));
    }
}

/// `Σ −log softmax(logits)[label]` from candle ops.
fn candle_nn_free_ce(logits: &Tensor, labels: &Tensor) -> Tensor {
    let max = logits.max_keepdim(1).unwrap();
    let shifted = logits.broadcast_sub(&max).unwrap();
    let lse = shifted
        .exp()
        .unwrap()
        .sum_keepdim(1)
        .unwrap()
        .log()
        .unwrap();
    let logp = shifted.broadcast_sub(&lse).unwrap();
    logp.gather(labels, 1)
        .unwrap()
        .sum_all()
        .unwrap()
        .neg()
        .unwrap()
}
