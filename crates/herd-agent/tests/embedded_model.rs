//! End to end with the embedded teacher (models/teacher) on herd's engine:
//! "where is my order 1042?" in English and German must give a valid
//! `lookup_order` call with 1042, the database row, and an answer that
//! contains the order's real status (as the corpus words it in that
//! language). Nothing here is scripted.

mod support;

use std::path::Path;
use std::sync::Arc;

use herd_agent::{EngineModel, StepOutcome};
use herd_engine::{EngineConfig, EngineHandle};
use herd_model::Checkpoint;
use herd_shop::{OrderStatus, Shop, DEFAULT_SEED};
use herd_tokenizer::Tokenizer;
use serde_json::json;

/// How the corpus names each status in English and German answers
/// (`herd-shop`'s phrasebook keywords).
fn status_word(status: OrderStatus, german: bool) -> &'static str {
    match (status, german) {
        (OrderStatus::Processing, false) => "processing",
        (OrderStatus::Shipped, false) => "shipped",
        (OrderStatus::Delivered, false) => "delivered",
        (OrderStatus::Cancelled, false) => "cancelled",
        (OrderStatus::Returned, false) => "returned",
        (OrderStatus::Processing, true) => "in Bearbeitung",
        (OrderStatus::Shipped, true) => "versandt",
        (OrderStatus::Delivered, true) => "zugestellt",
        (OrderStatus::Cancelled, true) => "storniert",
        (OrderStatus::Returned, true) => "zurückgeschickt",
    }
}

pub fn teacher_model() -> EngineModel {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/teacher");
    let tokenizer = Tokenizer::from_dir(&dir).expect("teacher tokenizer");
    let model = Checkpoint::open(&dir).unwrap().into_model().unwrap();
    let engine = EngineHandle::start(
        Arc::new(model),
        EngineConfig {
            max_num_seqs: 8,
            kv_cache_bytes: 64 << 20,
            block_size: 16,
            max_batch_tokens: 512,
            prefix_caching: true,
        },
    )
    .unwrap();
    let stops = tokenizer.stop_ids();
    EngineModel::new(engine, Arc::new(tokenizer), stops)
}

#[test]
fn where_is_my_order_1042_in_english_and_german() {
    let dir = tempfile::tempdir().unwrap();
    let agent = support::shop_agent(dir.path(), Arc::new(teacher_model()));
    let order = Shop::generate(DEFAULT_SEED).order(1042).unwrap().clone();
    let mut failures = Vec::new();
    for (question, german) in [
        ("where is my order 1042?", false),
        ("Wo ist meine Bestellung 1042?", true),
    ] {
        let reply = agent.reply(None, question).unwrap();
        println!("Q: {question}");
        for step in &reply.steps {
            println!(
                "   step {}({}) -> {:?} {}",
                step.tool, step.arguments, step.outcome, step.result
            );
        }
        println!("A: {}", reply.answer);
        let word = status_word(order.status, german);
        let called = reply.steps.first().is_some_and(|s| {
            s.tool == "lookup_order"
                && s.arguments == json!({"order_id": 1042})
                && s.outcome == StepOutcome::Ok
        });
        if !called {
            failures.push(format!(
                "{question}: no valid lookup_order(1042) call: {:?}",
                reply.steps
            ));
        } else if !reply.answer.contains(word) {
            failures.push(format!(
                "{question}: answer {:?} lacks the status {word:?}",
                reply.answer
            ));
        }
        // The call and the answer: the prompt is read twice, so the usage
        // reads more than it writes, and writes something.
        let usage = reply.usage;
        if !(usage.prompt_tokens > 2 * usage.completion_tokens && usage.completion_tokens > 0) {
            failures.push(format!("{question}: implausible usage {usage:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
