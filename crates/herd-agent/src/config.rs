//! `agent.toml`: the serde mirror of the file, then the resolved,
//! validated [`AgentSpec`] (paths made absolute, limits checked, every
//! tool's schema compiled) that the rest of the crate uses.
//!
//! ```toml
//! name = "shop-support"
//! model = "embedded"            # or a model directory / GGUF file, relative to this file
//! instructions = "You are ..."  # the system prompt
//!
//! [limits]
//! max_steps = 4                 # tool calls per user message
//! max_tokens = 256              # tokens per model reply
//!
//! [[tools]]
//! kind = "sql"                  # sql | http | calculator | datetime
//! name = "lookup_order"
//! description = "..."
//! parameters = { type = "object", properties = { order_id = { type = "integer" } }, required = ["order_id"] }
//! database = "shop.db"
//! query = "SELECT ... WHERE id = :order_id"
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::AgentError;

/// The file name of an agent definition inside its directory.
pub const AGENT_FILE: &str = "agent.toml";

/// `agent.toml` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    /// The agent's name: the `model` clients ask for.
    pub name: String,
    /// `"embedded"` or a path.
    #[serde(default = "embedded")]
    pub model: String,
    /// The system prompt.
    pub instructions: String,
    /// Step and token limits.
    #[serde(default)]
    pub limits: Limits,
    /// Optional guard model screening input and output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<GuardFile>,
    /// The tools, in the order the prompt lists them.
    #[serde(default)]
    pub tools: Vec<ToolFile>,
}

fn embedded() -> String {
    EMBEDDED.to_owned()
}

/// The `model` value that means the binary's embedded model.
pub const EMBEDDED: &str = "embedded";

/// Bounds on one user message's processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Tool calls the model may make before it must answer.
    pub max_steps: usize,
    /// Tokens per model reply.
    pub max_tokens: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_steps: 4,
            max_tokens: 256,
        }
    }
}

/// `[guard]`: a Llama Guard 3 model that screens messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardFile {
    /// The guard model (a path; it is not the agent's model).
    pub model: String,
    /// Category codes to check (`S1`..`S14`); default all.
    #[serde(default)]
    pub categories: Vec<String>,
}

/// One `[[tools]]` entry as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ToolFile {
    /// One declared read-only query on a SQLite database.
    Sql {
        /// Function name.
        name: String,
        /// What it does, for the model.
        description: String,
        /// JSON schema of the arguments.
        parameters: Value,
        /// The database file (relative to the agent's directory).
        database: PathBuf,
        /// One `SELECT` with `:name` parameters.
        query: String,
        /// `one`: the first row as an object; `all`: `{"rows": [...]}`.
        #[serde(default)]
        rows: RowMode,
        /// The `error` text when `rows = "one"` finds nothing; `{arg}` is
        /// replaced by the argument's JSON.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        not_found: Option<String>,
        /// Columns whose text is JSON (nested aggregates, booleans).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        json_columns: Vec<String>,
        /// Leave NULL columns out of the result instead of writing `null`.
        #[serde(default)]
        omit_nulls: bool,
    },
    /// A JSON POST to an allow-listed URL.
    Http {
        /// Function name.
        name: String,
        /// What it does, for the model.
        description: String,
        /// JSON schema of the arguments.
        parameters: Value,
        /// The allow-listed base URL (`http://host[:port]/path`).
        url: String,
        /// An argument holding a path appended to `url` (it must stay under it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path_argument: Option<String>,
        /// Hosts allowed to resolve to loopback, private or link-local addresses.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        allow_private: Vec<String>,
        /// Seconds before the call is abandoned.
        #[serde(default = "default_timeout")]
        timeout_seconds: u64,
    },
    /// Arithmetic on numbers: `+ - * / ^ ( )`.
    Calculator {
        /// Function name (default `calculator`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// The current date and time (UTC).
    Datetime {
        /// Function name (default `current_datetime`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
}

fn default_timeout() -> u64 {
    10
}

/// How a SQL tool returns rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowMode {
    /// The first row as an object, or `{"error": not_found}`.
    #[default]
    One,
    /// Up to 50 rows as `{"rows": [...]}`.
    All,
}

/// Where an agent's model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// The model embedded in the `herd` binary.
    Embedded,
    /// A model directory or GGUF file.
    Path(PathBuf),
}

/// A validated agent definition; paths are absolute.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSpec {
    /// The agent's name.
    pub name: String,
    /// Its model.
    pub model: ModelSource,
    /// The system prompt.
    pub instructions: String,
    /// Step and token limits.
    pub limits: Limits,
    /// The guard model, if any.
    pub guard: Option<GuardFile>,
    /// The tools as written, paths resolved.
    pub tools: Vec<ToolFile>,
    /// The directory the definition came from.
    pub dir: PathBuf,
}

impl AgentSpec {
    /// Reads `DIR/agent.toml`.
    pub fn load(dir: &Path) -> Result<AgentSpec, AgentError> {
        let path = dir.join(AGENT_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| AgentError::Io {
            path: path.clone(),
            source,
        })?;
        let file: AgentFile = toml::from_str(&text).map_err(|e| AgentError::Toml {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let dir = std::path::absolute(dir).map_err(|source| AgentError::Io {
            path: dir.to_owned(),
            source,
        })?;
        AgentSpec::resolve(file, &dir)
    }

    /// Checks a parsed file and resolves its paths against `dir`.
    pub fn resolve(file: AgentFile, dir: &Path) -> Result<AgentSpec, AgentError> {
        let name = file.name.trim().to_owned();
        if name.is_empty() || name.chars().any(|c| c.is_control() || c == '/') {
            return Err(AgentError::definition(
                &file.name,
                "name must be non-empty, without '/' or control characters",
            ));
        }
        if file.limits.max_steps == 0 || file.limits.max_tokens == 0 {
            return Err(AgentError::definition(
                &name,
                "limits.max_steps and limits.max_tokens must be at least 1",
            ));
        }
        let model = match file.model.as_str() {
            EMBEDDED => ModelSource::Embedded,
            path => ModelSource::Path(dir.join(path)),
        };
        let tools = file
            .tools
            .into_iter()
            .map(|tool| match tool {
                ToolFile::Sql {
                    name,
                    description,
                    parameters,
                    database,
                    query,
                    rows,
                    not_found,
                    json_columns,
                    omit_nulls,
                } => ToolFile::Sql {
                    name,
                    description,
                    parameters,
                    database: dir.join(database),
                    query,
                    rows,
                    not_found,
                    json_columns,
                    omit_nulls,
                },
                other => other,
            })
            .collect();
        Ok(AgentSpec {
            name,
            model,
            instructions: file.instructions,
            limits: file.limits,
            guard: file.guard,
            tools,
            dir: dir.to_owned(),
        })
    }
}
