//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong outside a tool call. A failing *tool call*
/// is not an error: it goes back to the model as the call's result (see
/// [`crate::StepOutcome`]).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `agent.toml` is not valid TOML or has a wrong field.
    #[error("{path}: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// The agent definition parsed but is not usable.
    #[error("agent {agent:?}: {problem}")]
    Definition {
        /// The agent's name (or file).
        agent: String,
        /// What is wrong.
        problem: String,
    },
    /// A SQLite operation on the conversation store or a template database failed.
    #[error("{what}: {source}")]
    Sqlite {
        /// What was being done.
        what: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The conversation store is unusable (a stored row does not parse, or
    /// a thread panicked while holding it).
    #[error("conversation store: {0}")]
    Store(String),
    /// The conversation does not exist (or belongs to another agent).
    #[error("no conversation {0:?}")]
    NoConversation(String),
    /// A conversation id that is not a short printable token.
    #[error("invalid conversation id {0:?}: use 1-64 letters, digits, '-' or '_'")]
    BadConversationId(String),
    /// The model failed to produce a reply.
    #[error("model: {0}")]
    Model(String),
    /// The dialog leaves the model no room to answer. The agent loop
    /// answers it by showing the model fewer past exchanges.
    #[error("model: the conversation ({tokens} tokens) fills the model's context of {context}")]
    ContextFull {
        /// Tokens in the dialog as the model would see it.
        tokens: usize,
        /// The model's context length.
        context: usize,
    },
    /// The guard model's reply is neither `safe` nor `unsafe\nS..`.
    #[error("guard model: unreadable verdict {0:?}")]
    GuardVerdict(String),
}

impl AgentError {
    /// An SQLite error with what was being done.
    pub(crate) fn sqlite(what: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> AgentError {
        let what = what.into();
        move |source| AgentError::Sqlite { what, source }
    }

    /// A problem with the definition of `agent`.
    pub(crate) fn definition(agent: &str, problem: impl Into<String>) -> AgentError {
        AgentError::Definition {
            agent: agent.to_owned(),
            problem: problem.into(),
        }
    }
}
