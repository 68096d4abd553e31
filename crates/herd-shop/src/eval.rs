//! Scoring a model on the test split (`test.jsonl` of [`crate::Corpus`]).
//!
//! Each case is cut just before an assistant turn. The model answers it
//! greedily (so the score is reproducible), the reply is read as a tool
//! call when it is the Llama 3.1 JSON call `{"type": "function", "name":
//! ..., "parameters": {...}}` and as plain text otherwise, and
//! [`Expected::accepts`] decides. The same pass scores the gold reply's
//! tokens (content and its closing `<|eot_id|>`/`<|eom_id|>`) under the
//! model, so the report also gives the perplexity of the reference answers:
//! exact match says whether the model does the job, perplexity how far it is
//! from doing it, which still separates two models that both fail.

use std::path::Path;

use herd_engine::{generate, GenerateRequest, SamplingParams};
use herd_model::{logits_row, KvCache, Llama, Logits};
use herd_tokenizer::{ChatFormat, ChatRecord, Tokenizer};
use serde::Deserialize;
use serde_json::Value;

use crate::error::ShopError;
use crate::expected::{Expected, Reply};

/// How to run an evaluation.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// The longest reply generated per case.
    pub max_new_tokens: usize,
    /// Score only the first this many cases.
    pub limit: Option<usize>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            max_new_tokens: 96,
            limit: None,
        }
    }
}

/// One scored case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// `meta.id` of the case (or its line number).
    pub id: String,
    /// What was expected.
    pub expected: Expected,
    /// The model's reply, decoded without special tokens.
    pub reply: String,
    /// Whether the reply parsed as a call of one of the record's tools
    /// with an arguments object.
    pub well_formed_call: bool,
    /// Whether [`Expected::accepts`] the reply.
    pub passed: bool,
    /// Negative log-likelihood of the gold reply's tokens (nats, summed).
    pub nll: f64,
    /// How many tokens `nll` sums over.
    pub tokens: usize,
    /// Tokens decoded after the first one of the reply (the stop token included).
    pub decode_tokens: usize,
    /// Seconds spent decoding them.
    pub decode_seconds: f64,
}

/// Totals over a test file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvalReport {
    /// Cases scored for exact match (every case but the open ones).
    pub cases: usize,
    /// Of those, the ones passed.
    pub passed: usize,
    /// Cases that accept any reply (no required words): scored for
    /// perplexity only.
    pub open_cases: usize,
    /// Cases that expect a tool call.
    pub tool_cases: usize,
    /// Of those, the ones answered with a well-formed tool call.
    pub tool_cases_well_formed: usize,
    /// Of those, the ones answered with exactly the expected call.
    pub tool_cases_passed: usize,
    /// Cases that expect a plain answer with required words.
    pub answer_cases: usize,
    /// Of those, the ones passed.
    pub answer_cases_passed: usize,
    /// Summed negative log-likelihood of the gold replies (nats).
    pub nll: f64,
    /// Tokens the likelihood covers.
    pub tokens: usize,
    /// Tokens decoded after each reply's first token (the stop token included).
    pub decode_tokens: usize,
    /// Seconds spent decoding them.
    pub decode_seconds: f64,
}

impl EvalReport {
    /// Share of cases passed (0 when none were scored).
    pub fn exact_match(&self) -> f64 {
        ratio(self.passed, self.cases)
    }

    /// Share of tool-needing cases answered with a well-formed tool call.
    pub fn tool_call_validity(&self) -> f64 {
        ratio(self.tool_cases_well_formed, self.tool_cases)
    }

    /// Perplexity of the gold replies: `exp(nll / tokens)`.
    pub fn perplexity(&self) -> f64 {
        (self.nll / self.tokens.max(1) as f64).exp()
    }

    /// Decoding speed over all replies, tokens per second (prefill excluded,
    /// so that models compare by their per-token cost).
    pub fn tokens_per_second(&self) -> f64 {
        if self.decode_seconds > 0.0 {
            self.decode_tokens as f64 / self.decode_seconds
        } else {
            0.0
        }
    }

    fn add(&mut self, case: &CaseResult) {
        self.nll += case.nll;
        self.tokens += case.tokens;
        self.decode_tokens += case.decode_tokens;
        self.decode_seconds += case.decode_seconds;
        if matches!(&case.expected, Expected::AnswerContains(parts) if parts.is_empty()) {
            self.open_cases += 1;
            return;
        }
        self.cases += 1;
        self.passed += case.passed as usize;
        match case.expected {
            Expected::ToolCall { .. } => {
                self.tool_cases += 1;
                self.tool_cases_well_formed += case.well_formed_call as usize;
                self.tool_cases_passed += case.passed as usize;
            }
            Expected::AnswerContains(_) => {
                self.answer_cases += 1;
                self.answer_cases_passed += case.passed as usize;
            }
        }
    }
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The fields of a test line this module reads (the chat part is parsed by
/// [`ChatRecord`]).
#[derive(Deserialize)]
struct TestLine {
    #[serde(default)]
    tools: Value,
    messages: Vec<Value>,
    expected: Expected,
    reference: Value,
    #[serde(default)]
    meta: Option<Meta>,
}

#[derive(Deserialize)]
struct Meta {
    id: String,
}

/// Scores `model` on the test file at `path`, calling `on_case` after each
/// case (for progress or a per-case log).
pub fn evaluate(
    model: &Llama,
    tokenizer: &Tokenizer,
    path: &Path,
    options: &EvalOptions,
    mut on_case: impl FnMut(&CaseResult),
) -> Result<EvalReport, ShopError> {
    let text = std::fs::read_to_string(path).map_err(|source| ShopError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let format = ChatFormat::new(tokenizer)?;
    let mut report = EvalReport::default();
    let lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    for (index, line) in lines.take(options.limit.unwrap_or(usize::MAX)) {
        let bad = |problem: String| ShopError::BadTestCase {
            path: path.to_path_buf(),
            line: index + 1,
            problem,
        };
        let case: TestLine = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let result = score_case(model, tokenizer, &format, case, index + 1, options)
            .map_err(|e| bad(e.to_string()))?;
        report.add(&result);
        on_case(&result);
    }
    if report.cases + report.open_cases == 0 {
        return Err(ShopError::EmptyTestFile(path.to_path_buf()));
    }
    Ok(report)
}

fn score_case(
    model: &Llama,
    tokenizer: &Tokenizer,
    format: &ChatFormat<'_>,
    case: TestLine,
    line: usize,
    options: &EvalOptions,
) -> Result<CaseResult, ShopError> {
    let mut messages = case.messages;
    messages.push(case.reference);
    let record = ChatRecord::from_value(&serde_json::json!({
        "tools": case.tools,
        "messages": messages,
    }))?;
    let encoded = format.encode_dialog(&record.dialog())?;
    let gold = encoded
        .spans
        .last()
        .map(|span| span.body.clone())
        .ok_or_else(|| ShopError::Eval("a test case without messages".into()))?;
    let prompt = &encoded.ids[..gold.start];
    let mut cache = KvCache::new(model.config());
    let nll = reference_nll(model, &mut cache, prompt, &encoded.ids[gold.clone()])?;
    cache.truncate(prompt.len())?;
    let request = GenerateRequest {
        prompt: prompt.to_vec(),
        max_new_tokens: options.max_new_tokens,
        sampling: SamplingParams::default(),
        stop_ids: tokenizer.stop_ids(),
    };
    let generation = generate(model, &mut cache, &request, |_| {
        std::ops::ControlFlow::Continue(())
    })?;
    let reply = tokenizer.decode(&generation.tokens, true)?;
    let call = parse_call(&reply);
    let well_formed_call = call
        .as_ref()
        .is_some_and(|(name, _)| record.tools.iter().any(|t| &t.name == name));
    let parsed = match &call {
        Some((name, arguments)) => Reply::ToolCall { name, arguments },
        None => Reply::Answer(reply.trim()),
    };
    let passed = case.expected.accepts(parsed);
    let decode_seconds = generation.decode_time.as_secs_f64();
    Ok(CaseResult {
        decode_tokens: generation.decoded_tokens(),
        decode_seconds,
        id: case.meta.map_or_else(|| format!("line {line}"), |m| m.id),
        expected: case.expected,
        reply,
        well_formed_call,
        passed,
        nll,
        tokens: gold.len(),
    })
}

/// Summed negative log-likelihood of `gold` following `prompt`; leaves the
/// cache holding `prompt` and all of `gold` but its last token.
fn reference_nll(
    model: &Llama,
    cache: &mut KvCache,
    prompt: &[u32],
    gold: &[u32],
) -> Result<f64, ShopError> {
    let first = model.forward_one(prompt, cache, Logits::Last)?;
    let mut rows = vec![logits_row(&first, 0)?];
    if gold.len() > 1 {
        let rest = model.forward_one(&gold[..gold.len() - 1], cache, Logits::All)?;
        for row in 0..gold.len() - 1 {
            rows.push(logits_row(&rest, row)?);
        }
    }
    Ok(rows
        .iter()
        .zip(gold)
        .map(|(row, &id)| neg_log_softmax(row, id as usize))
        .sum())
}

/// `-log softmax(row)[id]`, computed stably in f64.
fn neg_log_softmax(row: &[f32], id: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    max + sum.ln() - row[id] as f64
}

/// Reads a reply as a Llama 3.1 JSON tool call: an object with a string
/// `name` and an object `parameters` (and `"type": "function"` if present).
pub fn parse_call(reply: &str) -> Option<(String, Value)> {
    let value: Value = serde_json::from_str(reply.trim()).ok()?;
    let object = value.as_object()?;
    if object.get("type").is_some_and(|t| t != "function") {
        return None;
    }
    let name = object.get("name")?.as_str()?.to_owned();
    let arguments = object.get("parameters")?;
    arguments.is_object().then(|| (name, arguments.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_json_tool_calls_only() {
        let (name, args) = parse_call(
            r#" {"type": "function", "name": "lookup_order", "parameters": {"order_id": 1042}}"#,
        )
        .expect("a call");
        assert_eq!(name, "lookup_order");
        assert_eq!(args, json!({"order_id": 1042}));
        assert!(parse_call(r#"{"name": "lookup_order", "parameters": 1042}"#).is_none());
        assert!(parse_call(r#"{"type": "text", "name": "x", "parameters": {}}"#).is_none());
        assert!(parse_call("Your order 1042 has shipped.").is_none());
        assert!(parse_call(r#"{"type": "function", "name": "lookup_order""#).is_none());
    }

    #[test]
    fn log_softmax_matches_the_definition() {
        let row = [1.0f32, 2.0, 3.0];
        let z: f64 = row.iter().map(|&x| (x as f64).exp()).sum();
        assert!((neg_log_softmax(&row, 1) - (z.ln() - 2.0)).abs() < 1e-12);
        let report = EvalReport {
            cases: 4,
            passed: 1,
            tool_cases: 2,
            tool_cases_well_formed: 1,
            nll: 2.0,
            tokens: 4,
            ..EvalReport::default()
        };
        assert_eq!(report.exact_match(), 0.25);
        assert_eq!(report.tool_call_validity(), 0.5);
        assert!((report.perplexity() - 0.5f64.exp()).abs() < 1e-12);
    }

    #[test]
    fn open_cases_count_for_perplexity_only() {
        let case = |expected: Expected, passed: bool| CaseResult {
            id: String::new(),
            expected,
            reply: String::new(),
            well_formed_call: false,
            passed,
            nll: 1.0,
            tokens: 1,
            decode_tokens: 3,
            decode_seconds: 0.5,
        };
        let mut report = EvalReport::default();
        report.add(&case(Expected::AnswerContains(vec![]), true));
        report.add(&case(Expected::AnswerContains(vec!["1042".into()]), false));
        assert_eq!((report.cases, report.passed, report.open_cases), (1, 0, 1));
        assert_eq!(report.exact_match(), 0.0);
        assert_eq!(report.tokens, 2);
        assert_eq!(report.tokens_per_second(), 6.0);
    }
}
