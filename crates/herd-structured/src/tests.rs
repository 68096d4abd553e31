//! The automaton on byte strings, and schema errors.

use serde_json::{json, Value};

use crate::automaton::State;
use crate::error::{SchemaProblem, StructuredError};
use crate::schema::compile;
use crate::JsonSpec;

/// How far the automaton gets through `text`.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// A complete document.
    Complete,
    /// A valid prefix of a document.
    Prefix,
    /// Refused at this byte offset.
    RefusedAt(usize),
}

fn run(spec: &JsonSpec, text: &str) -> Outcome {
    let g = compile(spec).expect("schema compiles");
    let mut state = State::new(g.root);
    for (i, &b) in text.as_bytes().iter().enumerate() {
        if !state.advance(&g, b) {
            return Outcome::RefusedAt(i);
        }
    }
    if state.complete(&g) {
        Outcome::Complete
    } else {
        Outcome::Prefix
    }
}

fn schema(value: Value) -> JsonSpec {
    JsonSpec::Schema(value)
}

fn problem(value: Value) -> (String, SchemaProblem) {
    match compile(&schema(value)) {
        Err(StructuredError::Schema { path, problem }) => (path, problem),
        other => panic!("expected a schema error, got {other:?}"),
    }
}

#[test]
fn any_object_accepts_json_objects_only() {
    let spec = JsonSpec::AnyObject;
    let doc = r#" {"a": [1, -2.5e+3, true, null, {"b": "x\"y\u00e9"}], "": {}}"#;
    assert_eq!(run(&spec, doc), Outcome::Complete);
    assert_eq!(run(&spec, r#"{"a":1"#), Outcome::Prefix);
    assert_eq!(run(&spec, "[1]"), Outcome::RefusedAt(0));
    assert_eq!(run(&spec, r#"{"a":01}"#), Outcome::RefusedAt(6));
    assert_eq!(run(&spec, r#"{"a":1,}"#), Outcome::RefusedAt(7));
    assert_eq!(run(&spec, r#"{"a":tru}"#), Outcome::RefusedAt(8));
    assert_eq!(
        run(&spec, "{} "),
        Outcome::RefusedAt(2),
        "nothing after the end"
    );
    let pretty = "{\n  \"a\": [\n    1,\n\t\t2 ],\n  \"b\": null\n}";
    assert_eq!(run(&spec, pretty), Outcome::Complete);
    let deep = format!("{{\n{}}}", " ".repeat(30));
    assert_eq!(
        run(&spec, &deep),
        Outcome::RefusedAt(22),
        "indentation is bounded"
    );
    assert_eq!(
        run(&spec, "{  }"),
        Outcome::RefusedAt(2),
        "one space per gap"
    );
    assert_eq!(
        run(&spec, "{\n\n}"),
        Outcome::RefusedAt(2),
        "one newline per gap"
    );
    assert_eq!(run(&spec, "{\r\n}"), Outcome::RefusedAt(1));
}

#[test]
fn object_properties_required_and_order() {
    let spec = schema(json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name"],
    }));
    assert_eq!(run(&spec, r#"{"name":"Ann","age":3}"#), Outcome::Complete);
    assert_eq!(run(&spec, r#"{"age":3,"name":"Ann"}"#), Outcome::Complete);
    assert_eq!(
        run(&spec, r#"{"age":3}"#),
        Outcome::RefusedAt(8),
        "name missing"
    );
    assert_eq!(
        run(&spec, r#"{"nick":1}"#),
        Outcome::RefusedAt(3),
        "undeclared key"
    );
    assert_eq!(
        run(&spec, r#"{"age":1.5}"#),
        Outcome::RefusedAt(8),
        "integer"
    );
    assert_eq!(
        run(&spec, r#"{"name":"a","name":"b"}"#),
        Outcome::RefusedAt(13),
        "a written property cannot be started again"
    );
    assert_eq!(
        run(&spec, r#"{"name":"a","age":1,"#),
        Outcome::RefusedAt(19),
        "no comma when no property is left"
    );
}

#[test]
fn additional_properties_schema_and_key_prefixes() {
    let spec = schema(json!({
        "type": "object",
        "properties": {"id": {"type": "integer"}, "idx": {"type": "boolean"}},
        "additionalProperties": {"type": "string"},
    }));
    assert_eq!(
        run(&spec, r#"{"id":1,"idx":true,"i":"s"}"#),
        Outcome::Complete
    );
    assert_eq!(run(&spec, r#"{"idy":"s","i\"d":"t"}"#), Outcome::Complete);
    assert_eq!(
        run(&spec, r#"{"i":1}"#),
        Outcome::RefusedAt(5),
        "extra keys are strings"
    );
    assert_eq!(
        run(&spec, r#"{"id":1,"id":2}"#),
        Outcome::RefusedAt(11),
        "duplicate"
    );
    let required = schema(json!({
        "type": "object",
        "properties": {"id": {"type": "integer"}},
        "required": ["id"],
        "additionalProperties": true,
    }));
    assert_eq!(
        run(&required, r#"{"x":1"#),
        Outcome::RefusedAt(2),
        "required ones first"
    );
    assert_eq!(run(&required, r#"{"id":1,"x":[]}"#), Outcome::Complete);
}

#[test]
fn arrays_bounds_and_items() {
    let spec = schema(json!({
        "type": "array", "items": {"enum": ["a", 1, null]}, "minItems": 1, "maxItems": 2,
    }));
    assert_eq!(run(&spec, r#"["a", 1]"#), Outcome::Complete);
    assert_eq!(run(&spec, "[]"), Outcome::RefusedAt(1));
    assert_eq!(run(&spec, "[null,1,"), Outcome::RefusedAt(7));
    assert_eq!(run(&spec, r#"["b"]"#), Outcome::RefusedAt(2));
    let empty_only = schema(json!({"type": "array", "maxItems": 0}));
    assert_eq!(run(&empty_only, "[ ]"), Outcome::Complete);
    assert_eq!(run(&empty_only, "[1"), Outcome::RefusedAt(1));
}

#[test]
fn strings_count_characters() {
    let spec = schema(json!({"type": "string", "minLength": 2, "maxLength": 3}));
    assert_eq!(run(&spec, r#""é\n""#), Outcome::Complete);
    assert_eq!(run(&spec, r#""a""#), Outcome::RefusedAt(2));
    assert_eq!(run(&spec, r#""abcd""#), Outcome::RefusedAt(4));
}

#[test]
fn numbers_follow_json_grammar_with_bounded_digits() {
    let spec = schema(json!({"type": "number"}));
    for ok in ["0", "-0.5", "12e3", "1E-2", "3.25"] {
        assert_eq!(run(&spec, ok), Outcome::Complete, "{ok}");
    }
    assert_eq!(run(&spec, "1."), Outcome::Prefix);
    assert_eq!(run(&spec, "-"), Outcome::Prefix);
    assert_eq!(run(&spec, "00"), Outcome::RefusedAt(1));
    assert_eq!(run(&spec, ".5"), Outcome::RefusedAt(0));
    assert_eq!(run(&spec, &"9".repeat(17)), Outcome::RefusedAt(16));
    assert_eq!(run(&spec, "1e123"), Outcome::RefusedAt(4));
    let integer = schema(json!({"type": "integer"}));
    assert_eq!(run(&integer, "-42"), Outcome::Complete);
    assert_eq!(run(&integer, "4.0"), Outcome::RefusedAt(1));
}

#[test]
fn literals_enums_consts_and_type_lists() {
    let spec = schema(json!({"enum": ["red", 1, [1, 2], {"k": null}, 10]}));
    for ok in [r#""red""#, "1", "10", "[1,2]", r#"{"k":null}"#] {
        assert_eq!(run(&spec, ok), Outcome::Complete, "{ok}");
    }
    assert_eq!(
        run(&spec, "[1, 2]"),
        Outcome::RefusedAt(3),
        "compact spelling only"
    );
    let filtered = schema(json!({"type": "string", "enum": ["a", 1, "b"], "maxLength": 1}));
    assert_eq!(
        run(&filtered, "1"),
        Outcome::RefusedAt(0),
        "enum filtered by type"
    );
    let konst = schema(json!({"const": "x"}));
    assert_eq!(run(&konst, r#""x""#), Outcome::Complete);
    let nullable = schema(json!({"type": ["string", "null"]}));
    assert_eq!(run(&nullable, "null"), Outcome::Complete);
    assert_eq!(run(&nullable, r#""s""#), Outcome::Complete);
    assert_eq!(run(&nullable, "true"), Outcome::RefusedAt(0));
}

#[test]
fn any_of_splits_until_bytes_decide() {
    let spec = schema(json!({"anyOf": [
        {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
    ]}));
    assert_eq!(run(&spec, r#"{"a":1}"#), Outcome::Complete);
    assert_eq!(run(&spec, r#"{"a":"x"}"#), Outcome::Complete);
    assert_eq!(run(&spec, r#"{"a":true}"#), Outcome::RefusedAt(5));
}

#[test]
fn refs_and_recursion() {
    let spec = schema(json!({
        "$defs": {"node": {
            "type": "object",
            "properties": {"v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
            "required": ["v"],
        }},
        "$ref": "#/$defs/node",
    }));
    assert_eq!(
        run(&spec, r#"{"v":1,"kids":[{"v":2,"kids":[]},{"v":3}]}"#),
        Outcome::Complete
    );
    assert_eq!(run(&spec, r#"{"v":1,"kids":[{}]}"#), Outcome::RefusedAt(16));
}

#[test]
fn unsatisfiable_parts_are_pruned_not_offered() {
    // `b` can never be written (its schema accepts nothing), so it is not offered.
    let spec = schema(json!({
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": false},
        "required": ["a"],
    }));
    assert_eq!(run(&spec, r#"{"b"#), Outcome::RefusedAt(2));
    assert_eq!(run(&spec, r#"{"a":1}"#), Outcome::Complete);
    // A self-required recursion has no finite value.
    let (path, p) = problem(json!({
        "$defs": {"x": {"type": "object", "properties": {"x": {"$ref": "#/$defs/x"}}, "required": ["x"]}},
        "$ref": "#/$defs/x",
    }));
    assert_eq!((path.as_str(), p), ("#", SchemaProblem::Unsatisfiable));
}

#[test]
fn invalid_and_unsupported_schemas_name_the_problem() {
    let cases = [
        (
            json!({"type": "integer", "minimum": 3}),
            "#",
            "`minimum` is not supported",
        ),
        (
            json!({"properties": {"a": {"type": "string", "pattern": "x"}}}),
            "#/properties/a",
            "`pattern`",
        ),
        (json!({"type": "strin"}), "#", "unknown type `strin`"),
        (
            json!({"type": "string", "minLength": -1}),
            "#",
            "`minLength` must be",
        ),
        (
            json!({"type": "array", "minItems": 3, "maxItems": 2}),
            "#",
            "greater than",
        ),
        (
            json!({"$ref": "#/$defs/missing"}),
            "#/$defs/missing",
            "cannot resolve",
        ),
        (
            json!({"$ref": "https://example.com/s.json"}),
            "https://example.com/s.json",
            "cannot resolve",
        ),
        (
            json!({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}),
            "#/$defs/a",
            "refers only to itself",
        ),
        (
            json!({"anyOf": [{"$ref": "#"}, {"type": "null"}]}),
            "#",
            "contains itself",
        ),
        (
            json!({"type": "object", "required": ["x"], "additionalProperties": false}),
            "#",
            "\"x\"",
        ),
        (
            json!({"oneOf": [{"type": "integer"}, {"type": "number"}]}),
            "#",
            "`oneOf` branches 0 and 1",
        ),
        (
            json!({"type": "string", "anyOf": [{"maxLength": 1}]}),
            "#",
            "`anyOf` cannot be combined",
        ),
        (
            json!({"enum": [1], "type": "string"}),
            "#",
            "no value satisfies",
        ),
        (
            json!({"items": [{"type": "string"}]}),
            "#",
            "items (array form)",
        ),
        (json!(3), "#", "`schema` must be an object or a boolean"),
        (json!(false), "#", "no value satisfies"),
    ];
    for (value, path, needle) in cases {
        let err = compile(&schema(value.clone())).expect_err(&value.to_string());
        let text = err.to_string();
        assert!(
            text.contains(&format!("at {path}:")) && text.contains(needle),
            "{value}: {text}"
        );
    }
}

#[test]
fn one_of_with_disjoint_branches_is_accepted() {
    let tagged = schema(json!({"oneOf": [
        {"type": "object", "properties": {"kind": {"const": "a"}, "x": {"type": "integer"}}, "required": ["kind"]},
        {"type": "object", "properties": {"kind": {"const": "b"}}, "required": ["kind"]},
    ]}));
    assert_eq!(run(&tagged, r#"{"kind":"b"}"#), Outcome::Complete);
    let by_type =
        schema(json!({"oneOf": [{"type": "string"}, {"type": "integer"}, {"enum": [1.5]}]}));
    assert_eq!(run(&by_type, "1.5"), Outcome::Complete);
}

#[test]
fn annotations_are_ignored() {
    let spec = schema(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "T", "description": "d", "default": 1, "examples": [1],
        "type": "integer",
    }));
    assert_eq!(run(&spec, "7"), Outcome::Complete);
}
