//! The agent loop: the model answers or calls a tool; calls are validated,
//! run, and their results fed back in the `ipython` role until the model
//! answers in plain text or the step limit is reached.
//!
//! ```text
//! user ─▶ [system + history + user] ─▶ model ─┬─ text ──────────────▶ answer
//!                  ▲                          └─ {"name", "parameters"} ─▶ ToolBox::call
//!                  └──────────── tool result (ipython) ◀───────────────────┘
//! ```
//!
//! The prompt is rebuilt from the stored conversation on every step, as an
//! OpenAI chat record rendered by `herd-tokenizer`'s [`ChatRecord`] — the
//! path training data takes — so the model sees its tools, calls and
//! results exactly as in the corpus it learned from. The system prompt and
//! the tool list come only from the agent's definition: text that comes
//! back from a tool is data in an `ipython` message and can neither add a
//! tool nor change the instructions (and special tokens in it stay text).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use herd_tokenizer::{parse_tool_output, ChatRecord, Message, ToolCall, ToolValue};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::AgentSpec;
use crate::error::AgentError;
use crate::guard::{Guard, Verdict};
use crate::model::ChatModel;
use crate::store::{check_id, ConversationStore};
use crate::tools::{StepOutcome, ToolBox, ToolResult};

/// One tool call of the model, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The function the model named.
    pub tool: String,
    /// The arguments it gave (for a malformed call, the raw text as a string).
    pub arguments: Value,
    /// Ok, error or refused.
    pub outcome: StepOutcome,
    /// The JSON text the model got back.
    pub result: String,
}

/// Why the loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// The model answered in plain text.
    Answered,
    /// The model kept calling tools past `limits.max_steps`.
    StepLimit,
    /// The guard model flagged the user's message or the answer.
    Blocked,
    /// Even the newest message alone (with this turn's tool results) fills
    /// the model's context; the answer asks for a new conversation.
    ContextFull,
}

/// The outcome of one user message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reply {
    /// The conversation it belongs to (new or continued).
    pub conversation_id: String,
    /// The answer shown to the user.
    pub answer: String,
    /// The tool calls made on the way, in order.
    pub steps: Vec<Step>,
    /// Why the loop stopped.
    pub finish: Finish,
    /// Tokens the agent's model read and wrote for this message, summed
    /// over the loop's model calls (a guard model's are not counted).
    pub usage: Usage,
}

/// Token counts of one reply, as the API's `usage` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Usage {
    /// Tokens read, over every model call.
    pub prompt_tokens: usize,
    /// Tokens written, over every model call.
    pub completion_tokens: usize,
}

/// A loaded agent: definition, tools, model and conversation store.
pub struct Agent {
    spec: AgentSpec,
    tools: ToolBox,
    tools_json: Vec<Value>,
    model: Arc<dyn ChatModel>,
    guard: Option<Guard>,
    store: Arc<ConversationStore>,
    /// One lock per conversation, so two requests on the same conversation
    /// take turns while different conversations run in parallel.
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("name", &self.spec.name)
            .field("tools", &self.tools.names())
            .finish()
    }
}

impl Agent {
    /// Builds the agent's tools and binds it to a model and a store.
    pub fn new(
        spec: AgentSpec,
        model: Arc<dyn ChatModel>,
        store: Arc<ConversationStore>,
    ) -> Result<Agent, AgentError> {
        let tools = ToolBox::new(&spec.name, &spec.tools)?;
        let tools_json = tools
            .definitions()
            .iter()
            .map(|t| t.to_openai_json())
            .collect();
        Ok(Agent {
            spec,
            tools,
            tools_json,
            model,
            guard: None,
            store,
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// Screens every user message and answer with `guard`.
    pub fn with_guard(mut self, guard: Guard) -> Agent {
        self.guard = Some(guard);
        self
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Its definition.
    pub fn spec(&self) -> &AgentSpec {
        &self.spec
    }

    /// Its tools.
    pub fn tools(&self) -> &ToolBox {
        &self.tools
    }

    /// Its conversation store.
    pub fn store(&self) -> &ConversationStore {
        &self.store
    }

    /// The dialog the model sees for `messages` (stored OpenAI messages,
    /// without the system prompt): instructions, tool prompt, messages.
    pub fn dialog(&self, messages: &[Value]) -> Result<Vec<Message>, AgentError> {
        let mut all = Vec::with_capacity(messages.len() + 1);
        all.push(json!({"role": "system", "content": self.spec.instructions}));
        all.extend(messages.iter().cloned());
        let record = ChatRecord::from_value(&json!({"tools": self.tools_json, "messages": all}))
            .map_err(|e| AgentError::Store(format!("stored messages do not form a dialog: {e}")))?;
        Ok(record.dialog())
    }

    /// Answers `user` in conversation `conversation` (a new one when `None`),
    /// storing the user message, every call, result and the answer.
    pub fn reply(&self, conversation: Option<&str>, user: &str) -> Result<Reply, AgentError> {
        let id = match conversation {
            Some(id) => {
                check_id(id)?;
                if !self.store.exists(&self.spec.name, id)? {
                    return Err(AgentError::NoConversation(id.to_owned()));
                }
                id.to_owned()
            }
            None => self.store.create(&self.spec.name)?,
        };
        let lock = self.conversation_lock(&id);
        let _turn = lock
            .lock()
            .map_err(|_| AgentError::Store("a conversation lock was poisoned".into()))?;
        let history = self.store.read(&self.spec.name, &id)?.messages;
        let mut turn = Turn {
            prior_calls: history.iter().filter(|m| m["role"] == "tool").count(),
            messages: vec![json!({"role": "user", "content": user})],
            steps: Vec::new(),
            usage: Usage::default(),
        };
        let (answer, finish) = match self.screen(&history, &turn.messages)? {
            Some(blocked) => (blocked, Finish::Blocked),
            None => self.run_loop(&history, &mut turn)?,
        };
        turn.messages
            .push(json!({"role": "assistant", "content": answer}));
        self.store
            .append(&self.spec.name, &id, &turn.messages, &turn.steps)?;
        Ok(Reply {
            conversation_id: id,
            answer,
            steps: turn.steps,
            finish,
            usage: turn.usage,
        })
    }

    fn conversation_lock(&self, id: &str) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(id.to_owned()).or_default().clone()
    }

    /// Model ⇄ tools until an answer or the step limit. When the dialog
    /// fills the model's context, the model is shown fewer past exchanges,
    /// oldest first out (the store keeps them all).
    fn run_loop(&self, history: &[Value], turn: &mut Turn) -> Result<(String, Finish), AgentError> {
        let limits = self.spec.limits;
        // The first stored message the model still sees.
        let mut start = 0;
        loop {
            let mut messages = history[start..].to_vec();
            messages.extend(turn.messages.iter().cloned());
            let text = match self
                .model
                .complete(&self.dialog(&messages)?, limits.max_tokens)
            {
                Ok(done) => {
                    turn.usage.prompt_tokens += done.prompt_tokens;
                    turn.usage.completion_tokens += done.completion_tokens;
                    done.text
                }
                Err(AgentError::ContextFull { .. }) if start < history.len() => {
                    start = next_exchange(history, start);
                    continue;
                }
                Err(AgentError::ContextFull { .. }) => {
                    let answer = "Sorry, this conversation has grown too long for me to \
                                  follow. Please start a new one."
                        .to_owned();
                    return Ok((answer, Finish::ContextFull));
                }
                Err(e) => return Err(e),
            };
            let calls = read_calls(&text);
            if calls.is_empty() {
                let answer = text.trim().to_owned();
                let mut new = turn.messages.clone();
                new.push(json!({"role": "assistant", "content": answer}));
                return Ok(match self.screen(history, &new)? {
                    Some(blocked) => (blocked, Finish::Blocked),
                    None => (answer, Finish::Answered),
                });
            }
            for call in calls {
                if turn.steps.len() >= limits.max_steps {
                    turn.steps.push(Step {
                        tool: call.name,
                        arguments: call.arguments,
                        outcome: StepOutcome::Refused,
                        result: ToolResult::error(
                            StepOutcome::Refused,
                            &format!("step limit of {} tool calls reached", limits.max_steps),
                        )
                        .text,
                    });
                    let answer = format!(
                        "Sorry, I could not finish this request within {} tool calls.",
                        limits.max_steps
                    );
                    return Ok((answer, Finish::StepLimit));
                }
                let result = match &call.malformed {
                    Some(problem) => ToolResult::error(StepOutcome::Refused, problem),
                    None => self.tools.call(&call.name, &call.arguments),
                };
                turn.record(call, result);
            }
        }
    }

    /// The guard's refusal of the conversation's last message, if any.
    fn screen(&self, history: &[Value], new: &[Value]) -> Result<Option<String>, AgentError> {
        let Some(guard) = &self.guard else {
            return Ok(None);
        };
        let mut messages = history.to_vec();
        messages.extend(new.iter().cloned());
        Ok(match guard.check(&messages)? {
            Verdict::Safe => None,
            Verdict::Unsafe(categories) => Some(guard.refusal(&categories)),
        })
    }
}

/// Where the exchange after the one starting at `start` begins: its user
/// message, or the end of `history`.
fn next_exchange(history: &[Value], start: usize) -> usize {
    history
        .iter()
        .enumerate()
        .skip(start + 1)
        .find(|(_, m)| m["role"] == "user")
        .map_or(history.len(), |(i, _)| i)
}

/// What one user message adds to the conversation.
struct Turn {
    /// Tool results already in the conversation (numbers call ids).
    prior_calls: usize,
    messages: Vec<Value>,
    steps: Vec<Step>,
    usage: Usage,
}

impl Turn {
    /// Stores a call and its result as the corpus does: an assistant
    /// message with one `tool_calls` entry, then a `tool` message.
    fn record(&mut self, call: ReadCall, result: ToolResult) {
        let id = format!("call_{}", self.prior_calls + self.steps.len());
        match &call.malformed {
            Some(_) => self
                .messages
                .push(json!({"role": "assistant", "content": call.text})),
            None => self.messages.push(json!({
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": id, "type": "function",
                    "function": {"name": call.name, "arguments": call.text}}],
            })),
        }
        self.messages
            .push(json!({"role": "tool", "tool_call_id": id, "content": result.text}));
        self.steps.push(Step {
            tool: call.name,
            arguments: call.arguments,
            outcome: result.outcome,
            result: result.text,
        });
    }
}

/// A call read from the model's output.
struct ReadCall {
    name: String,
    arguments: Value,
    /// The arguments as the model wrote them (or the whole raw text).
    text: String,
    /// Why the text is not a usable call, if it is not.
    malformed: Option<String>,
}

/// The calls in a reply: Llama 3.1 calls, or one malformed call when the
/// reply starts like a call but does not parse; empty for a plain answer.
fn read_calls(text: &str) -> Vec<ReadCall> {
    let parsed = parse_tool_output(text);
    if parsed.calls.is_empty() {
        let trimmed = text.trim_start();
        if trimmed.starts_with('{') || trimmed.starts_with("[{") {
            return vec![ReadCall {
                name: String::new(),
                arguments: Value::String(text.to_owned()),
                text: text.to_owned(),
                malformed: Some(
                    "malformed tool call: write {\"name\": function name, \"parameters\": {...}}"
                        .into(),
                ),
            }];
        }
        return Vec::new();
    }
    parsed
        .calls
        .into_iter()
        .map(|call| match call {
            ToolCall::Custom { name, arguments } => {
                let text = ToolValue::Map(arguments).to_json();
                let arguments = serde_json::from_str(&text).unwrap_or(Value::Null);
                ReadCall {
                    name,
                    arguments,
                    text,
                    malformed: None,
                }
            }
            other => {
                let (name, arguments) = builtin_call(&other);
                ReadCall {
                    text: arguments.to_string(),
                    malformed: Some(format!("{name} is not a tool of this agent")),
                    name,
                    arguments,
                }
            }
        })
        .collect()
}

/// A built-in (Meta) tool call as a name and arguments, for the record.
fn builtin_call(call: &ToolCall) -> (String, Value) {
    match call {
        ToolCall::CodeInterpreter { code } => ("code_interpreter".into(), json!({"code": code})),
        ToolCall::BraveSearch { query } => ("brave_search".into(), json!({"query": query})),
        ToolCall::WolframAlpha { query } => ("wolfram_alpha".into(), json!({"query": query})),
        ToolCall::Photogen { query } => ("photogen".into(), json!({"query": query})),
        ToolCall::Custom { name, .. } => (name.clone(), Value::Null),
    }
}
