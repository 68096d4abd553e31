//! `Plan::choose` on the real Llama 3.1 shapes against the layouts
//! practitioners use, and the arithmetic behind them.

use std::path::Path;

use herd_dist::{stage_ranges, valid_tp, Cluster, Plan, PlanDtype, Workload, PRESETS};
use herd_model::Config;

fn preset(name: &str) -> Config {
    let text = PRESETS.iter().find(|(n, _)| *n == name).unwrap().1;
    Config::from_json(text, Path::new(name)).unwrap()
}

const GIB: f64 = (1u64 << 30) as f64;

fn cluster(nodes: usize, gib: f64) -> Cluster {
    Cluster {
        nodes,
        devices_per_node: 8,
        device_memory: gib * GIB,
    }
}

const WORK: Workload = Workload {
    context: 8192,
    batch: 1,
};

#[test]
fn presets_have_the_published_parameter_counts() {
    for (name, billions) in [
        ("llama3.2-1b", 1.24),
        ("llama3.1-8b", 8.03),
        ("llama3.1-70b", 70.55),
        ("llama3.1-405b", 405.85),
    ] {
        let plan = Plan::evaluate(&preset(name), cluster(1, 80.0), PlanDtype::Bf16, WORK, 1, 1);
        assert!(
            (plan.parameters / 1e9 - billions).abs() < 0.01 * billions,
            "{name}: {}",
            plan.parameters / 1e9
        );
    }
}

#[test]
fn llama_405b_needs_two_nodes_in_bf16_and_one_in_fp8() {
    let cfg = preset("llama3.1-405b");
    let bf16 = Plan::choose(&cfg, cluster(2, 80.0), PlanDtype::Bf16, WORK).unwrap();
    assert_eq!((bf16.tp, bf16.pp), (8, 2));
    assert_eq!(bf16.stages, vec![0..63, 63..126]);
    assert!(bf16.fits());
    let fp8 = Plan::choose(&cfg, cluster(2, 80.0), PlanDtype::Fp8, WORK).unwrap();
    assert_eq!((fp8.tp, fp8.pp), (8, 1));
    // One node cannot hold it in bf16: a clear error, not a layout that overflows.
    let err = Plan::choose(&cfg, cluster(1, 80.0), PlanDtype::Bf16, WORK).unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
    // TP traffic: 2 all-reduces per layer of 16384 bf16 values.
    assert_eq!(bf16.tp_allreduce_bytes, 2.0 * 126.0 * 16384.0 * 2.0);
    assert_eq!(bf16.pp_bytes, 16384.0 * 2.0);
}

#[test]
fn small_models_stay_on_one_device() {
    let plan = Plan::choose(
        &preset("llama3.1-8b"),
        cluster(1, 80.0),
        PlanDtype::Bf16,
        WORK,
    )
    .unwrap();
    assert_eq!((plan.tp, plan.pp), (1, 1));
    assert_eq!(plan.tp_allreduce_bytes, 0.0);
    let plan = Plan::choose(
        &preset("llama3.1-70b"),
        cluster(1, 80.0),
        PlanDtype::Bf16,
        WORK,
    )
    .unwrap();
    assert_eq!(plan.tp * plan.pp, 2);
    // 70B on 24 GiB cards in q4 takes two of them; KV for a long batch takes more.
    let q4 = Plan::choose(
        &preset("llama3.1-70b"),
        cluster(1, 24.0),
        PlanDtype::Q4,
        WORK,
    )
    .unwrap();
    assert_eq!(q4.tp * q4.pp, 2);
    let busy = Workload {
        context: 131072,
        batch: 8,
    };
    let more = Plan::choose(
        &preset("llama3.1-70b"),
        cluster(1, 24.0),
        PlanDtype::Q4,
        busy,
    );
    assert!(more.map(|p| p.tp * p.pp > 2).unwrap_or(true));
}

#[test]
fn invalid_layouts_are_named() {
    let cfg = preset("llama3.1-8b");
    assert!(valid_tp(&cfg, 8).is_ok());
    let err = valid_tp(&cfg, 3).unwrap_err().to_string();
    assert!(err.contains("TP 3") && err.contains("8 KV heads"), "{err}");
    assert!(Plan::choose(&cfg, cluster(0, 80.0), PlanDtype::Bf16, WORK).is_err());
    assert_eq!(stage_ranges(10, 3), vec![0..4, 4..7, 7..10]);
}
