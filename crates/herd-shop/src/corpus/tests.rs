//! The corpus keeps its promises: splits are disjoint where they must be,
//! every tool result is what the shop returns, and every expected answer
//! can be copied from the dialogue's own context.

use std::collections::HashSet;

use super::*;
use crate::expected::{Expected, Reply};
use crate::phrases::AnswerKind;

fn small() -> Corpus {
    let options = CorpusOptions {
        dialogues: 600,
        ..CorpusOptions::default()
    };
    Corpus::generate(&options).expect("generate")
}

fn context_text(messages: &[ChatMessage]) -> String {
    messages
        .iter()
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

fn keywords(language: Language) -> Vec<&'static str> {
    let book = language.phrasebook();
    [
        AnswerKind::Processing,
        AnswerKind::Shipped,
        AnswerKind::Delivered,
        AnswerKind::Cancelled,
        AnswerKind::Returned,
        AnswerKind::OrderUnknown,
        AnswerKind::OutOfStock,
        AnswerKind::ProductUnknown,
        AnswerKind::ClosedOnDay,
        AnswerKind::Refusal,
    ]
    .iter()
    .filter_map(|k| k.keyword(book))
    .collect()
}

#[test]
fn train_and_valid_never_see_held_out_phrasings_or_orders() {
    let corpus = small();
    for dialogue in corpus.train.iter().chain(&corpus.valid) {
        for turn in &dialogue.turns {
            assert!(!turn.held_out_template, "{}", turn.template);
            assert!(!turn.held_out_order);
            if let Expected::ToolCall { arguments, .. } = &turn.expected {
                let id = arguments["order_id"].as_u64().unwrap_or_default() as u32;
                if corpus.shop.order(id).is_some() {
                    assert!(!is_held_out_order(id), "order {id} leaked into training");
                }
            }
        }
    }
    let stats = corpus.stats();
    assert!(
        stats.test_held_out_phrasing > stats.test_cases / 4,
        "{stats:?}"
    );
    assert!(stats.test_held_out_order > 20, "{stats:?}");
    assert!(stats.test_tool_calls > stats.test_cases / 5, "{stats:?}");
    let seen: HashSet<&str> = corpus.train.iter().filter_map(first_user_text).collect();
    let repeated = corpus
        .test
        .iter()
        .filter_map(first_user_text)
        .filter(|t| seen.contains(t))
        .count();
    assert_eq!(repeated, 0, "test questions copied from training");
}

#[test]
fn tool_results_are_the_shops_and_answers_copy_from_context() {
    let corpus = small();
    let mut checked = 0;
    for dialogue in corpus.train.iter().chain(&corpus.test) {
        let messages = &dialogue.messages;
        for (i, message) in messages.iter().enumerate() {
            let Some(calls) = &message.tool_calls else {
                continue;
            };
            let call = &calls[0].function;
            let arguments: Value = serde_json::from_str(&call.arguments).expect("arguments JSON");
            let result = corpus.shop.call(call.name, &arguments).expect("valid call");
            assert_eq!(messages[i + 1].role, "tool");
            assert_eq!(messages[i + 1].content, result.to_string());
        }
        let words = keywords(dialogue.language);
        for turn in &dialogue.turns {
            let context = context_text(&messages[..turn.message]);
            let reference = &messages[turn.message];
            match &turn.expected {
                Expected::AnswerContains(parts) => {
                    assert!(turn.expected.accepts(Reply::Answer(&reference.content)));
                    for part in parts {
                        let copyable = context.contains(part.as_str())
                            || context.contains(&part.replace(',', "."))
                            || words.contains(&part.as_str());
                        assert!(
                            copyable,
                            "{part:?} of {:?} is not in its context",
                            reference.content
                        );
                        checked += 1;
                    }
                }
                Expected::ToolCall { name, arguments } => {
                    let call = &reference.tool_calls.as_ref().expect("a call")[0].function;
                    let parsed: Value = serde_json::from_str(&call.arguments).expect("JSON");
                    assert!(turn.expected.accepts(Reply::ToolCall {
                        name: call.name,
                        arguments: &parsed
                    }));
                    assert_eq!(name, call.name);
                    // The argument is copied from the customer's words.
                    let value = match &arguments["product"] {
                        Value::String(product) => product.clone(),
                        _ => arguments["order_id"].to_string(),
                    };
                    assert!(context.contains(&value), "{value} not in {context:?}");
                }
            }
        }
    }
    assert!(checked > 1000, "only {checked} expected strings checked");
}

#[test]
fn every_record_is_a_valid_chat_record_and_every_test_case_ends_before_its_answer() {
    let corpus = small();
    for line in corpus
        .train_jsonl()
        .lines()
        .chain(corpus.valid_jsonl().lines())
    {
        let record = herd_tokenizer::ChatRecord::from_json(line).expect("chat record");
        assert_eq!(record.tools.len(), 2);
        assert_eq!(record.messages[0].role, herd_tokenizer::Role::System);
    }
    for line in corpus.test_jsonl().lines() {
        let value: Value = serde_json::from_str(line).expect("JSON");
        let record = herd_tokenizer::ChatRecord::from_value(&value).expect("chat record");
        let last = record.messages.last().expect("messages").role;
        assert!(matches!(
            last,
            herd_tokenizer::Role::User | herd_tokenizer::Role::Ipython
        ));
        let expected: Expected =
            serde_json::from_value(value["expected"].clone()).expect("expected");
        let reference = &value["reference"];
        assert_eq!(reference["role"], "assistant");
        assert_eq!(
            matches!(expected, Expected::ToolCall { .. }),
            reference.get("tool_calls").is_some()
        );
        assert_eq!(value["messages"][0]["content"], corpus.system_prompt());
    }
}
