//! `herd agent`: create an agent from a template, chat with it in the
//! terminal (tool steps shown), and list, show or delete its conversations.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use herd_agent::template::Template;
use herd_agent::{
    Agent, AgentSpec, ChatModel, ConversationStore, EngineModel, Guard, ModelSource, Reply, Step,
};
use herd_engine::{EngineConfig, EngineHandle};

use crate::args::ModelArgs;
use crate::load::{load, stop_ids};

/// The conversation database an agent directory uses unless told otherwise.
pub const CONVERSATIONS_FILE: &str = "conversations.db";

/// `herd agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: AgentCommand,
}

/// What to do with an agent.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Create an agent directory from a template (agent.toml, database).
    New {
        /// The template: shop-support (the embedded shop's support agent).
        #[arg(long, default_value = "shop-support")]
        template: String,
        /// The directory to create.
        dir: PathBuf,
    },
    /// Chat with an agent in the terminal; tool calls are shown as they happen.
    Run {
        /// The agent directory (with agent.toml).
        dir: PathBuf,
        /// Continue this conversation instead of starting a new one.
        #[arg(long)]
        conversation: Option<String>,
        /// The conversation database (default: DIR/conversations.db).
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// List an agent's conversations, or show or delete one.
    Conversations {
        /// The agent directory (with agent.toml).
        dir: PathBuf,
        /// Print this conversation's messages and tool steps.
        #[arg(long, conflicts_with = "delete")]
        show: Option<String>,
        /// Delete this conversation.
        #[arg(long)]
        delete: Option<String>,
        /// The conversation database (default: DIR/conversations.db).
        #[arg(long)]
        db: Option<PathBuf>,
    },
}

pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AgentCommand::New { template, dir } => new(&template, &dir),
        AgentCommand::Run {
            dir,
            conversation,
            db,
        } => chat(&dir, conversation, db),
        AgentCommand::Conversations {
            dir,
            show,
            delete,
            db,
        } => conversations(&dir, show, delete, db),
    }
}

fn new(template: &str, dir: &Path) -> anyhow::Result<ExitCode> {
    let names: Vec<&str> = Template::ALL.iter().map(|(_, n)| *n).collect();
    let template = Template::from_name(template).with_context(|| {
        format!(
            "unknown template {template:?}; choose one of {}",
            names.join(", ")
        )
    })?;
    for path in template.write(dir)? {
        println!("wrote {}", path.display());
    }
    println!("chat with it:  herd agent run {}", dir.display());
    println!("serve it:      herd serve --agents {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// The loaded model of an agent as a [`ChatModel`] on a fresh engine, with
/// the model's name.
pub fn agent_model(source: &ModelSource) -> anyhow::Result<(Arc<dyn ChatModel>, String)> {
    let model = match source {
        ModelSource::Embedded => None,
        ModelSource::Path(path) => Some(path.clone()),
    };
    let loaded = load(&ModelArgs {
        model,
        quantize: None,
        lora: None,
    })?;
    let stops = stop_ids(&loaded);
    let engine = EngineHandle::start(Arc::new(loaded.model), engine_config())?;
    let chat = EngineModel::new(engine, Arc::new(loaded.tokenizer), stops);
    Ok((Arc::new(chat), loaded.name))
}

/// Engine limits for one agent's model in the terminal.
fn engine_config() -> EngineConfig {
    EngineConfig {
        max_num_seqs: 16,
        kv_cache_bytes: 256 << 20,
        block_size: 16,
        max_batch_tokens: 512,
        prefix_caching: true,
    }
}

/// Loads an agent with its own model (and guard model, if configured).
pub fn load_agent(
    spec: AgentSpec,
    model: Arc<dyn ChatModel>,
    store: Arc<ConversationStore>,
) -> anyhow::Result<Agent> {
    let guard = match &spec.guard {
        Some(guard) => {
            let path = spec.dir.join(&guard.model);
            let (model, _) = agent_model(&ModelSource::Path(path))?;
            Some(Guard::new(model, &guard.categories)?)
        }
        None => None,
    };
    let agent = Agent::new(spec, model, store)?;
    Ok(match guard {
        Some(guard) => agent.with_guard(guard),
        None => agent,
    })
}

fn open_store(dir: &Path, db: Option<PathBuf>) -> anyhow::Result<Arc<ConversationStore>> {
    let path = db.unwrap_or_else(|| dir.join(CONVERSATIONS_FILE));
    Ok(Arc::new(ConversationStore::open(&path)?))
}

fn chat(dir: &Path, conversation: Option<String>, db: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let spec = AgentSpec::load(dir)?;
    let store = open_store(dir, db)?;
    if let Some(id) = &conversation {
        if !store.exists(&spec.name, id)? {
            anyhow::bail!("agent {} has no conversation {id:?}", spec.name);
        }
    }
    let (model, model_name) = agent_model(&spec.model)?;
    let agent = load_agent(spec, model, store)?;
    eprintln!(
        "agent {} on {model_name}, tools: {}. Type a message; an empty line or Ctrl-D ends.",
        agent.name(),
        agent.tools().names().join(", ")
    );
    let mut id = conversation;
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        let reply = agent.reply(id.as_deref(), line.trim())?;
        print_reply(&mut out, &reply)?;
        id = Some(reply.conversation_id);
    }
    if let Some(id) = id {
        eprintln!("conversation {id} (continue with --conversation {id})");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_reply(out: &mut impl Write, reply: &Reply) -> std::io::Result<()> {
    for step in &reply.steps {
        writeln!(out, "{}", step_line(step))?;
    }
    writeln!(out, "{}", reply.answer)?;
    out.flush()
}

/// `  [tool] lookup_order({"order_id":1042}) -> ok {"status":...}`.
fn step_line(step: &Step) -> String {
    let outcome = serde_json::to_value(step.outcome).unwrap_or_default();
    format!(
        "  [tool] {}({}) -> {} {}",
        step.tool,
        step.arguments,
        outcome.as_str().unwrap_or("?"),
        step.result
    )
}

fn conversations(
    dir: &Path,
    show: Option<String>,
    delete: Option<String>,
    db: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let spec = AgentSpec::load(dir)?;
    let store = open_store(dir, db)?;
    let name = &spec.name;
    if let Some(id) = delete {
        if !store.delete(name, &id)? {
            anyhow::bail!("agent {name} has no conversation {id:?}");
        }
        println!("deleted {id}");
    } else if let Some(id) = show {
        let conversation = store.read(name, &id)?;
        for message in &conversation.messages {
            println!("{}", message_line(message));
        }
        println!("-- {} tool steps", conversation.steps.len());
        for step in &conversation.steps {
            println!("{}", step_line(step));
        }
    } else {
        let list = store.list(name)?;
        println!(
            "{:<20} {:>8} {:>12}  first message",
            "id", "messages", "updated"
        );
        for c in &list {
            println!(
                "{:<20} {:>8} {:>12}  {}",
                c.id, c.messages, c.updated, c.title
            );
        }
        println!("{} conversations", list.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// One stored message as `role: text` (tool calls as `name(arguments)`).
fn message_line(message: &serde_json::Value) -> String {
    let role = message["role"].as_str().unwrap_or("?");
    match message["tool_calls"].as_array() {
        Some(calls) => calls
            .iter()
            .map(|c| {
                format!(
                    "{role}: call {}({})",
                    c["function"]["name"].as_str().unwrap_or("?"),
                    c["function"]["arguments"].as_str().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        None => format!("{role}: {}", message["content"].as_str().unwrap_or("")),
    }
}

/// The agents of `herd serve --agents`: they share the served model's
/// engine (so their conversations are batched with all other requests)
/// and one conversation database.
pub fn serve_agents(
    dirs: &[PathBuf],
    conversations: Option<PathBuf>,
    served: &ModelArgs,
    engine: &EngineHandle,
    stops: &[u32],
) -> anyhow::Result<Vec<Arc<Agent>>> {
    let Some(first) = dirs.first() else {
        return Ok(Vec::new());
    };
    let store = open_store(first, conversations)?;
    let tokenizer = Arc::new(crate::load::tokenizer(served)?);
    let model: Arc<dyn ChatModel> =
        Arc::new(EngineModel::new(engine.clone(), tokenizer, stops.to_vec()));
    dirs.iter()
        .map(|dir| {
            let spec = AgentSpec::load(dir)?;
            check_same_model(&spec, served)?;
            Ok(Arc::new(load_agent(spec, model.clone(), store.clone())?))
        })
        .collect()
}

/// Agents run on the served model: their `model` must name it.
fn check_same_model(spec: &AgentSpec, served: &ModelArgs) -> anyhow::Result<()> {
    let same = match (&spec.model, &served.model) {
        (ModelSource::Embedded, None) => true,
        (ModelSource::Path(a), Some(b)) => {
            std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok()
        }
        _ => false,
    };
    if same {
        Ok(())
    } else {
        anyhow::bail!(
            "agent {} runs on {:?} but the server serves {}; serve its model with --model, or change `model` in its agent.toml",
            spec.name,
            spec.model,
            served.model.as_deref().map_or("the embedded model".to_owned(), |p| p.display().to_string())
        )
    }
}
