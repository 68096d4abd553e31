//! Agents for a business: a model that talks to customers, calls the
//! business's own tools, remembers conversations, and cannot be talked into
//! doing what it was not allowed to do.
//!
//! ```text
//! agent.toml ─▶ AgentSpec ─▶ Agent { ToolBox, ChatModel, ConversationStore }
//!                              │ reply(conversation, text)
//!                              ▼
//!        model ⇄ tools (SQL on SQLite, HTTP, calculator, date) ─▶ answer + steps
//! ```
//!
//! # Design decisions
//!
//! **One file defines an agent.** `agent.toml` names the model, the
//! instructions (system prompt), the tools and the limits ([`config`]).
//! `herd agent new --template shop-support` writes a working one for the
//! embedded shop ([`template`]).
//!
//! **The prompt is the training format.** Conversations are stored as
//! OpenAI chat messages and rendered through `herd-tokenizer`'s
//! `ChatRecord` → `ToolPrompt` → `ChatFormat`, the path `herd train` takes,
//! and the shop template's tools return byte for byte the JSON
//! `herd-shop` wrote into the corpus, so the embedded model sees exactly
//! the text it learned from.
//!
//! **Guard rails are structural.** Tools are a closed set fixed at load;
//! a call is validated against its JSON schema (with `herd-structured`'s
//! compiled grammar, the one constrained decoding uses) before it runs;
//! SQL tools run one declared read-only query with bound parameters on a
//! database opened read-only; HTTP tools reach one base URL, never a
//! private address unless listed, never through a redirect; tool output is
//! data in the `ipython` role. Every refusal, error and limit goes back to
//! the model as the call's result and is recorded as a [`Step`]; nothing a
//! model writes can crash the agent.
//!
//! **The model is a trait.** [`ChatModel`] is all the loop needs;
//! [`EngineModel`] runs a real model on herd's continuous-batching engine,
//! so concurrent conversations share one batched model.

#![deny(missing_docs)]

mod agent;
pub mod config;
mod error;
pub mod guard;
mod model;
mod store;
pub mod template;
mod tools;

pub use agent::{Agent, Finish, Reply, Step, Usage};
pub use config::{AgentSpec, Limits, ModelSource};
pub use error::AgentError;
pub use guard::{Guard, Verdict};
pub use model::{ChatModel, Completion, EngineModel};
pub use store::{check_id, Conversation, ConversationStore, ConversationSummary};
pub use tools::{evaluate_expression, StepOutcome, ToolBox, ToolResult, UrlPolicy};
