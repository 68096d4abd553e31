//! agent.toml: built-in tools work through the tool box, and every kind of
//! bad definition is refused at load with a message that names the problem
//! (a write query, two statements, positional parameters, https, an
//! unsupported schema keyword, an unknown tool kind or field, zero limits,
//! duplicate names).

use std::path::Path;

use herd_agent::template::write_shop_database;
use herd_agent::{AgentSpec, StepOutcome, ToolBox};
use herd_shop::{Shop, DEFAULT_SEED};
use serde_json::{json, Value};

const HEAD: &str = "name = \"helper\"\ninstructions = \"Help.\"\n";

fn sql_tool(query: &str) -> String {
    format!(
        "[[tools]]\nkind = \"sql\"\nname = \"q\"\ndescription = \"d\"\ndatabase = \"shop.db\"\nquery = \"{query}\"\n\
         parameters = {{ type = \"object\", properties = {{ order_id = {{ type = \"integer\" }} }} }}\n"
    )
}

fn load(dir: &Path, text: &str) -> Result<ToolBox, String> {
    std::fs::write(dir.join("agent.toml"), text).unwrap();
    let spec = AgentSpec::load(dir).map_err(|e| e.to_string())?;
    ToolBox::new(&spec.name, &spec.tools).map_err(|e| e.to_string())
}

#[test]
fn built_in_tools_run_through_the_tool_box() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{HEAD}[[tools]]\nkind = \"calculator\"\n\n[[tools]]\nkind = \"datetime\"\nname = \"now\"\n");
    let tools = load(dir.path(), &text).unwrap();
    assert_eq!(tools.names(), ["calculator", "now"]);
    let sum = tools.call("calculator", &json!({"expression": "(24.90 * 3) - 5"}));
    let value: Value = serde_json::from_str(&sum.text).unwrap();
    assert!(
        (value["result"].as_f64().unwrap() - 69.7).abs() < 1e-9,
        "{}",
        sum.text
    );
    let bad = tools.call("calculator", &json!({"expression": "1 / 0"}));
    assert_eq!(bad.outcome, StepOutcome::Error);
    let now: Value = serde_json::from_str(&tools.call("now", &json!({})).text).unwrap();
    let date = now["date"].as_str().unwrap();
    assert!(date.len() == 10 && date.starts_with("20"), "{now}");
}

#[test]
fn bad_definitions_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    write_shop_database(&Shop::generate(DEFAULT_SEED), &dir.path().join("shop.db")).unwrap();
    let ok = load(
        dir.path(),
        &format!(
            "{HEAD}{}",
            sql_tool("SELECT id FROM orders WHERE id = :order_id")
        ),
    );
    assert!(ok.is_ok(), "{ok:?}");
    let http = |url: &str| {
        format!("{HEAD}[[tools]]\nkind = \"http\"\nname = \"h\"\ndescription = \"d\"\nurl = \"{url}\"\nparameters = {{ type = \"object\" }}\n")
    };
    let cases = [
        (
            format!(
                "{HEAD}{}",
                sql_tool("DELETE FROM orders WHERE id = :order_id")
            ),
            "single read-only SELECT",
        ),
        (
            format!("{HEAD}{}", sql_tool("SELECT 1; DELETE FROM orders")),
            "query does not prepare",
        ),
        (
            format!("{HEAD}{}", sql_tool("SELECT id FROM orders WHERE id = ?")),
            "must be named",
        ),
        (
            format!("{HEAD}{}", sql_tool("SELECT id FROM nowhere")),
            "no such table",
        ),
        (http("https://example.com/api"), "https is not supported"),
        (http("ftp://example.com/"), "must start with http://"),
        (http("http://user@example.com/"), "user name"),
        (
            format!("{HEAD}[[tools]]\nkind = \"shell\"\nname = \"sh\"\n"),
            "unknown variant `shell`",
        ),
        (
            format!("{HEAD}colour = \"blue\"\n"),
            "unknown field `colour`",
        ),
        (
            format!("{HEAD}[limits]\nmax_steps = 0\nmax_tokens = 10\n"),
            "at least 1",
        ),
        (
            format!("{HEAD}[[tools]]\nkind = \"calculator\"\n[[tools]]\nkind = \"calculator\"\n"),
            "two tools are named \"calculator\"",
        ),
        (
            format!(
                "{HEAD}{}",
                sql_tool("SELECT id FROM orders WHERE id = :order_id")
            )
            .replace("type = \"integer\"", "type = \"integer\", minimum = 1"),
            "minimum",
        ),
        ("name = \"x\"\n".to_owned(), "missing field `instructions`"),
    ];
    for (text, want) in cases {
        let err = load(dir.path(), &text).expect_err(&text);
        assert!(err.contains(want), "{text}\n=> {err}");
    }
}
