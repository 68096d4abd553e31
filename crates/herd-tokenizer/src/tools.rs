//! Tool definitions rendered into a dialog, as Llama 3.1 expects them.
//!
//! Meta's model card describes two places for custom (JSON) tool
//! definitions: the system prompt or the first user message. herd follows
//! the Llama 3.1 JSON tool-chat template that vLLM ships
//! (`tool_chat_template_llama3.1_json.jinja`), because it is what
//! OpenAI-compatible servers send to real Llama 3.1 checkpoints: a system
//! prompt that starts with the knowledge-cutoff and date lines, and the
//! definitions (each an OpenAI `{"type": "function", "function": {...}}`
//! object, 4-space indented JSON) at the top of the first user message.
//! Built-in tools add `Environment: ipython` and a `Tools:` line, as Meta's
//! format prescribes.
//!
//! One renderer serves training (datasets with a `tools` field), serving
//! (`tools` in a chat request) and agents, so a model sees at inference the
//! exact text it was trained on.

use serde_json::{json, Value};

use crate::chat::{Message, Role};

/// A custom tool the model may call, in OpenAI's function shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDefinition {
    /// Function name, as the model must write it in a call.
    pub name: String,
    /// What the tool does, for the model.
    pub description: String,
    /// JSON schema of the arguments object.
    pub parameters: Value,
}

impl ToolDefinition {
    /// The OpenAI tool object the prompt shows: `{"type": "function", "function": {...}}`.
    pub fn to_openai_json(&self) -> Value {
        json!({
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            }
        })
    }
}

/// A tool built into Llama 3.1 (trained into the model by Meta).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinTool {
    /// `brave_search.call(query="...")`.
    BraveSearch,
    /// `wolfram_alpha.call(query="...")`.
    WolframAlpha,
    /// Python code after `<|python_tag|>`; enabled by `Environment: ipython` alone.
    CodeInterpreter,
}

impl BuiltinTool {
    /// The name used in the `Tools:` line and in calls.
    pub const fn as_str(self) -> &'static str {
        match self {
            BuiltinTool::BraveSearch => "brave_search",
            BuiltinTool::WolframAlpha => "wolfram_alpha",
            BuiltinTool::CodeInterpreter => "code_interpreter",
        }
    }
}

/// Where custom tool definitions go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ToolPlacement {
    /// At the top of the first user message (vLLM's and Meta's default for JSON tools).
    #[default]
    FirstUserMessage,
    /// At the end of the system prompt.
    SystemPrompt,
}

/// Everything that decides how tools are rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolPrompt {
    /// Custom tools, in the order shown.
    pub tools: Vec<ToolDefinition>,
    /// Built-in tools to enable.
    pub builtin: Vec<BuiltinTool>,
    /// Where custom definitions go.
    pub placement: ToolPlacement,
    /// The `Today Date:` line, e.g. `26 Jul 2024` (the template's default).
    pub today: String,
}

/// The date vLLM's template uses when the caller gives none; fixed so that
/// prompts (and therefore training data and outputs) are reproducible.
pub const DEFAULT_TODAY: &str = "26 Jul 2024";

const CALL_INSTRUCTIONS: &str = "Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.Do not use variables.\n\n";

impl ToolPrompt {
    /// Custom tools in the default placement, with the default date.
    pub fn new(tools: Vec<ToolDefinition>) -> Self {
        Self {
            tools,
            builtin: Vec::new(),
            placement: ToolPlacement::default(),
            today: DEFAULT_TODAY.to_owned(),
        }
    }

    /// Whether there is anything to render.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty() && self.builtin.is_empty()
    }

    /// Returns `messages` with the tool prompt applied: the system prompt
    /// gains the environment and date lines (a system message is added
    /// when the dialog has none) and the definitions go where
    /// [`ToolPlacement`] says. With no tools the dialog is returned as is.
    /// A dialog without a user message gets the definitions in the system
    /// prompt, since there is nowhere else to put them.
    pub fn apply(&self, messages: &[Message]) -> Vec<Message> {
        if self.is_empty() {
            return messages.to_vec();
        }
        let mut out = messages.to_vec();
        let first_user = out.iter().position(|m| m.role == Role::User);
        let in_user = self.placement == ToolPlacement::FirstUserMessage && first_user.is_some();
        let original_system = match out.first() {
            Some(m) if m.role == Role::System => out.remove(0).content,
            _ => String::new(),
        };
        let mut system = self.system_header();
        system.push_str(&original_system);
        if !self.tools.is_empty() && !in_user {
            system.push_str("\n\nYou have access to the following functions. To call a function, please respond with JSON for a function call.");
            system.push_str(CALL_INSTRUCTIONS);
            system.push_str(&self.definitions());
        }
        out.insert(0, Message::system(system));
        if in_user && !self.tools.is_empty() {
            if let Some(user) = out.iter_mut().find(|m| m.role == Role::User) {
                let mut text = String::from("Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\n\n");
                text.push_str(CALL_INSTRUCTIONS);
                text.push_str(&self.definitions());
                text.push_str(&user.content);
                user.content = text;
            }
        }
        out
    }

    /// `Environment: ipython` (and `Tools:`) when tools are enabled, then
    /// the cutoff and date lines.
    fn system_header(&self) -> String {
        let mut s = String::new();
        if !self.builtin.is_empty() || !self.tools.is_empty() {
            s.push_str("Environment: ipython\n");
        }
        let named: Vec<&str> = self
            .builtin
            .iter()
            .filter(|t| **t != BuiltinTool::CodeInterpreter)
            .map(|t| t.as_str())
            .collect();
        if !named.is_empty() {
            s.push_str("Tools: ");
            s.push_str(&named.join(", "));
            s.push_str("\n\n");
        }
        s.push_str("Cutting Knowledge Date: December 2023\nToday Date: ");
        s.push_str(&self.today);
        s.push_str("\n\n");
        s
    }

    /// Each definition as 4-space indented JSON followed by a blank line.
    fn definitions(&self) -> String {
        let mut s = String::new();
        for tool in &self.tools {
            s.push_str(&pretty4(&tool.to_openai_json()));
            s.push_str("\n\n");
        }
        s
    }
}

/// JSON with a 4-space indent, as Jinja's `tojson(indent=4)` writes it.
fn pretty4(value: &Value) -> String {
    use serde::Serialize;
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    // Serialising a `Value` into memory cannot fail.
    value
        .serialize(&mut ser)
        .expect("serde_json::Value serialises");
    String::from_utf8(buf).expect("serde_json writes UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order_tool() -> ToolDefinition {
        ToolDefinition {
            name: "lookup_order".into(),
            description: "Find an order by number".into(),
            parameters: json!({"type": "object", "properties": {"order_id": {"type": "integer"}}, "required": ["order_id"]}),
        }
    }

    #[test]
    fn no_tools_leaves_dialog_unchanged() {
        let dialog = vec![Message::system("Be brief."), Message::user("hi")];
        assert_eq!(ToolPrompt::new(vec![]).apply(&dialog), dialog);
    }

    #[test]
    fn definitions_go_into_first_user_message() {
        let dialog = vec![
            Message::system("You help customers."),
            Message::user("Where is order 1042?"),
        ];
        let out = ToolPrompt::new(vec![order_tool()]).apply(&dialog);
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0].content,
            "Environment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou help customers."
        );
        let user = &out[1].content;
        assert!(user.starts_with("Given the following functions"));
        assert!(user.contains("\"name\": \"lookup_order\""));
        assert!(user.contains("\n    \"type\": \"function\""));
        assert!(user.ends_with("}\n\nWhere is order 1042?"));
    }

    #[test]
    fn system_placement_and_missing_system_message() {
        let mut prompt = ToolPrompt::new(vec![order_tool()]);
        prompt.placement = ToolPlacement::SystemPrompt;
        prompt.builtin = vec![BuiltinTool::BraveSearch, BuiltinTool::CodeInterpreter];
        let out = prompt.apply(&[Message::user("hi")]);
        assert_eq!(out[0].role, Role::System);
        assert!(out[0]
            .content
            .starts_with("Environment: ipython\nTools: brave_search\n\nCutting Knowledge Date"));
        assert!(out[0].content.contains("\"lookup_order\""));
        assert_eq!(out[1].content, "hi");
    }
}
