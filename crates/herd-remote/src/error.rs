//! The one error type of this crate.

/// What can go wrong talking to a remote teacher.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The base URL is not an `http://` or `https://` URL.
    #[error("teacher URL `{0}` must start with http:// or https://")]
    BadUrl(String),
    /// The server refused the API key (HTTP 401 or 403).
    #[error(
        "the teacher at {url} refused the API key (HTTP {status}){hint}: {message}",
        hint = if *.key_given { "" } else { "; no key was sent" }
    )]
    Unauthorized {
        /// The base URL.
        url: String,
        /// 401 or 403.
        status: u16,
        /// Whether a key was sent at all.
        key_given: bool,
        /// The server's own words.
        message: String,
    },
    /// The requested model is not served there.
    #[error("the teacher at {url} does not serve model `{wanted}`; it serves: {available}")]
    UnknownModel {
        /// The base URL.
        url: String,
        /// The model asked for.
        wanted: String,
        /// What `/v1/models` lists, comma-separated.
        available: String,
    },
    /// No model was named and the server lists several (or none).
    #[error("the teacher at {url} serves {available:?}: name one with --teacher-model")]
    AmbiguousModel {
        /// The base URL.
        url: String,
        /// What `/v1/models` lists.
        available: Vec<String>,
    },
    /// A request failed for good: a status that retrying cannot fix.
    #[error("{endpoint}: HTTP {status}: {message}")]
    Http {
        /// The path, e.g. `/v1/chat/completions`.
        endpoint: String,
        /// The status code.
        status: u16,
        /// The server's error message (or body).
        message: String,
    },
    /// The network or the server kept failing after every retry.
    #[error("{endpoint}: gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// The path.
        endpoint: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The request budget is spent.
    #[error("the request budget of {limit} requests is spent (raise --max-requests to go on; finished work is kept)")]
    BudgetExhausted {
        /// The budget.
        limit: u64,
    },
    /// The server answered with JSON of an unexpected shape.
    #[error("{endpoint}: unexpected response: {problem}")]
    BadResponse {
        /// The path.
        endpoint: String,
        /// What was wrong.
        problem: String,
    },
    /// The teacher's tokenizer differs from the local one.
    #[error(
        "the teacher's tokenizer differs from the local tokenizer: {detail}. Distillation \
         needs both sides to use the same vocabulary: use a student (or --tokenizer) with the \
         teacher's tokenizer, or a teacher that uses the student's"
    )]
    TokenizerMismatch {
        /// Where the two first disagree.
        detail: String,
    },
    /// The local tokenizer failed.
    #[error(transparent)]
    Tokenizer(#[from] herd_tokenizer::TokenizerError),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, RemoteError>;
