//! The Llama 3 chat format, token for token as Meta's reference formatter
//! (`llama_models.llama3.chat_format.ChatFormat`, llama-models 0.3.0):
//!
//! ```text
//! <|begin_of_text|>
//!   <|start_header_id|>system<|end_header_id|>\n\n{content}<|eot_id|>
//!   <|start_header_id|>user<|end_header_id|>\n\n{content}[\n\n{context}]<|eot_id|>
//!   <|start_header_id|>assistant<|end_header_id|>\n\n[<|python_tag|>]{content}{tool calls}<|eot_id|> or <|eom_id|>
//!   <|start_header_id|>ipython<|end_header_id|>\n\n{tool result}<|eot_id|>
//!   ...
//! <|start_header_id|>assistant<|end_header_id|>\n\n          ← generation starts here
//! ```
//!
//! Each text part (role name, `"\n\n"`, content, context, each tool call) is
//! encoded separately, as Meta does, so BPE never merges across parts; the
//! special tokens are inserted as ids, never parsed from text. Content is not
//! stripped: Meta's current formatter encodes it verbatim (the older
//! `llama3` repository stripped it; HF's chat template trims it).

use crate::error::{MessageProblem, TokenizerError};
use crate::pyfmt;
use crate::tokenizer::{SpecialToken, Tokenizer};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The system prompt.
    System,
    /// The person chatting.
    User,
    /// The model.
    Assistant,
    /// A tool's result. Meta's datatypes call this role `tool`; its header
    /// says `ipython`.
    Ipython,
}

impl Role {
    /// The role's name as written in the header.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Ipython => "ipython",
        }
    }

    const ALL: [Role; 4] = [Role::System, Role::User, Role::Assistant, Role::Ipython];
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a message ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MessageEnd {
    /// `<|eot_id|>`: the turn is over.
    #[default]
    EndOfTurn,
    /// `<|eom_id|>`: an assistant message that called a tool and waits for
    /// its result (Meta's `StopReason.end_of_message`). Assistant only.
    EndOfMessage,
}

/// One message of a dialog.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// The text, encoded verbatim (not stripped).
    pub content: String,
    /// Retrieval context, appended to a user message after `"\n\n"`. User only.
    pub context: Option<String>,
    /// Tool calls the assistant made, written after the content. Assistant only.
    pub tool_calls: Vec<ToolCall>,
    /// `<|eot_id|>` or `<|eom_id|>`.
    pub end: MessageEnd,
}

impl Message {
    /// A plain message ending its turn.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            context: None,
            tool_calls: Vec::new(),
            end: MessageEnd::EndOfTurn,
        }
    }

    /// A system prompt.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }

    /// A tool result.
    pub fn ipython(content: impl Into<String>) -> Self {
        Self::new(Role::Ipython, content)
    }

    /// Checks that only the fields the role can carry are set.
    fn validate(&self) -> Result<(), MessageProblem> {
        if !self.tool_calls.is_empty() && self.role != Role::Assistant {
            return Err(MessageProblem::ToolCallsOutsideAssistant);
        }
        if self.end == MessageEnd::EndOfMessage && self.role != Role::Assistant {
            return Err(MessageProblem::EomOutsideAssistant);
        }
        if self.context.is_some() && self.role != Role::User {
            return Err(MessageProblem::ContextOutsideUser);
        }
        Ok(())
    }
}

/// A tool call made by the assistant, written as Meta's
/// `ToolUtils.encode_tool_call` writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolCall {
    /// Code to run: preceded by `<|python_tag|>` (when it is the message's
    /// first tool call) and written as the bare code.
    CodeInterpreter {
        /// The code.
        code: String,
    },
    /// `brave_search.call(query="...")`.
    BraveSearch {
        /// The query, inserted verbatim.
        query: String,
    },
    /// `wolfram_alpha.call(query="...")`.
    WolframAlpha {
        /// The query, inserted verbatim.
        query: String,
    },
    /// `photogen.call(query="...")`.
    Photogen {
        /// The query, inserted verbatim.
        query: String,
    },
    /// A user-defined function, written in the [`ToolPromptFormat`] of the
    /// [`ChatFormat`]. Unlike Meta's pydantic model, a custom call named like
    /// a builtin tool stays custom.
    Custom {
        /// The function name.
        name: String,
        /// Arguments in order (Python dicts keep insertion order).
        arguments: Vec<(String, ToolValue)>,
    },
}

/// A tool-call argument value (Meta's `RecursiveType`).
#[derive(Debug, Clone, PartialEq)]
pub enum ToolValue {
    /// `None` / `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float, written as Python's `repr` writes it.
    Float(f64),
    /// A string.
    Str(String),
    /// A list.
    List(Vec<ToolValue>),
    /// A dict, in insertion order.
    Map(Vec<(String, ToolValue)>),
}

impl ToolValue {
    /// The value as Python's `json.dumps` writes it (`{"order_id": 1042}`),
    /// keys in their order: the form OpenAI tool-call arguments carry and
    /// that re-reads to the same value.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        pyfmt::json_dumps(self, &mut out);
        out
    }
}

/// How custom tool calls are written (Meta's `ToolPromptFormat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ToolPromptFormat {
    /// `{"type": "function", "name": NAME, "parameters": {...}}` (the default).
    #[default]
    Json,
    /// `<function=NAME>{...json...}</function>`.
    FunctionTag,
    /// `[NAME(key=value, ...)]`.
    PythonList,
}

impl ToolCall {
    /// The call in OpenAI's shape: the function name and its arguments as
    /// a JSON string (keys in order). Built-in tools take their one
    /// argument (`query`, or `code` for the code interpreter).
    pub fn to_openai(&self) -> (String, String) {
        let one = |key: &str, value: &str| {
            ToolValue::Map(vec![(key.to_owned(), ToolValue::Str(value.to_owned()))])
                .to_json_string()
        };
        match self {
            ToolCall::Custom { name, arguments } => (
                name.clone(),
                ToolValue::Map(arguments.clone()).to_json_string(),
            ),
            ToolCall::BraveSearch { query } => ("brave_search".into(), one("query", query)),
            ToolCall::WolframAlpha { query } => ("wolfram_alpha".into(), one("query", query)),
            ToolCall::Photogen { query } => ("photogen".into(), one("query", query)),
            ToolCall::CodeInterpreter { code } => ("code_interpreter".into(), one("code", code)),
        }
    }

    /// The text Meta's `ToolUtils.encode_tool_call` produces.
    pub(crate) fn text(&self, format: ToolPromptFormat) -> String {
        match self {
            ToolCall::CodeInterpreter { code } => code.clone(),
            ToolCall::BraveSearch { query } => format!("brave_search.call(query=\"{query}\")"),
            ToolCall::WolframAlpha { query } => format!("wolfram_alpha.call(query=\"{query}\")"),
            ToolCall::Photogen { query } => format!("photogen.call(query=\"{query}\")"),
            ToolCall::Custom { name, arguments } => {
                let mut out = String::new();
                match format {
                    ToolPromptFormat::Json => {
                        let call = ToolValue::Map(vec![
                            ("type".to_owned(), ToolValue::Str("function".to_owned())),
                            ("name".to_owned(), ToolValue::Str(name.clone())),
                            ("parameters".to_owned(), ToolValue::Map(arguments.clone())),
                        ]);
                        pyfmt::json_dumps(&call, &mut out);
                    }
                    ToolPromptFormat::FunctionTag => {
                        out.push_str("<function=");
                        out.push_str(name);
                        out.push('>');
                        pyfmt::json_dumps(&ToolValue::Map(arguments.clone()), &mut out);
                        out.push_str("</function>");
                    }
                    ToolPromptFormat::PythonList => {
                        out.push('[');
                        out.push_str(name);
                        out.push('(');
                        for (i, (key, value)) in arguments.iter().enumerate() {
                            if i > 0 {
                                out.push_str(", ");
                            }
                            out.push_str(key);
                            out.push('=');
                            pyfmt::python_value(value, &mut out);
                        }
                        out.push_str(")]");
                    }
                }
                out
            }
        }
    }
}

/// A dialog encoded for training ([`ChatFormat::encode_dialog`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedDialog {
    /// `<|begin_of_text|>` and every message.
    pub ids: Vec<u32>,
    /// One span per message, in order.
    pub spans: Vec<MessageSpan>,
}

/// Where one message's body lies in [`EncodedDialog::ids`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSpan {
    /// Who wrote the message.
    pub role: Role,
    /// Content, tool calls and the closing `<|eot_id|>`/`<|eom_id|>`; the
    /// header before it is not included.
    pub body: std::ops::Range<usize>,
}

/// Encodes dialogs in the Llama 3 chat format with one tokenizer.
///
/// Construction looks up the special tokens every dialog needs and fails if
/// one is missing; `<|eom_id|>` and `<|python_tag|>` are only required by a
/// dialog that uses them.
#[derive(Debug)]
pub struct ChatFormat<'t> {
    /// Encodes the text parts.
    tokenizer: &'t Tokenizer,
    /// `<|begin_of_text|>`.
    begin_of_text: u32,
    /// `<|eot_id|>`.
    end_of_turn: u32,
    /// Header ids per role, indexed by `Role as usize`.
    headers: [Vec<u32>; 4],
    /// How custom tool calls are written.
    tool_prompt_format: ToolPromptFormat,
}

impl<'t> ChatFormat<'t> {
    /// Prepares the format for `tokenizer`; fails if the vocabulary lacks
    /// `<|begin_of_text|>`, `<|start_header_id|>`, `<|end_header_id|>` or
    /// `<|eot_id|>`.
    pub fn new(tokenizer: &'t Tokenizer) -> Result<Self, TokenizerError> {
        let start_header = tokenizer.require(SpecialToken::StartHeader)?;
        let end_header = tokenizer.require(SpecialToken::EndHeader)?;
        let blank_line = tokenizer.encode("\n\n")?;
        let mut headers: [Vec<u32>; 4] = Default::default();
        for role in Role::ALL {
            let header = &mut headers[role as usize];
            header.push(start_header);
            header.extend(tokenizer.encode(role.as_str())?);
            header.push(end_header);
            header.extend_from_slice(&blank_line);
        }
        Ok(Self {
            tokenizer,
            begin_of_text: tokenizer.require(SpecialToken::BeginOfText)?,
            end_of_turn: tokenizer.require(SpecialToken::EndOfTurn)?,
            headers,
            tool_prompt_format: ToolPromptFormat::default(),
        })
    }

    /// Writes custom tool calls in `format` instead of JSON.
    pub fn with_tool_prompt_format(mut self, format: ToolPromptFormat) -> Self {
        self.tool_prompt_format = format;
        self
    }

    /// The prompt for a dialog: `<|begin_of_text|>`, every message, and an
    /// open assistant header for the model to complete. Named as Meta's
    /// `ChatFormat.encode_dialog_prompt`, which it reproduces id for id.
    pub fn encode_dialog_prompt(&self, messages: &[Message]) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = self.encode_dialog(messages)?.ids;
        ids.extend_from_slice(&self.headers[Role::Assistant as usize]);
        Ok(ids)
    }

    /// A complete dialog as a training example: the same ids as
    /// [`ChatFormat::encode_dialog_prompt`] without the open assistant
    /// header, plus where each message's body lies, so a trainer can put
    /// its loss on the assistant's tokens only.
    pub fn encode_dialog(&self, messages: &[Message]) -> Result<EncodedDialog, TokenizerError> {
        let mut ids = vec![self.begin_of_text];
        let mut spans = Vec::with_capacity(messages.len());
        for (index, message) in messages.iter().enumerate() {
            message
                .validate()
                .map_err(|problem| TokenizerError::InvalidMessage {
                    index,
                    role: message.role,
                    problem,
                })?;
            let start = ids.len() + self.headers[message.role as usize].len();
            self.encode_message(message, &mut ids)?;
            spans.push(MessageSpan {
                role: message.role,
                body: start..ids.len(),
            });
        }
        Ok(EncodedDialog { ids, spans })
    }

    /// Meta's `encode_message`: header, content, context or tool calls, end.
    fn encode_message(&self, message: &Message, ids: &mut Vec<u32>) -> Result<(), TokenizerError> {
        ids.extend_from_slice(&self.headers[message.role as usize]);
        if let Some(ToolCall::CodeInterpreter { .. }) = message.tool_calls.first() {
            ids.push(self.tokenizer.require(SpecialToken::PythonTag)?);
        }
        ids.extend(self.tokenizer.encode(&message.content)?);
        if let Some(context) = &message.context {
            ids.extend(self.tokenizer.encode("\n\n")?);
            ids.extend(self.tokenizer.encode(context)?);
        }
        for call in &message.tool_calls {
            ids.extend(self.tokenizer.encode(&call.text(self.tool_prompt_format))?);
        }
        ids.push(match message.end {
            MessageEnd::EndOfTurn => self.end_of_turn,
            MessageEnd::EndOfMessage => self.tokenizer.require(SpecialToken::EndOfMessage)?,
        });
        Ok(())
    }
}
