//! The text of one choice as it is generated: where stop strings cut it,
//! how much of it may already go to the client, and whether it is a tool
//! call that must be held back and parsed whole.
//!
//! ```text
//!   text:  [ released ............ | held back ]
//!                                 ^ emitted
//!   held back = a suffix that may still grow into a stop string,
//!               or everything while the output looks like a tool call
//! ```
//!
//! Released text never contains the start of a stop string, so a stop
//! string is only searched for from `emitted` on.

use herd_engine::TokenLogprob;
use herd_tokenizer::{may_start_tool_call, parse_tool_output, SpecialToken};

use crate::prompt::openai_call;

/// How tool calls are looked for in this choice's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolParsing {
    /// No tools: everything is content.
    Off,
    /// Tools offered: text that starts like a call is held back and parsed.
    Detect,
    /// A call is certain (constrained decoding forces one, or
    /// `<|python_tag|>` was seen).
    Hold,
}

/// What one step releases to the client.
#[derive(Debug, Default, PartialEq)]
pub struct Release {
    /// New content text.
    pub text: String,
    /// Log-probabilities of the tokens whose text is now released.
    pub logprobs: Vec<TokenLogprob>,
    /// A stop string was found: generation must end.
    pub stopped: bool,
}

/// A call in OpenAI's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionCall {
    /// The function.
    pub name: String,
    /// Its arguments as JSON text (not always valid JSON, as in OpenAI's API).
    pub arguments: String,
}

/// The end of a choice: the last content and the calls.
#[derive(Debug, Default, PartialEq)]
pub struct Ending {
    /// Content not yet released.
    pub text: String,
    /// Log-probabilities not yet released.
    pub logprobs: Vec<TokenLogprob>,
    /// Tool calls found in the output.
    pub calls: Vec<FunctionCall>,
}

/// State of one choice's text.
#[derive(Debug)]
pub struct OutputText {
    text: String,
    emitted: usize,
    stop: Vec<String>,
    tools: ToolParsing,
    /// Content was already released, so a later `<|python_tag|>` call
    /// follows content rather than replacing it.
    is_content: bool,
    /// Log-probabilities waiting for their text, with the text length after
    /// their token.
    pending: Vec<(usize, TokenLogprob)>,
}

impl OutputText {
    /// A choice cut at `stop` strings, looking for tool calls as `tools` says.
    pub fn new(stop: Vec<String>, tools: ToolParsing) -> Self {
        Self {
            text: String::new(),
            emitted: 0,
            stop,
            tools,
            is_content: false,
            pending: Vec::new(),
        }
    }

    /// The model wrote `<|python_tag|>`: what follows is a call.
    pub fn python_tag(&mut self) {
        if self.tools != ToolParsing::Off {
            self.text.push_str(SpecialToken::PythonTag.name());
            self.tools = ToolParsing::Hold;
        }
    }

    /// Adds a token's text (and its log-probability, if requested).
    pub fn push(&mut self, piece: &str, logprob: Option<TokenLogprob>) -> Release {
        self.text.push_str(piece);
        if let Some(lp) = logprob {
            self.pending.push((self.text.len(), lp));
        }
        let stopped = self.cut_at_stop();
        let end = if stopped {
            self.text.len()
        } else {
            self.safe_end()
        };
        match self.tools {
            ToolParsing::Hold => Release {
                stopped,
                ..Release::default()
            },
            ToolParsing::Detect if !self.is_content && may_start_tool_call(&self.text) => Release {
                stopped,
                ..Release::default()
            },
            _ => {
                self.is_content = true;
                let mut release = self.release_to(end);
                release.stopped = stopped;
                release
            }
        }
    }

    /// Ends the choice with the decoder's last text.
    pub fn finish(mut self, tail: &str) -> Ending {
        self.text.push_str(tail);
        self.cut_at_stop();
        if self.tools != ToolParsing::Off {
            let parsed = parse_tool_output(&self.text);
            let calls: Vec<FunctionCall> = parsed
                .calls
                .iter()
                .map(|call| {
                    let (name, arguments) = openai_call(call);
                    FunctionCall { name, arguments }
                })
                .collect();
            if !calls.is_empty() {
                return Ending {
                    text: parsed.content.get(self.emitted..).unwrap_or("").to_owned(),
                    logprobs: self.pending.drain(..).map(|(_, lp)| lp).collect(),
                    calls,
                };
            }
        }
        let release = self.release_to(self.text.len());
        let mut logprobs = release.logprobs;
        logprobs.extend(self.pending.drain(..).map(|(_, lp)| lp));
        Ending {
            text: release.text,
            logprobs,
            calls: Vec::new(),
        }
    }

    /// Truncates the text at the earliest stop string; true if one was found.
    fn cut_at_stop(&mut self) -> bool {
        let from = self.emitted;
        let hit = self
            .stop
            .iter()
            .filter_map(|s| self.text[from..].find(s.as_str()))
            .min();
        match hit {
            Some(at) => {
                self.text.truncate(from + at);
                true
            }
            None => false,
        }
    }

    /// The end of the text minus the longest suffix that is a proper
    /// prefix of a stop string.
    fn safe_end(&self) -> usize {
        let tail = &self.text[self.emitted..];
        let held = self
            .stop
            .iter()
            .flat_map(|s| {
                (1..s.len())
                    .filter(|&k| s.is_char_boundary(k))
                    .map(|k| &s[..k])
            })
            .filter(|prefix| tail.ends_with(prefix))
            .map(str::len)
            .max()
            .unwrap_or(0);
        self.text.len() - held
    }

    /// Releases text up to `end` and the log-probabilities it covers.
    fn release_to(&mut self, end: usize) -> Release {
        let text = self.text[self.emitted..end].to_owned();
        self.emitted = end;
        let covered = self.pending.iter().take_while(|(at, _)| *at <= end).count();
        Release {
            text,
            logprobs: self.pending.drain(..covered).map(|(_, lp)| lp).collect(),
            stopped: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, arguments: &str) -> FunctionCall {
        FunctionCall {
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    fn run(out: &mut OutputText, pieces: &[&str]) -> (String, bool) {
        let mut text = String::new();
        for piece in pieces {
            let r = out.push(piece, None);
            text.push_str(&r.text);
            if r.stopped {
                return (text, true);
            }
        }
        (text, false)
    }

    #[test]
    fn stop_string_across_tokens_is_cut_and_never_streamed() {
        let mut out = OutputText::new(vec!["END".into()], ToolParsing::Off);
        let (text, stopped) = run(&mut out, &["hello E", "N", "D and more"]);
        assert!(stopped);
        assert_eq!(text, "hello ");
        assert_eq!(out.finish("").text, "");
    }

    #[test]
    fn held_prefix_is_released_when_it_does_not_complete() {
        let mut out = OutputText::new(vec!["END".into()], ToolParsing::Off);
        let (text, stopped) = run(&mut out, &["a E", "N"]);
        assert_eq!((text.as_str(), stopped), ("a ", false));
        let (text, _) = run(&mut out, &["x"]);
        assert_eq!(text, "ENx");
        assert_eq!(out.finish("E").text, "E");
    }

    #[test]
    fn plain_text_streams_even_with_tools() {
        let mut out = OutputText::new(vec![], ToolParsing::Detect);
        let (text, _) = run(&mut out, &[" Hel", "lo {", "x"]);
        assert_eq!(text, " Hello {x");
        assert!(out.finish("").calls.is_empty());
    }

    #[test]
    fn json_call_is_held_and_parsed() {
        let mut out = OutputText::new(vec![], ToolParsing::Detect);
        let (text, _) = run(
            &mut out,
            &[" {\"name\": \"f\", ", "\"parameters\": {\"x\": 1}}"],
        );
        assert_eq!(text, "");
        let end = out.finish("");
        assert_eq!(end.text, "");
        assert_eq!(end.calls, vec![call("f", "{\"x\": 1}")]);
    }

    #[test]
    fn held_text_that_is_no_call_comes_out_at_the_end() {
        let mut out = OutputText::new(vec![], ToolParsing::Detect);
        let (text, _) = run(&mut out, &["{\"answer\": 42}"]);
        assert_eq!(text, "");
        let end = out.finish("");
        assert_eq!(end.text, "{\"answer\": 42}");
        assert!(end.calls.is_empty());
    }

    #[test]
    fn python_tag_after_content() {
        let mut out = OutputText::new(vec![], ToolParsing::Detect);
        let (text, _) = run(&mut out, &["Searching."]);
        assert_eq!(text, "Searching.");
        out.python_tag();
        let (text, _) = run(&mut out, &["brave_search.call(query=\"x\")"]);
        assert_eq!(text, "");
        let end = out.finish("");
        assert_eq!(end.text, "");
        assert_eq!(end.calls, vec![call("brave_search", "{\"query\": \"x\"}")]);
    }

    #[test]
    fn certain_call_is_never_streamed() {
        let mut out = OutputText::new(vec![], ToolParsing::Hold);
        let (text, _) = run(&mut out, &["Hello"]);
        assert_eq!(text, "");
        let end = out.finish("");
        assert_eq!((end.text.as_str(), end.calls.len()), ("Hello", 0));
    }

    #[test]
    fn logprobs_follow_their_text() {
        let lp = |id| TokenLogprob {
            id,
            logprob: -1.0,
            top: vec![],
        };
        let mut out = OutputText::new(vec!["XY".into()], ToolParsing::Off);
        let r = out.push("a", Some(lp(1)));
        assert_eq!(r.logprobs.len(), 1);
        let r = out.push("X", Some(lp(2)));
        assert!(r.logprobs.is_empty() && r.text.is_empty());
        let end = out.finish("");
        assert_eq!(end.text, "X");
        assert_eq!(end.logprobs, vec![lp(2)]);
    }
}
