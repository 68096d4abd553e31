//! The shop-support template reproduces the training corpus exactly: its
//! SQL tools return the JSON `herd-shop` wrote into the corpus for every
//! order and product, and replaying corpus dialogues through the real agent
//! loop (scripted model side) stores the same messages and shows the model
//! the same dialog, byte for byte, as the corpus record renders to.

mod support;

use std::sync::Arc;

use herd_agent::{AgentSpec, ModelSource};
use herd_shop::{tool_definitions, Corpus, CorpusOptions, Shop, DEFAULT_SEED};
use herd_tokenizer::{ChatRecord, Role};
use serde_json::{json, Value};
use support::{shop_agent, ScriptedModel};

#[test]
fn template_definition_matches_the_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let agent = shop_agent(dir.path(), ScriptedModel::new(|_| String::new()));
    let shop = Shop::generate(DEFAULT_SEED);
    let spec = AgentSpec::load(dir.path()).unwrap();
    assert_eq!(spec.name, "shop-support");
    assert_eq!(spec.model, ModelSource::Embedded);
    assert_eq!(spec.instructions, shop.system_prompt());
    assert_eq!(agent.tools().definitions(), tool_definitions());
    let again = herd_agent::template::Template::ShopSupport.write(dir.path());
    assert!(again.unwrap_err().to_string().contains("already exists"));
}

#[test]
fn sql_tools_return_the_corpus_json_for_every_order_and_product() {
    let dir = tempfile::tempdir().unwrap();
    let agent = shop_agent(dir.path(), ScriptedModel::new(|_| String::new()));
    let shop = Shop::generate(DEFAULT_SEED);
    let mut checked = 0;
    for id in (990..=2010).chain([2500, 0]) {
        let args = json!({ "order_id": id });
        let got = agent.tools().call("lookup_order", &args);
        let want = shop.call("lookup_order", &args).unwrap().to_string();
        assert_eq!(got.text, want, "order {id}");
        checked += 1;
    }
    for product in &shop.products {
        let lower = product.name_en.to_lowercase();
        for query in [&product.name_en, &product.name_de, &product.sku, &lower] {
            let args = json!({ "product": query });
            let got = agent.tools().call("check_stock", &args);
            let want = shop.call("check_stock", &args).unwrap().to_string();
            assert_eq!(got.text, want, "product {query}");
            checked += 1;
        }
    }
    for unknown in ["Toaster", "Gartenzwerg", "x' OR '1'='1"] {
        let args = json!({ "product": unknown });
        let want = shop.call("check_stock", &args).unwrap().to_string();
        assert_eq!(agent.tools().call("check_stock", &args).text, want);
    }
    assert!(checked > 1100);
}

/// The corpus' assistant message as the text a model writes for it.
fn model_text(message: &Value) -> String {
    match message["tool_calls"].as_array() {
        Some(calls) => {
            let function = &calls[0]["function"];
            support::call(
                function["name"].as_str().unwrap(),
                function["arguments"].as_str().unwrap(),
            )
        }
        None => message["content"].as_str().unwrap().to_owned(),
    }
}

#[test]
fn replayed_corpus_dialogues_store_and_render_exactly_as_the_corpus() {
    let corpus = Corpus::generate(&CorpusOptions {
        dialogues: 60,
        ..CorpusOptions::default()
    })
    .unwrap();
    let records: Vec<Value> = corpus
        .train_jsonl()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &Value| r["messages"][0]["content"] == corpus.system_prompt())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let script: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let feed = script.clone();
    let model = ScriptedModel::new(move |_| feed.lock().unwrap().remove(0));
    let agent = shop_agent(dir.path(), model.clone());
    let (mut dialogues, mut tool_results) = (0, 0);
    for record in &records {
        let messages = record["messages"].as_array().unwrap();
        let mut conversation = None;
        for (i, message) in messages.iter().enumerate() {
            if message["role"] != "user" {
                continue;
            }
            let end = messages[i + 1..]
                .iter()
                .position(|m| m["role"] == "user")
                .map_or(messages.len(), |p| i + 1 + p);
            *script.lock().unwrap() = messages[i + 1..end]
                .iter()
                .filter(|m| m["role"] == "assistant")
                .map(model_text)
                .collect();
            let reply = agent
                .reply(
                    conversation.as_deref(),
                    message["content"].as_str().unwrap(),
                )
                .unwrap();
            tool_results += reply.steps.len();
            conversation = Some(reply.conversation_id);
        }
        let stored = agent
            .store()
            .read("shop-support", conversation.as_deref().unwrap())
            .unwrap();
        assert_eq!(stored.messages, messages[1..], "stored dialogue");
        let last_prompt = model.seen.lock().unwrap().last().unwrap().clone();
        let prefix = &messages[..messages.len() - 1];
        let want = ChatRecord::from_value(&json!({"tools": record["tools"], "messages": prefix}))
            .unwrap()
            .dialog();
        assert_eq!(last_prompt, want, "rendered dialog");
        assert_eq!(last_prompt[0].role, Role::System);
        dialogues += 1;
    }
    println!("replayed {dialogues} corpus dialogues with {tool_results} tool calls");
    assert!(dialogues >= 20 && tool_results >= 10);
}
