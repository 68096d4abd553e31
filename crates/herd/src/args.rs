//! Command-line flags: the raw, clap-parsed layer. Validation into library
//! types (sampling parameters, model sources) happens in `load`.

use std::path::PathBuf;

use herd_model::FileType;

use clap::{Args, Parser, Subcommand};

/// herd: run, fine-tune and serve Llama-family models.
#[derive(Debug, Parser)]
#[command(name = "herd", version, about)]
pub struct Cli {
    /// Worker threads for matrix kernels and tensor ops (default: all cores).
    #[arg(long, global = true, env = "HERD_THREADS")]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Continue a prompt, streaming tokens to stdout and speed to stderr.
    Generate(GenerateArgs),
    /// Interactive multi-turn chat in the Llama 3 chat format.
    Chat(ChatArgs),
    /// Describe a model: architecture, parameters, dtype, memory, context.
    Info(InfoArgs),
    /// Write a model as a GGUF file (llama.cpp, Ollama, LM Studio), quantized.
    Quantize(QuantizeArgs),
    /// Plan tensor × pipeline parallelism for a model on a cluster.
    Plan(crate::plan::PlanArgs),
    /// Training: fine-tune (LoRA or full), train from scratch, merge adapters.
    #[command(flatten)]
    Train(crate::train::TrainCommand),
    /// Generate a training corpus (the embedded shop's support dialogues).
    Data(crate::data::DataArgs),
    /// Train a tokenizer for herd's own small models.
    Tokenizer(crate::tokenizer::TokenizerArgs),
    /// Serve the model over an OpenAI-compatible HTTP API, with a web chat page.
    Serve(crate::serve::ServeArgs),
    /// Score a model on the shop corpus's test split (exact match, tool calls, perplexity).
    Eval(crate::eval::EvalArgs),
    /// Distillation: teacher caches and student training.
    #[command(flatten)]
    Distill(crate::distill::DistillCommand),
    /// Synthetic training data from a teacher (local, or any OpenAI-compatible endpoint).
    GenerateData(Box<crate::gendata::GenerateDataArgs>),
    /// Cut a smaller model out of this one (Minitron-style pruning of layers,
    /// KV heads, MLP and embedding channels ranked on calibration data).
    Prune(crate::prune::PruneArgs),
    /// Agents: create one from a template, chat with it, manage its conversations.
    Agent(crate::agent::AgentArgs),
}

/// Where the model comes from.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// A Hugging Face Llama directory (config.json, *.safetensors,
    /// tokenizer.json) or a llama.cpp GGUF file. Default: the small teacher
    /// embedded in this binary; `embedded-student` picks its embedded
    /// distilled student.
    #[arg(long, short = 'm', env = "HERD_MODEL")]
    pub model: Option<PathBuf>,
    /// Quantize the weights in memory at load, as `herd quantize --type`
    /// would (f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k).
    #[arg(long, value_name = "TYPE", value_parser = parse_file_type)]
    pub quantize: Option<FileType>,
    /// A LoRA adapter directory in PEFT's layout (adapter_config.json,
    /// adapter_model.safetensors), merged into the model at load time.
    #[arg(long)]
    pub lora: Option<PathBuf>,
}

pub fn parse_file_type(s: &str) -> Result<FileType, String> {
    FileType::parse(s)
        .ok_or_else(|| format!("unknown type {s:?}; choose one of {}", FileType::NAMES))
}

/// Sampling flags; unset ones fall back to the model's generation_config.json.
#[derive(Debug, Args)]
pub struct SamplingArgs {
    /// Always pick the most likely token (overrides the model's defaults).
    #[arg(long)]
    pub greedy: bool,
    /// Softmax temperature; 0 means greedy.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Sample only among the k most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Nucleus sampling: the smallest set of tokens with probability ≥ p.
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Drop tokens less likely than min-p × the most likely one.
    #[arg(long)]
    pub min_p: Option<f32>,
    /// Penalise tokens already in the context (1 = off).
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    /// Random seed: the same seed gives the same tokens.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Maximum number of tokens to generate.
    #[arg(long, short = 'n', default_value_t = 256)]
    pub max_tokens: usize,
}

/// `herd generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text to continue.
    #[arg(long, short = 'p')]
    pub prompt: String,
    /// Wrap the prompt as a user turn in the chat format (for instruct models).
    #[arg(long)]
    pub chat: bool,
    /// System prompt (implies --chat).
    #[arg(long)]
    pub system: Option<String>,
    /// Print the generated token ids (space-separated) instead of text, for
    /// scripts that compare engines token by token.
    #[arg(long)]
    pub ids: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub draft: crate::draft::DraftArgs,
    #[command(flatten)]
    pub parallel: crate::parallel::ParallelArgs,
}

/// `herd chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// System prompt for the conversation.
    #[arg(long)]
    pub system: Option<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub draft: crate::draft::DraftArgs,
}

/// `herd info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Context length to size the KV cache for (default: the model's maximum).
    #[arg(long)]
    pub context: Option<usize>,
}

/// `herd quantize`.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Target type: f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k.
    #[arg(long = "type", short = 't')]
    pub file_type: String,
    /// The GGUF file to write (written atomically).
    #[arg(long, short = 'o')]
    pub output: PathBuf,
}
