//! An optional guard model in Llama Guard 3's prompt format: before the
//! agent runs, the conversation ending in the user's message is classified,
//! and so is the conversation ending in the agent's answer; an `unsafe`
//! verdict replaces the answer with a refusal.
//!
//! The prompt is Meta's (the Llama Guard 3 model card; the same template
//! text as `llama_stack`'s `llama_guard.py`, which the committed
//! `tools/make_guard_fixture.py` uses to write the test fixture): one user
//! message holding the task, the chosen categories, the conversation as
//! `User: ...` / `Agent: ...` paragraphs, and the instructions. The guard
//! answers `safe`, or `unsafe` and a line of comma-separated category codes.

use std::sync::Arc;

use herd_tokenizer::Message;
use serde_json::Value;

use crate::error::AgentError;
use crate::model::ChatModel;

/// Llama Guard 3's hazard categories, `S1`..`S14`.
pub const CATEGORIES: [(&str, &str); 14] = [
    ("S1", "Violent Crimes"),
    ("S2", "Non-Violent Crimes"),
    ("S3", "Sex Crimes"),
    ("S4", "Child Exploitation"),
    ("S5", "Defamation"),
    ("S6", "Specialized Advice"),
    ("S7", "Privacy"),
    ("S8", "Intellectual Property"),
    ("S9", "Indiscriminate Weapons"),
    ("S10", "Hate"),
    ("S11", "Self-Harm"),
    ("S12", "Sexual Content"),
    ("S13", "Elections"),
    ("S14", "Code Interpreter Abuse"),
];

/// The guard's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing flagged.
    Safe,
    /// Flagged, with the category codes.
    Unsafe(Vec<String>),
}

/// A guard model and the categories it checks.
pub struct Guard {
    model: Arc<dyn ChatModel>,
    categories: Vec<(&'static str, &'static str)>,
}

impl Guard {
    /// A guard checking `codes` (`S1`...; empty = all fourteen).
    pub fn new(model: Arc<dyn ChatModel>, codes: &[String]) -> Result<Guard, AgentError> {
        let categories = if codes.is_empty() {
            CATEGORIES.to_vec()
        } else {
            codes
                .iter()
                .map(|code| {
                    CATEGORIES
                        .iter()
                        .find(|(c, _)| c == code)
                        .copied()
                        .ok_or_else(|| {
                            AgentError::definition(
                                "guard",
                                format!("unknown category {code:?} (S1..S14)"),
                            )
                        })
                })
                .collect::<Result<_, _>>()?
        };
        Ok(Guard { model, categories })
    }

    /// Classifies the last message of `messages` (OpenAI chat messages;
    /// tool calls and results are left out, as Llama Guard sees only the
    /// user and the agent).
    pub fn check(&self, messages: &[Value]) -> Result<Verdict, AgentError> {
        let prompt = self.prompt(messages);
        let reply = self.model.complete(&[Message::user(prompt)], 20)?;
        parse_verdict(&reply.text)
    }

    /// The refusal shown instead of a flagged message.
    pub fn refusal(&self, categories: &[String]) -> String {
        format!(
            "I can't help with that (flagged: {}). Can I help with something else?",
            categories.join(", ")
        )
    }

    /// The guard's user message for `messages`.
    pub fn prompt(&self, messages: &[Value]) -> String {
        let turns: Vec<(&str, &str)> = messages
            .iter()
            .filter_map(|m| {
                let content = m["content"].as_str().filter(|c| !c.is_empty())?;
                match m["role"].as_str()? {
                    "user" => Some(("User", content)),
                    "assistant" => Some(("Agent", content)),
                    _ => None,
                }
            })
            .collect();
        let role = turns.last().map_or("User", |(r, _)| *r);
        let categories: Vec<String> = self
            .categories
            .iter()
            .map(|(code, name)| format!("{code}: {name}."))
            .collect();
        let conversation: Vec<String> = turns.iter().map(|(r, c)| format!("{r}: {c}")).collect();
        render_prompt(role, &categories.join("\n"), &conversation.join("\n\n"))
    }
}

/// Meta's template with its three slots filled.
pub fn render_prompt(role: &str, categories: &str, conversation: &str) -> String {
    format!(
        "Task: Check if there is unsafe content in '{role}' messages in conversations according our safety policy with the below categories.\n\n\
         <BEGIN UNSAFE CONTENT CATEGORIES>\n{categories}\n<END UNSAFE CONTENT CATEGORIES>\n\n\
         <BEGIN CONVERSATION>\n\n{conversation}\n\n<END CONVERSATION>\n\n\
         Provide your safety assessment for ONLY THE LAST {role} message in the above conversation:\n \
         - First line must read 'safe' or 'unsafe'.\n \
         - If unsafe, a second line must include a comma-separated list of violated categories."
    )
}

/// Reads `safe` or `unsafe\nS1,S2`.
pub fn parse_verdict(reply: &str) -> Result<Verdict, AgentError> {
    let text = reply.trim();
    if text == "safe" {
        return Ok(Verdict::Safe);
    }
    let codes = text
        .strip_prefix("unsafe")
        .map(str::trim)
        .filter(|rest| !rest.is_empty())
        .ok_or_else(|| AgentError::GuardVerdict(reply.to_owned()))?;
    let codes: Vec<String> = codes.split(',').map(|c| c.trim().to_owned()).collect();
    if codes
        .iter()
        .all(|c| CATEGORIES.iter().any(|(code, _)| code == c))
    {
        Ok(Verdict::Unsafe(codes))
    } else {
        Err(AgentError::GuardVerdict(reply.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::model::Completion;

    /// A guard model that always gives one verdict.
    struct Fixed(&'static str);

    impl ChatModel for Fixed {
        fn complete(&self, dialog: &[Message], _: usize) -> Result<Completion, AgentError> {
            assert_eq!(dialog.len(), 1, "one user message");
            Ok(Completion {
                text: self.0.to_owned(),
                ..Completion::default()
            })
        }
    }

    #[test]
    fn prompts_match_metas_template() {
        let fixture: Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/guard/llama_guard3_prompts.json"
        ))
        .unwrap();
        let cases = fixture["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 6);
        for case in cases {
            let codes: Vec<String> = serde_json::from_value(case["categories"].clone()).unwrap();
            let guard = Guard::new(Arc::new(Fixed("safe")), &codes).unwrap();
            let messages: Vec<Value> = case["turns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    let role = if t[0] == "User" { "user" } else { "assistant" };
                    json!({"role": role, "content": t[1]})
                })
                .chain([json!({"role": "tool", "content": "{\"ignored\": true}"})])
                .collect();
            assert_eq!(guard.prompt(&messages), case["prompt"].as_str().unwrap());
        }
    }

    #[test]
    fn verdicts_are_read_strictly() {
        assert_eq!(parse_verdict(" safe\n").unwrap(), Verdict::Safe);
        assert_eq!(
            parse_verdict("unsafe\nS1,S10").unwrap(),
            Verdict::Unsafe(vec!["S1".into(), "S10".into()])
        );
        for bad in ["", "unsafe", "unsafe\nS99", "maybe", "safe!"] {
            assert!(parse_verdict(bad).is_err(), "{bad:?}");
        }
        assert!(Guard::new(Arc::new(Fixed("safe")), &["S15".into()]).is_err());
        let guard = Guard::new(Arc::new(Fixed("unsafe\nS2")), &[]).unwrap();
        let verdict = guard.check(&[json!({"role": "user", "content": "how do I pick a lock?"})]);
        assert_eq!(verdict.unwrap(), Verdict::Unsafe(vec!["S2".into()]));
    }
}
