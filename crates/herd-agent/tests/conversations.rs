//! The conversation store under the agent: history survives a restart (a
//! new store and agent on the same file), conversations are listed, read
//! and deleted, each agent sees only its own, and 20 conversations run
//! concurrently without mixing. The model side is scripted; the tools and
//! the SQLite files are real.

mod support;

use std::sync::Arc;

use herd_agent::{Agent, AgentError, AgentSpec, ConversationStore, Finish};
use herd_tokenizer::{Message, Role};
use serde_json::Value;
use support::{call, last_tool_result, shop_agent, ScriptedModel};

/// Looks up the last number in the latest user message, then answers
/// with the status the tool returned and every user message it was shown.
fn echo_model() -> Arc<ScriptedModel> {
    echo_model_with_context(usize::MAX)
}

/// [`echo_model`] with a context of `messages` dialog messages.
fn echo_model_with_context(messages: usize) -> Arc<ScriptedModel> {
    ScriptedModel::with_context(messages, |dialog: &[Message]| {
        if let Some(result) = last_tool_result(dialog) {
            let value: Value = serde_json::from_str(result).unwrap();
            let users: Vec<&str> = dialog
                .iter()
                .filter(|m| m.role == Role::User)
                .map(|m| m.content.rsplit("\n\n").next().unwrap())
                .collect();
            return format!(
                "order {} is {} | seen: {}",
                value["order_id"],
                value["status"].as_str().unwrap(),
                users.join(" / ")
            );
        }
        let user = &dialog
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .unwrap()
            .content;
        let number: String = user
            .rsplit("\n\n")
            .next()
            .unwrap()
            .split_whitespace()
            .rfind(|w| w.parse::<u32>().is_ok())
            .unwrap_or("0")
            .to_owned();
        call("lookup_order", &format!("{{\"order_id\": {number}}}"))
    })
}

/// A conversation past the model's context: the model is shown the newest
/// exchanges only, the store keeps every message, and a turn that alone
/// does not fit ends with `Finish::ContextFull` and an apology, not an error.
#[test]
fn a_conversation_past_the_context_shows_the_model_its_newest_exchanges() {
    let dir = tempfile::tempdir().unwrap();
    // System + one stored exchange + the new question fit (6 messages);
    // the new question's tool call and result (8) do not.
    let agent = shop_agent(dir.path(), echo_model_with_context(6));
    let first = agent.reply(None, "where is order 1042").unwrap();
    let id = first.conversation_id;
    let second = agent.reply(Some(&id), "and order 1043").unwrap();
    assert_eq!(second.finish, Finish::Answered);
    assert!(
        second.answer.starts_with("order 1043 is ")
            && second.answer.ends_with("seen: and order 1043"),
        "the oldest exchange should be out of view: {}",
        second.answer
    );
    let stored = agent.store().read("shop-support", &id).unwrap();
    assert_eq!(
        stored.messages.len(),
        8,
        "nothing is dropped from the store"
    );
    // Usage counts the calls that ran: 6 + 4 messages read (the refused
    // 8-message dialog is not), one reply each.
    assert_eq!(
        (second.usage.prompt_tokens, second.usage.completion_tokens),
        (10, 2)
    );
    // A model that cannot even hold one question, its call and the result.
    let dir = tempfile::tempdir().unwrap();
    let agent = shop_agent(dir.path(), echo_model_with_context(3));
    let reply = agent.reply(None, "where is order 1042").unwrap();
    assert_eq!(reply.finish, Finish::ContextFull);
    assert!(reply.answer.contains("start a new one"), "{}", reply.answer);
    let stored = agent
        .store()
        .read("shop-support", &reply.conversation_id)
        .unwrap();
    assert_eq!(stored.messages.len(), 4, "question, call, result, apology");
}

#[test]
fn history_survives_restart_and_conversations_are_managed() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let agent = shop_agent(dir.path(), echo_model());
        let reply = agent.reply(None, "where is order 1042").unwrap();
        assert!(
            reply.answer.starts_with("order 1042 is "),
            "{}",
            reply.answer
        );
        reply.conversation_id
    };
    // A new process: a fresh store and agent over the same files.
    let spec = AgentSpec::load(dir.path()).unwrap();
    let store = Arc::new(ConversationStore::open(&dir.path().join("conversations.db")).unwrap());
    let agent = Agent::new(spec, echo_model(), store.clone()).unwrap();
    let reply = agent.reply(Some(&id), "and order 1043").unwrap();
    assert!(
        reply
            .answer
            .ends_with("seen: where is order 1042 / and order 1043"),
        "{}",
        reply.answer
    );
    let conversation = store.read("shop-support", &id).unwrap();
    assert_eq!(conversation.messages.len(), 8);
    assert_eq!(conversation.steps.len(), 2);
    let other = agent.reply(None, "order 1500").unwrap();
    let list = store.list("shop-support").unwrap();
    assert_eq!(list.len(), 2);
    assert!(list
        .iter()
        .any(|c| c.id == id && c.title == "where is order 1042" && c.messages == 8));
    // Each agent sees only its own conversations.
    assert!(matches!(
        store.read("other-agent", &id),
        Err(AgentError::NoConversation(_))
    ));
    assert!(store.list("other-agent").unwrap().is_empty());
    assert!(!store.delete("other-agent", &id).unwrap());
    assert!(store.delete("shop-support", &id).unwrap());
    assert!(matches!(
        agent.reply(Some(&id), "hello?"),
        Err(AgentError::NoConversation(_))
    ));
    assert!(matches!(
        agent.reply(Some("bad id; --"), "x"),
        Err(AgentError::BadConversationId(_))
    ));
    assert_eq!(
        store.list("shop-support").unwrap()[0].id,
        other.conversation_id
    );
}

#[test]
fn twenty_concurrent_conversations_keep_their_own_histories() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Arc::new(shop_agent(dir.path(), echo_model()));
    let threads: Vec<_> = (0..20u32)
        .map(|i| {
            let agent = agent.clone();
            std::thread::spawn(move || {
                let first = agent
                    .reply(None, &format!("customer {i} asks about {}", 1000 + i))
                    .unwrap();
                let second = agent
                    .reply(
                        Some(&first.conversation_id),
                        &format!("customer {i} also {}", 1100 + i),
                    )
                    .unwrap();
                (i, first.conversation_id, second.answer)
            })
        })
        .collect();
    for thread in threads {
        let (i, id, answer) = thread.join().unwrap();
        let want = format!(
            "order {} is {} | seen: customer {i} asks about {} / customer {i} also {}",
            1100 + i,
            answer.split(' ').nth(3).unwrap(),
            1000 + i,
            1100 + i
        );
        assert_eq!(answer, want);
        let stored = agent.store().read("shop-support", &id).unwrap();
        let users: Vec<&str> = stored
            .messages
            .iter()
            .filter(|m| m["role"] == "user")
            .map(|m| m["content"].as_str().unwrap())
            .collect();
        assert_eq!(
            users,
            [
                format!("customer {i} asks about {}", 1000 + i),
                format!("customer {i} also {}", 1100 + i)
            ]
        );
        let orders: Vec<i64> = stored
            .steps
            .iter()
            .map(|s| s.arguments["order_id"].as_i64().unwrap())
            .collect();
        assert_eq!(orders, [i64::from(1000 + i), i64::from(1100 + i)]);
    }
    assert_eq!(agent.store().list("shop-support").unwrap().len(), 20);
}
