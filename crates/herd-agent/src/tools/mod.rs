//! The agent's tools: a closed set fixed when the agent is loaded. Each
//! tool has a definition (name, description, JSON schema of its arguments)
//! that is rendered into the Llama 3.1 tool prompt, and an executor.
//!
//! [`ToolBox::call`] is the only way a model's call reaches a tool, and it
//! never fails: an unknown name, arguments the schema rejects, a refused
//! address or a failing database all come back as a [`ToolResult`] whose
//! text is `{"error": "..."}`, which the loop hands to the model as the
//! call's result. Nothing a tool returns is ever parsed for instructions.

mod builtin;
mod http;
mod sql;

use herd_structured::{JsonSpec, JsonValidator};
use herd_tokenizer::ToolDefinition;
use serde_json::{json, Value};

use crate::config::ToolFile;
use crate::error::AgentError;

pub use builtin::evaluate_expression;
use http::HttpTool;
pub use http::UrlPolicy;
use sql::SqlTool;

/// What happened to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepOutcome {
    /// The tool ran and returned data (which may itself say "not found").
    Ok,
    /// The tool ran and failed (database error, HTTP error, timeout).
    Error,
    /// The call was not run: unknown tool, invalid arguments, a forbidden
    /// address, or the step limit.
    Refused,
}

/// A call's result as the model will read it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    /// Ok, error or refused.
    pub outcome: StepOutcome,
    /// Compact JSON.
    pub text: String,
}

impl ToolResult {
    fn ok(value: &Value) -> ToolResult {
        ToolResult {
            outcome: StepOutcome::Ok,
            text: value.to_string(),
        }
    }

    /// `{"error": message}` with the given outcome.
    pub fn error(outcome: StepOutcome, message: &str) -> ToolResult {
        ToolResult {
            outcome,
            text: json!({ "error": message }).to_string(),
        }
    }
}

/// How one tool runs.
#[derive(Debug)]
enum Executor {
    Sql(SqlTool),
    Http(HttpTool),
    Calculator,
    Datetime,
}

/// One tool: its definition, its compiled argument schema and its executor.
#[derive(Debug)]
struct Tool {
    definition: ToolDefinition,
    validator: JsonValidator,
    executor: Executor,
}

/// The fixed set of an agent's tools.
#[derive(Debug)]
pub struct ToolBox {
    tools: Vec<Tool>,
}

impl ToolBox {
    /// Builds every tool of `agent` (opening databases, checking queries
    /// and URLs, compiling schemas); fails on the first bad one.
    pub fn new(agent: &str, files: &[ToolFile]) -> Result<ToolBox, AgentError> {
        let mut tools: Vec<Tool> = Vec::new();
        for file in files {
            let (definition, executor) = build(agent, file)?;
            if tools.iter().any(|t| t.definition.name == definition.name) {
                return Err(AgentError::definition(
                    agent,
                    format!("two tools are named {:?}", definition.name),
                ));
            }
            let validator = JsonValidator::new(&JsonSpec::Schema(definition.parameters.clone()))
                .map_err(|e| {
                    AgentError::definition(
                        agent,
                        format!("tool {:?}: parameters: {e}", definition.name),
                    )
                })?;
            if definition.parameters.get("type") != Some(&json!("object")) {
                return Err(AgentError::definition(
                    agent,
                    format!(
                        "tool {:?}: parameters must be an object schema",
                        definition.name
                    ),
                ));
            }
            tools.push(Tool {
                definition,
                validator,
                executor,
            });
        }
        Ok(ToolBox { tools })
    }

    /// The definitions, in prompt order.
    pub fn definitions(&self) -> Vec<ToolDefinition> {
        self.tools.iter().map(|t| t.definition.clone()).collect()
    }

    /// The tool names, for messages.
    pub fn names(&self) -> Vec<&str> {
        self.tools
            .iter()
            .map(|t| t.definition.name.as_str())
            .collect()
    }

    /// Runs a call of `name` with `arguments`; never fails (see the module docs).
    pub fn call(&self, name: &str, arguments: &Value) -> ToolResult {
        let Some(tool) = self.tools.iter().find(|t| t.definition.name == name) else {
            return ToolResult::error(
                StepOutcome::Refused,
                &format!(
                    "unknown tool {name:?}; the tools are: {}",
                    self.names().join(", ")
                ),
            );
        };
        if !tool.validator.accepts(arguments) {
            return ToolResult::error(
                StepOutcome::Refused,
                &format!(
                    "arguments {arguments} do not match the parameters of {name}: {}",
                    tool.definition.parameters
                ),
            );
        }
        let result = match &tool.executor {
            Executor::Sql(sql) => sql.run(arguments),
            Executor::Http(http) => http.run(arguments),
            Executor::Calculator => builtin::calculate(arguments),
            Executor::Datetime => Ok(builtin::now()),
        };
        match result {
            Ok(value) => ToolResult::ok(&value),
            Err(failure) => ToolResult::error(failure.outcome, &failure.message),
        }
    }
}

/// Why a tool did not return data.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub outcome: StepOutcome,
    pub message: String,
}

impl Failure {
    pub(crate) fn refused(message: impl Into<String>) -> Failure {
        Failure {
            outcome: StepOutcome::Refused,
            message: message.into(),
        }
    }

    pub(crate) fn error(message: impl Into<String>) -> Failure {
        Failure {
            outcome: StepOutcome::Error,
            message: message.into(),
        }
    }
}

fn build(agent: &str, file: &ToolFile) -> Result<(ToolDefinition, Executor), AgentError> {
    let definition = |name: &str, description: &str, parameters: &Value| ToolDefinition {
        name: name.to_owned(),
        description: description.to_owned(),
        parameters: parameters.clone(),
    };
    Ok(match file {
        ToolFile::Sql {
            name,
            description,
            parameters,
            ..
        } => (
            definition(name, description, parameters),
            Executor::Sql(SqlTool::open(agent, file)?),
        ),
        ToolFile::Http {
            name,
            description,
            parameters,
            ..
        } => (
            definition(name, description, parameters),
            Executor::Http(HttpTool::new(agent, file)?),
        ),
        ToolFile::Calculator { name } => (
            builtin::calculator_definition(name.as_deref()),
            Executor::Calculator,
        ),
        ToolFile::Datetime { name } => (
            builtin::datetime_definition(name.as_deref()),
            Executor::Datetime,
        ),
    })
}
