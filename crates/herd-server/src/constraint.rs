//! Output constraints by constrained decoding (`herd-structured`):
//! `response_format` `json_object` / `json_schema`, and the call schema of
//! `tool_choice` `required` / named. Each choice gets its own
//! [`JsonProcessor`] (it carries per-sequence automaton state); the
//! vocabulary index is built once per server.

use std::sync::Arc;

use herd_engine::LogitsProcessor;
use herd_structured::{JsonProcessor, JsonSpec, TokenVocab};
use herd_tokenizer::Tokenizer;
use serde_json::Value;

use crate::api::ResponseFormat;
use crate::error::{Result, ServerError};

/// What every constrained request needs: the vocabulary index and the
/// tokens that end a request.
pub struct Structured {
    /// Why the index could not be built, for a tokenizer that is not
    /// byte-level: then constrained requests are refused.
    vocab: std::result::Result<Arc<TokenVocab>, String>,
    stop_ids: Vec<u32>,
}

/// The constraint of one request.
pub struct Constraint {
    spec: Option<(JsonSpec, Arc<TokenVocab>)>,
    stop_ids: Vec<u32>,
}

impl Structured {
    /// Indexes the tokenizer's vocabulary.
    pub fn new(tokenizer: &Tokenizer, stop_ids: Vec<u32>) -> Structured {
        let vocab = TokenVocab::from_tokenizer(tokenizer)
            .map(Arc::new)
            .map_err(|e| e.to_string());
        Structured { vocab, stop_ids }
    }

    /// The constraint for `response_format` and, for a required tool call,
    /// the call's schemas (the first that compiles is used). Schemas are
    /// compiled once here so that an invalid one is a 400 before anything
    /// runs.
    pub fn constraint(
        &self,
        format: Option<&ResponseFormat>,
        call_schemas: &[Value],
    ) -> Result<Constraint> {
        let from_format = match format {
            None | Some(ResponseFormat::Text) => None,
            Some(ResponseFormat::JsonObject) => Some(JsonSpec::AnyObject),
            Some(ResponseFormat::JsonSchema { json_schema }) => match &json_schema.schema {
                Some(schema) => Some(JsonSpec::Schema(schema.clone())),
                None => {
                    return Err(ServerError::param(
                        "response_format",
                        "json_schema needs a `schema`",
                    ))
                }
            },
        };
        let spec = match (from_format, call_schemas) {
            (None, []) => None,
            (Some(spec), []) => Some(self.checked(spec)?),
            (None, schemas) => Some(self.first_valid(schemas)?),
            (Some(_), _) => {
                return Err(ServerError::param(
                    "response_format",
                    "a JSON response_format cannot be combined with a required tool call",
                ))
            }
        };
        Ok(Constraint {
            spec,
            stop_ids: self.stop_ids.clone(),
        })
    }

    fn vocab(&self) -> Result<Arc<TokenVocab>> {
        self.vocab.clone().map_err(|e| {
            ServerError::param(
                "response_format",
                format!("this model cannot do constrained decoding: {e}"),
            )
        })
    }

    /// `spec` with the vocabulary, after compiling it once.
    fn checked(&self, spec: JsonSpec) -> Result<(JsonSpec, Arc<TokenVocab>)> {
        let vocab = self.vocab()?;
        JsonProcessor::new(&spec, vocab.clone(), self.stop_ids.clone())?;
        Ok((spec, vocab))
    }

    /// The first of `schemas` that compiles.
    fn first_valid(&self, schemas: &[Value]) -> Result<(JsonSpec, Arc<TokenVocab>)> {
        let mut last = None;
        for schema in schemas {
            match self.checked(JsonSpec::Schema(schema.clone())) {
                Ok(ok) => return Ok(ok),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ServerError::param("tools", "no tool to call")))
    }
}

impl Constraint {
    /// A fresh processor for one choice, or none for free text.
    pub fn processor(&self) -> Result<Option<Box<dyn LogitsProcessor>>> {
        match &self.spec {
            None => Ok(None),
            Some((spec, vocab)) => {
                let p = JsonProcessor::new(spec, vocab.clone(), self.stop_ids.clone())?;
                Ok(Some(Box::new(p)))
            }
        }
    }
}
