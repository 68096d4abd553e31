//! Conversations in SQLite: one database file per deployment, shared by all
//! its agents, surviving restarts.
//!
//! A conversation is a row in `conversations` (id, agent, times); its
//! messages are rows of `messages` in OpenAI's chat shape (the same JSON the
//! training corpus holds, so replaying them renders the prompt the model
//! was trained on); its tool steps are rows of `steps`. Each agent sees only
//! its own conversations. The database is in WAL mode with a busy timeout,
//! so a CLI can list conversations while a server writes; inside one
//! process a mutex serialises access to the one connection, and every
//! append is one transaction.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::Value;

use crate::error::AgentError;
use crate::Step;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    conversation TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (conversation, seq)
);
CREATE TABLE IF NOT EXISTS steps (
    conversation TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    step TEXT NOT NULL,
    PRIMARY KEY (conversation, seq)
);
";

/// One line of a conversation list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConversationSummary {
    /// The id a client continues it with.
    pub id: String,
    /// Unix seconds of creation.
    pub created: u64,
    /// Unix seconds of the last message.
    pub updated: u64,
    /// Messages stored (user, assistant, tool).
    pub messages: usize,
    /// The first user message, shortened.
    pub title: String,
}

/// A whole conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conversation {
    /// Its id.
    pub id: String,
    /// OpenAI chat messages, oldest first (no system prompt).
    pub messages: Vec<Value>,
    /// Every tool step, oldest first.
    pub steps: Vec<Step>,
}

/// The conversation database.
#[derive(Debug)]
pub struct ConversationStore {
    path: PathBuf,
    connection: Mutex<Connection>,
}

impl ConversationStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<ConversationStore, AgentError> {
        let what = format!("conversation store {}", path.display());
        let connection = Connection::open(path).map_err(AgentError::sqlite(what.clone()))?;
        connection
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(AgentError::sqlite(what.clone()))?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(AgentError::sqlite(what.clone()))?;
        connection
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(AgentError::sqlite(what.clone()))?;
        connection
            .execute_batch(SCHEMA)
            .map_err(AgentError::sqlite(what))?;
        Ok(ConversationStore {
            path: path.to_owned(),
            connection: Mutex::new(connection),
        })
    }

    /// Where the database is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, AgentError> {
        self.connection
            .lock()
            .map_err(|_| AgentError::Store("a thread panicked while holding the connection".into()))
    }

    /// Starts a conversation of `agent` and returns its new id.
    pub fn create(&self, agent: &str) -> Result<String, AgentError> {
        let id = new_id();
        let now = unix_now();
        self.lock()?
            .execute(
                "INSERT INTO conversations (id, agent, created, updated) VALUES (?1, ?2, ?3, ?3)",
                params![id, agent, now],
            )
            .map_err(AgentError::sqlite("creating a conversation"))?;
        Ok(id)
    }

    /// Whether `agent` has a conversation `id`.
    pub fn exists(&self, agent: &str, id: &str) -> Result<bool, AgentError> {
        self.lock()?
            .query_row(
                "SELECT 1 FROM conversations WHERE id = ?1 AND agent = ?2",
                params![id, agent],
                |_| Ok(()),
            )
            .optional()
            .map(|row| row.is_some())
            .map_err(AgentError::sqlite("looking up a conversation"))
    }

    /// Appends messages and steps to a conversation in one transaction.
    pub fn append(
        &self,
        agent: &str,
        id: &str,
        messages: &[Value],
        steps: &[Step],
    ) -> Result<(), AgentError> {
        let mut connection = self.lock()?;
        let tx = connection
            .transaction()
            .map_err(AgentError::sqlite("appending to a conversation"))?;
        let updated = tx
            .execute(
                "UPDATE conversations SET updated = ?1 WHERE id = ?2 AND agent = ?3",
                params![unix_now(), id, agent],
            )
            .map_err(AgentError::sqlite("appending to a conversation"))?;
        if updated == 0 {
            return Err(AgentError::NoConversation(id.to_owned()));
        }
        for (table, rows) in [
            (
                "messages",
                messages.iter().map(Value::to_string).collect::<Vec<_>>(),
            ),
            (
                "steps",
                steps
                    .iter()
                    .map(|s| serde_json::to_string(s).unwrap_or_default())
                    .collect(),
            ),
        ] {
            let column = if table == "messages" {
                "message"
            } else {
                "step"
            };
            let sql = format!(
                "INSERT INTO {table} (conversation, seq, {column}) \
                 VALUES (?1, (SELECT COALESCE(MAX(seq), -1) + 1 FROM {table} WHERE conversation = ?1), ?2)"
            );
            for row in rows {
                tx.execute(&sql, params![id, row])
                    .map_err(AgentError::sqlite("appending to a conversation"))?;
            }
        }
        tx.commit()
            .map_err(AgentError::sqlite("appending to a conversation"))
    }

    /// The messages and steps of conversation `id` of `agent`.
    pub fn read(&self, agent: &str, id: &str) -> Result<Conversation, AgentError> {
        if !self.exists(agent, id)? {
            return Err(AgentError::NoConversation(id.to_owned()));
        }
        let connection = self.lock()?;
        let column = |table: &str, column: &str| -> Result<Vec<String>, AgentError> {
            let mut statement = connection
                .prepare(&format!(
                    "SELECT {column} FROM {table} WHERE conversation = ?1 ORDER BY seq"
                ))
                .map_err(AgentError::sqlite("reading a conversation"))?;
            let rows = statement
                .query_map([id], |row| row.get::<_, String>(0))
                .map_err(AgentError::sqlite("reading a conversation"))?;
            rows.collect::<Result<_, _>>()
                .map_err(AgentError::sqlite("reading a conversation"))
        };
        let corrupt =
            |e: serde_json::Error| AgentError::Store(format!("a stored row does not parse: {e}"));
        let messages = column("messages", "message")?
            .iter()
            .map(|m| serde_json::from_str(m).map_err(corrupt))
            .collect::<Result<_, _>>()?;
        let steps = column("steps", "step")?
            .iter()
            .map(|s| serde_json::from_str(s).map_err(corrupt))
            .collect::<Result<_, _>>()?;
        Ok(Conversation {
            id: id.to_owned(),
            messages,
            steps,
        })
    }

    /// The conversations of `agent`, most recent first.
    pub fn list(&self, agent: &str) -> Result<Vec<ConversationSummary>, AgentError> {
        let connection = self.lock()?;
        let mut statement = connection
            .prepare(
                "SELECT c.id, c.created, c.updated,
                        (SELECT COUNT(*) FROM messages m WHERE m.conversation = c.id),
                        (SELECT m.message FROM messages m WHERE m.conversation = c.id ORDER BY m.seq LIMIT 1)
                 FROM conversations c WHERE c.agent = ?1 ORDER BY c.updated DESC, c.created DESC, c.id",
            )
            .map_err(AgentError::sqlite("listing conversations"))?;
        let rows = statement
            .query_map([agent], |row| {
                let first: Option<String> = row.get(4)?;
                Ok(ConversationSummary {
                    id: row.get(0)?,
                    created: row.get(1)?,
                    updated: row.get(2)?,
                    messages: row.get::<_, i64>(3)? as usize,
                    title: first.map(|m| title(&m)).unwrap_or_default(),
                })
            })
            .map_err(AgentError::sqlite("listing conversations"))?;
        rows.collect::<Result<_, _>>()
            .map_err(AgentError::sqlite("listing conversations"))
    }

    /// Deletes a conversation with its messages and steps; `false` if there
    /// was none.
    pub fn delete(&self, agent: &str, id: &str) -> Result<bool, AgentError> {
        self.lock()?
            .execute(
                "DELETE FROM conversations WHERE id = ?1 AND agent = ?2",
                params![id, agent],
            )
            .map(|n| n > 0)
            .map_err(AgentError::sqlite("deleting a conversation"))
    }
}

/// Checks a client-given conversation id: 1-64 of `[A-Za-z0-9_-]`.
pub fn check_id(id: &str) -> Result<(), AgentError> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(AgentError::BadConversationId(id.to_owned()))
    }
}

/// The first 60 characters of a stored message's content.
fn title(message: &str) -> String {
    let value: Value = serde_json::from_str(message).unwrap_or_default();
    let content = value["content"].as_str().unwrap_or_default();
    let short: String = content.chars().take(60).collect();
    short.replace('\n', " ")
}

/// `c-` and 16 random hex digits (the standard library's per-process
/// random hash keys, mixed with the clock and a counter).
fn new_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("c-{:016x}", hasher.finish())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
