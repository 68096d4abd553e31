//! The model side of an agent, as a trait: the loop needs only "continue
//! this dialog as the assistant". [`EngineModel`] runs a real model on
//! herd's serving engine (so many conversations share one continuously
//! batched model); tests may script the model side with their own
//! implementation while the tools, database and store stay real.

use std::sync::Arc;

use herd_engine::{EngineHandle, Event, Request};
use herd_tokenizer::{ChatFormat, Message, Tokenizer};

use crate::error::AgentError;

/// Something that writes the assistant's next message.
pub trait ChatModel: Send + Sync {
    /// The assistant's reply to `dialog` (tool prompt already applied), at
    /// most `max_tokens` tokens, decoded without special tokens;
    /// [`AgentError::ContextFull`] when the dialog leaves no room to answer.
    fn complete(&self, dialog: &[Message], max_tokens: usize) -> Result<Completion, AgentError>;
}

/// A model's reply and the tokens it cost (the API's `usage`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Completion {
    /// The reply, decoded without special tokens.
    pub text: String,
    /// Tokens of the dialog the model read.
    pub prompt_tokens: usize,
    /// Tokens it wrote.
    pub completion_tokens: usize,
}

/// A model behind a running [`EngineHandle`], decoding greedily.
#[derive(Clone)]
pub struct EngineModel {
    engine: EngineHandle,
    tokenizer: Arc<Tokenizer>,
    stop_ids: Vec<u32>,
}

impl EngineModel {
    /// Wraps an engine with its model's tokenizer and stop tokens.
    pub fn new(engine: EngineHandle, tokenizer: Arc<Tokenizer>, stop_ids: Vec<u32>) -> Self {
        EngineModel {
            engine,
            tokenizer,
            stop_ids,
        }
    }
}

impl ChatModel for EngineModel {
    fn complete(&self, dialog: &[Message], max_tokens: usize) -> Result<Completion, AgentError> {
        let model = |e: &dyn std::fmt::Display| AgentError::Model(e.to_string());
        let format = ChatFormat::new(&self.tokenizer).map_err(|e| model(&e))?;
        let prompt = format.encode_dialog_prompt(dialog).map_err(|e| model(&e))?;
        let room = self.engine.max_context().saturating_sub(prompt.len());
        if room == 0 {
            return Err(AgentError::ContextFull {
                tokens: prompt.len(),
                context: self.engine.max_context(),
            });
        }
        let prompt_tokens = prompt.len();
        let request = Request::new(prompt, max_tokens.min(room), self.stop_ids.clone());
        let mut stream = self.engine.submit(request).map_err(|e| model(&e))?;
        let mut tokens = Vec::new();
        while let Some(event) = stream.blocking_recv() {
            match event {
                Event::Token { id, .. } => tokens.push(id),
                Event::Failed(message) => return Err(AgentError::Model(message)),
                Event::Finished(_) => break,
                Event::PromptLogprobs(_) => {}
            }
        }
        Ok(Completion {
            text: self
                .tokenizer
                .decode(&tokens, true)
                .map_err(|e| model(&e))?,
            prompt_tokens,
            completion_tokens: tokens.len(),
        })
    }
}
