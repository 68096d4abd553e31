//! Shared test helpers: a scripted model (the model side only; tools,
//! databases, HTTP and the store in these tests are real) and a shop agent.
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use herd_agent::template::Template;
use herd_agent::{Agent, AgentError, AgentSpec, ChatModel, Completion, ConversationStore};
use herd_tokenizer::{Message, Role};

/// A model whose replies are computed from the dialog by a closure, and
/// which remembers every dialog it was shown.
/// How a scripted model answers a dialog.
type Script = Box<dyn Fn(&[Message]) -> String + Send + Sync>;

pub struct ScriptedModel {
    reply: Script,
    /// The most messages a dialog may have, a stand-in for a context length.
    context: usize,
    pub seen: Mutex<Vec<Vec<Message>>>,
}

impl ScriptedModel {
    pub fn new(reply: impl Fn(&[Message]) -> String + Send + Sync + 'static) -> Arc<Self> {
        ScriptedModel::with_context(usize::MAX, reply)
    }

    /// A model whose "context" holds `messages` dialog messages: a longer
    /// dialog fails with `AgentError::ContextFull`, as the engine's does.
    pub fn with_context(
        messages: usize,
        reply: impl Fn(&[Message]) -> String + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(ScriptedModel {
            reply: Box::new(reply),
            context: messages,
            seen: Mutex::new(Vec::new()),
        })
    }
}

impl ChatModel for ScriptedModel {
    /// Counts a token per dialog message read and per reply written.
    fn complete(&self, dialog: &[Message], _max_tokens: usize) -> Result<Completion, AgentError> {
        if dialog.len() > self.context {
            return Err(AgentError::ContextFull {
                tokens: dialog.len(),
                context: self.context,
            });
        }
        self.seen.lock().unwrap().push(dialog.to_vec());
        Ok(Completion {
            text: (self.reply)(dialog),
            prompt_tokens: dialog.len(),
            completion_tokens: 1,
        })
    }
}

/// The last message of a dialog, if it is a tool result.
pub fn last_tool_result(dialog: &[Message]) -> Option<&str> {
    dialog
        .last()
        .filter(|m| m.role == Role::Ipython)
        .map(|m| m.content.as_str())
}

/// A Llama 3.1 JSON tool call as the model writes it.
pub fn call(name: &str, parameters: &str) -> String {
    format!("{{\"type\": \"function\", \"name\": \"{name}\", \"parameters\": {parameters}}}")
}

/// Writes the shop-support template into `dir` and loads it with `model`.
pub fn shop_agent(dir: &Path, model: Arc<dyn ChatModel>) -> Agent {
    Template::ShopSupport.write(dir).expect("template");
    let spec = AgentSpec::load(dir).expect("spec");
    let store = Arc::new(ConversationStore::open(&dir.join("conversations.db")).expect("store"));
    Agent::new(spec, model, store).expect("agent")
}
