//! SQL tools: one declared, parameterised, read-only query on a SQLite file.
//!
//! Three locks keep a SQL tool from writing or running anything but its
//! query: the database is opened with `SQLITE_OPEN_READ_ONLY` (SQLite
//! itself refuses every write); the query is prepared once at load and must
//! be a single statement that SQLite reports as read-only and that returns
//! columns (a `SELECT`/`WITH`); and the model's arguments are *bound* to the
//! query's `:name` parameters, never spliced into its text, so an argument
//! like `1; DROP TABLE orders` is just a value that matches nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Map, Value};

use super::Failure;
use crate::config::{RowMode, ToolFile};
use crate::error::AgentError;

/// Most rows a `rows = "all"` query returns.
const MAX_ROWS: usize = 50;

/// A prepared read-only query tool.
#[derive(Debug)]
pub struct SqlTool {
    name: String,
    connection: Mutex<Connection>,
    query: String,
    /// `:name` parameters of the query, in index order (1-based in SQLite).
    parameters: Vec<String>,
    rows: RowMode,
    not_found: Option<String>,
    json_columns: Vec<String>,
    omit_nulls: bool,
}

impl SqlTool {
    /// Opens the database read-only and checks the query.
    pub(crate) fn open(agent: &str, file: &ToolFile) -> Result<SqlTool, AgentError> {
        let ToolFile::Sql {
            name,
            database,
            query,
            rows,
            not_found,
            json_columns,
            omit_nulls,
            ..
        } = file
        else {
            return Err(AgentError::definition(agent, "not a SQL tool"));
        };
        let bad =
            |problem: String| AgentError::definition(agent, format!("tool {name:?}: {problem}"));
        let connection = open_read_only(database).map_err(|e| bad(e.to_string()))?;
        let parameters = check_query(&connection, query).map_err(bad)?;
        Ok(SqlTool {
            name: name.clone(),
            connection: Mutex::new(connection),
            query: query.clone(),
            parameters,
            rows: *rows,
            not_found: not_found.clone(),
            json_columns: json_columns.clone(),
            omit_nulls: *omit_nulls,
        })
    }

    /// Runs the query with `arguments` (already valid under the schema).
    pub(crate) fn run(&self, arguments: &Value) -> Result<Value, Failure> {
        let values = self.bind_values(arguments)?;
        let connection = self
            .connection
            .lock()
            .map_err(|_| Failure::error("the database connection is unusable after a panic"))?;
        let mut statement = connection
            .prepare_cached(&self.query)
            .map_err(|e| Failure::error(format!("{}: {e}", self.name)))?;
        let columns: Vec<String> = statement
            .column_names()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut rows = statement
            .query(rusqlite::params_from_iter(values))
            .map_err(|e| Failure::error(format!("{}: {e}", self.name)))?;
        let mut found = Vec::new();
        let limit = match self.rows {
            RowMode::One => 1,
            RowMode::All => MAX_ROWS,
        };
        while found.len() < limit {
            match rows.next() {
                Ok(Some(row)) => found.push(self.row_object(row, &columns)?),
                Ok(None) => break,
                Err(e) => return Err(Failure::error(format!("{}: {e}", self.name))),
            }
        }
        Ok(match self.rows {
            RowMode::All => json!({ "rows": found }),
            RowMode::One => match found.pop() {
                Some(row) => row,
                None => json!({ "error": self.not_found_text(arguments) }),
            },
        })
    }

    /// The query's parameters, in order, from the arguments.
    fn bind_values(&self, arguments: &Value) -> Result<Vec<rusqlite::types::Value>, Failure> {
        use rusqlite::types::Value as Sql;
        self.parameters
            .iter()
            .map(|name| match arguments.get(name) {
                None | Some(Value::Null) => Ok(Sql::Null),
                Some(Value::Bool(b)) => Ok(Sql::Integer(i64::from(*b))),
                Some(Value::Number(n)) => match n.as_i64() {
                    Some(i) => Ok(Sql::Integer(i)),
                    None => Ok(Sql::Real(n.as_f64().unwrap_or(f64::NAN))),
                },
                Some(Value::String(s)) => Ok(Sql::Text(s.clone())),
                Some(other) => Err(Failure::refused(format!(
                    "argument {name:?} must be a number, string or boolean, not {other}"
                ))),
            })
            .collect()
    }

    fn row_object(&self, row: &rusqlite::Row<'_>, columns: &[String]) -> Result<Value, Failure> {
        let mut object = Map::new();
        for (i, column) in columns.iter().enumerate() {
            let cell = row
                .get_ref(i)
                .map_err(|e| Failure::error(format!("{}: {e}", self.name)))?;
            let value = match cell {
                ValueRef::Null if self.omit_nulls => continue,
                ValueRef::Null => Value::Null,
                ValueRef::Integer(i) => json!(i),
                ValueRef::Real(f) => json!(f),
                ValueRef::Text(bytes) => {
                    let text = String::from_utf8_lossy(bytes);
                    if self.json_columns.iter().any(|c| c == column) {
                        serde_json::from_str(&text).map_err(|e| {
                            Failure::error(format!(
                                "{}: column {column} is not JSON: {e}",
                                self.name
                            ))
                        })?
                    } else {
                        Value::String(text.into_owned())
                    }
                }
                ValueRef::Blob(_) => {
                    return Err(Failure::error(format!(
                        "{}: column {column} is binary; select text or numbers",
                        self.name
                    )))
                }
            };
            object.insert(column.clone(), value);
        }
        Ok(Value::Object(object))
    }

    /// `not_found` with each `{arg}` replaced by the argument's JSON.
    fn not_found_text(&self, arguments: &Value) -> String {
        let template = self
            .not_found
            .clone()
            .unwrap_or_else(|| format!("{} found nothing", self.name));
        let values: BTreeMap<&String, &Value> = arguments
            .as_object()
            .map(|o| o.iter().collect())
            .unwrap_or_default();
        values.iter().fold(template, |text, (name, value)| {
            text.replace(&format!("{{{name}}}"), &value.to_string())
        })
    }
}

/// Opens `path` so that SQLite refuses every write.
fn open_read_only(path: &Path) -> Result<Connection, AgentError> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(AgentError::sqlite(format!(
        "opening {} read-only",
        path.display()
    )))
}

/// Checks that `query` is one read-only statement returning columns and
/// that every parameter is named; returns the names without their `:`.
fn check_query(connection: &Connection, query: &str) -> Result<Vec<String>, String> {
    let statement = connection
        .prepare(query)
        .map_err(|e| format!("query does not prepare: {e}"))?;
    if !statement.readonly() || statement.column_count() == 0 {
        return Err("query must be a single read-only SELECT".into());
    }
    let head = query.trim_start().to_ascii_uppercase();
    if !(head.starts_with("SELECT") || head.starts_with("WITH")) {
        return Err("query must start with SELECT or WITH".into());
    }
    (1..=statement.parameter_count())
        .map(|i| match statement.parameter_name(i) {
            Some(name) if name.starts_with(':') => Ok(name[1..].to_owned()),
            other => Err(format!(
                "parameter {i} ({}) must be named like :order_id",
                other.unwrap_or("?")
            )),
        })
        .collect()
}
