//! The prompts file: JSON lines of `{"prompt": "..."}` or `{"messages":
//! [...], "tools": [...]}` (OpenAI's chat shape), each checked with the
//! tokenizer crate's record parser so that a bad line is reported with its
//! number before any work.

use std::collections::HashSet;
use std::path::Path;

use herd_tokenizer::{ChatFormat, ChatRecord, Tokenizer};
use serde_json::{json, Value};

use crate::error::{io, DatagenError, Result};

/// One prompt, ready for a teacher.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// Stable identity: a hash of the messages and tools, the journal's key.
    pub key: String,
    /// OpenAI message objects (with the system prompt, if one was added).
    pub messages: Vec<Value>,
    /// OpenAI tool objects.
    pub tools: Vec<Value>,
    /// The same conversation as herd messages, for a local teacher.
    pub record: ChatRecord,
}

impl Prompt {
    /// The prompt's tokens in the chat format, ending in the open
    /// assistant header: what a local teacher continues.
    pub fn encode(&self, tokenizer: &Tokenizer) -> Result<Vec<u32>> {
        Ok(ChatFormat::new(tokenizer)?.encode_dialog_prompt(&self.record.dialog())?)
    }
}

/// Reads and validates the prompts, adding `system` as the first message of
/// prompts that have none. Repeated prompts are kept once.
pub fn read_prompts(path: &Path, system: Option<&str>) -> Result<Vec<Prompt>> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let mut prompts = Vec::new();
    let mut seen = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |problem: String| DatagenError::BadPrompt {
            path: path.to_owned(),
            line: i + 1,
            problem,
        };
        let value: Value = serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
        let prompt = parse_prompt(&value, system).map_err(bad)?;
        if seen.insert(prompt.key.clone()) {
            prompts.push(prompt);
        }
    }
    if prompts.is_empty() {
        return Err(DatagenError::NoPrompts(path.to_owned()));
    }
    Ok(prompts)
}

/// One line's prompt.
fn parse_prompt(value: &Value, system: Option<&str>) -> std::result::Result<Prompt, String> {
    let mut messages = match (value.get("prompt"), value.get("messages")) {
        (Some(Value::String(text)), None) => vec![json!({"role": "user", "content": text})],
        (None, Some(Value::Array(messages))) => messages.clone(),
        (Some(_), Some(_)) => return Err("give either `prompt` or `messages`, not both".into()),
        _ => {
            return Err(
                "expected {\"prompt\": \"text\"} or {\"messages\": [...], \"tools\": [...]}".into(),
            )
        }
    };
    if let Some(system) = system {
        if messages.first().and_then(|m| m["role"].as_str()) != Some("system") {
            messages.insert(0, json!({"role": "system", "content": system}));
        }
    }
    let tools = match value.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tools)) => tools.clone(),
        Some(_) => return Err("`tools` must be an array".into()),
    };
    let canonical = json!({"messages": messages, "tools": tools});
    let record = ChatRecord::from_value(&canonical).map_err(|e| e.to_string())?;
    Ok(Prompt {
        key: format!("{:016x}", fnv1a(canonical.to_string().as_bytes())),
        messages,
        tools,
        record,
    })
}

/// FNV-1a, 64 bits: a hash that is the same on every machine and release
/// (std's hasher is not), for journal keys and de-duplication.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn both_shapes_are_read_and_repeats_dropped() {
        let file = write(concat!(
            "{\"prompt\": \"hi\"}\n\n",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n",
            "{\"messages\": [{\"role\": \"system\", \"content\": \"own\"}, {\"role\": \"user\", \"content\": \"x\"}], \"expected\": 1}\n",
        ));
        let prompts = read_prompts(file.path(), Some("Be brief.")).unwrap();
        assert_eq!(prompts.len(), 2, "the second line repeats the first");
        assert_eq!(prompts[0].messages[0]["content"], "Be brief.");
        assert_eq!(prompts[1].messages[0]["content"], "own");
        assert_ne!(prompts[0].key, prompts[1].key);
    }

    #[test]
    fn bad_lines_and_empty_files_are_clear_errors() {
        let empty = write("\n  \n");
        let err = read_prompts(empty.path(), None).unwrap_err().to_string();
        assert!(err.contains("no prompts"), "{err}");
        let bad = write("{\"prompt\": \"ok\"}\n{\"text\": \"no\"}\n");
        let err = read_prompts(bad.path(), None).unwrap_err().to_string();
        assert!(err.contains(":2: expected"), "{err}");
        let bad = write("{\"messages\": [{\"role\": \"wizard\", \"content\": \"x\"}]}\n");
        let err = read_prompts(bad.path(), None).unwrap_err().to_string();
        assert!(err.contains(":1:") && err.contains("wizard"), "{err}");
    }
}
