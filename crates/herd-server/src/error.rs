//! The one error type of this crate, and the one place where errors become
//! HTTP status codes and OpenAI's error body:
//!
//! ```json
//! {"error": {"message": "...", "type": "invalid_request_error", "param": "max_tokens", "code": null}}
//! ```

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// What can go wrong while serving.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The body is not JSON, or not the JSON the endpoint takes.
    #[error("invalid request body: {0}")]
    InvalidJson(String),
    /// A field has a value the server cannot honour.
    #[error("{message}")]
    InvalidParam {
        /// The field, as OpenAI names it.
        param: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A request the model cannot fit in its context.
    #[error("{0}")]
    ContextLength(String),
    /// The `model` field names a model this server does not serve.
    #[error("the model `{0}` does not exist; GET /v1/models lists the served model")]
    ModelNotFound(String),
    /// Missing or wrong `Authorization: Bearer` key.
    #[error("incorrect or missing API key; send `Authorization: Bearer <key>`")]
    Unauthorized,
    /// No route for this path.
    #[error("no route for {0}")]
    NotFound(String),
    /// The engine refused the request (validation) or failed on it.
    #[error(transparent)]
    Engine(#[from] herd_engine::EngineError),
    /// The dialog cannot be encoded (e.g. a field a role cannot carry).
    #[error(transparent)]
    Tokenizer(#[from] herd_tokenizer::TokenizerError),
    /// A JSON schema (of `response_format` or a tool) that constrained
    /// decoding cannot enforce.
    #[error(transparent)]
    Constraint(#[from] herd_structured::StructuredError),
    /// Generation failed after it started.
    #[error("generation failed: {0}")]
    Generation(String),
    /// An agent could not answer (unknown conversation, store or model failure).
    #[error(transparent)]
    Agent(#[from] herd_agent::AgentError),
    /// Binding the address or serving the socket failed.
    #[error("server I/O on {addr}: {source}")]
    Io {
        /// The address served.
        addr: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, ServerError>;

impl ServerError {
    /// A bad value for `param`.
    pub(crate) fn param(param: &'static str, message: impl Into<String>) -> Self {
        ServerError::InvalidParam {
            param,
            message: message.into(),
        }
    }

    /// HTTP status, OpenAI error type, param and code.
    fn classify(
        &self,
    ) -> (
        StatusCode,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
    ) {
        use herd_engine::EngineError as E;
        use herd_structured::StructuredError as S;
        use herd_tokenizer::TokenizerError as T;
        let invalid = "invalid_request_error";
        match self {
            ServerError::InvalidJson(_) => (StatusCode::BAD_REQUEST, invalid, None, None),
            ServerError::InvalidParam { param, .. } => {
                (StatusCode::BAD_REQUEST, invalid, Some(*param), None)
            }
            ServerError::ContextLength(_) => (
                StatusCode::BAD_REQUEST,
                invalid,
                Some("messages"),
                Some("context_length_exceeded"),
            ),
            ServerError::ModelNotFound(_) => (
                StatusCode::NOT_FOUND,
                invalid,
                Some("model"),
                Some("model_not_found"),
            ),
            ServerError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                invalid,
                None,
                Some("invalid_api_key"),
            ),
            ServerError::NotFound(_) => (StatusCode::NOT_FOUND, invalid, None, None),
            ServerError::Engine(E::InvalidSampling(_) | E::InvalidRequest(_)) => {
                (StatusCode::BAD_REQUEST, invalid, None, None)
            }
            ServerError::Constraint(S::NoStopToken) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                None,
                None,
            ),
            ServerError::Constraint(_) => (
                StatusCode::BAD_REQUEST,
                invalid,
                Some("response_format"),
                None,
            ),
            ServerError::Tokenizer(T::InvalidMessage { .. }) => {
                (StatusCode::BAD_REQUEST, invalid, Some("messages"), None)
            }
            ServerError::Agent(herd_agent::AgentError::NoConversation(_)) => (
                StatusCode::NOT_FOUND,
                invalid,
                Some("conversation_id"),
                Some("conversation_not_found"),
            ),
            ServerError::Agent(herd_agent::AgentError::ContextFull { .. }) => (
                StatusCode::BAD_REQUEST,
                invalid,
                Some("messages"),
                Some("context_length_exceeded"),
            ),
            ServerError::Agent(herd_agent::AgentError::BadConversationId(_)) => (
                StatusCode::BAD_REQUEST,
                invalid,
                Some("conversation_id"),
                None,
            ),
            ServerError::Engine(_)
            | ServerError::Agent(_)
            | ServerError::Tokenizer(_)
            | ServerError::Generation(_)
            | ServerError::Io { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                None,
                None,
            ),
        }
    }

    /// The OpenAI error object (also sent inside a stream that fails).
    pub(crate) fn body(&self) -> Value {
        let (_, kind, param, code) = self.classify();
        json!({"error": {"message": self.to_string(), "type": kind, "param": param, "code": code}})
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let (status, ..) = self.classify();
        (status, Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_bodies() {
        let cases = [
            (ServerError::InvalidJson("eof".into()), 400, Value::Null),
            (
                ServerError::param("n", "n must be at least 1"),
                400,
                json!("n"),
            ),
            (
                ServerError::ModelNotFound("gpt-9".into()),
                404,
                json!("model"),
            ),
            (ServerError::Unauthorized, 401, Value::Null),
            (
                ServerError::Engine(herd_engine::EngineError::InvalidSampling("top-p".into())),
                400,
                Value::Null,
            ),
            (ServerError::Generation("boom".into()), 500, Value::Null),
        ];
        for (error, status, param) in cases {
            let body = error.body();
            assert_eq!(error.classify().0.as_u16(), status, "{error}");
            assert_eq!(body["error"]["param"], param, "{error}");
            assert_eq!(body["error"]["message"], error.to_string());
            assert!(body["error"]["type"].is_string());
            assert!(body["error"].get("code").is_some());
        }
    }
}
