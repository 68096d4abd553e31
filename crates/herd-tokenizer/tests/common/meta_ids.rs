//! Meta's reference ids for tests/fixtures/tokenizer/multilingual.txt
//! (multilingual.ids.json, made by tools/make_tokenizer_fixtures.py with
//! llama-models' `Tokenizer.encode`), shared by every path that must match them.

use herd_tokenizer::Tokenizer;
use serde::Deserialize;

use super::{fixture, read_json};

/// The whole fixture file.
#[derive(Deserialize)]
pub struct Fixture {
    pub paragraph_separator: String,
    pub ids: Vec<u32>,
    pub paragraphs: Vec<Case>,
    pub long_runs: Vec<RecipeCase>,
    pub random_strings: Vec<Case>,
}

/// A text and Meta's ids for it.
#[derive(Deserialize)]
pub struct Case {
    pub text: String,
    pub ids: Vec<u32>,
}

/// A long generated text, stored as (piece, repeat count) pairs.
#[derive(Deserialize)]
pub struct RecipeCase {
    pub name: String,
    pub recipe: Vec<(String, usize)>,
    pub ids: Vec<u32>,
}

impl RecipeCase {
    pub fn text(&self) -> String {
        self.recipe
            .iter()
            .map(|(piece, n)| piece.repeat(*n))
            .collect()
    }
}

/// Reads multilingual.ids.json.
pub fn expected() -> Fixture {
    read_json("tokenizer/multilingual.ids.json")
}

/// Reads multilingual.txt.
pub fn multilingual_text() -> String {
    let path = fixture("tokenizer/multilingual.txt");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Index and context of the first difference, for a readable failure.
pub fn first_difference(actual: &[u32], expected: &[u32]) -> Option<String> {
    let i = actual
        .iter()
        .zip(expected)
        .position(|(a, e)| a != e)
        .or_else(|| (actual.len() != expected.len()).then(|| actual.len().min(expected.len())))?;
    let lo = i.saturating_sub(3);
    Some(format!(
        "first difference at id #{i}: herd {:?} vs Meta {:?} (lengths {} vs {})",
        &actual[lo..(i + 4).min(actual.len())],
        &expected[lo..(i + 4).min(expected.len())],
        actual.len(),
        expected.len()
    ))
}

/// Every case of the fixture that `tok` encodes differently from Meta: the
/// whole text, each paragraph, the long runs and the random strings.
pub fn mismatches(tok: &Tokenizer) -> Vec<String> {
    let fixture = expected();
    let text = multilingual_text();
    let mut cases: Vec<(String, String, &[u32])> =
        vec![("whole text".to_owned(), text.clone(), &fixture.ids)];
    for (i, case) in fixture.paragraphs.iter().enumerate() {
        cases.push((format!("paragraph {i}"), case.text.clone(), &case.ids));
    }
    for case in &fixture.long_runs {
        cases.push((case.name.clone(), case.text(), &case.ids));
    }
    for case in &fixture.random_strings {
        cases.push((format!("{:?}", case.text), case.text.clone(), &case.ids));
    }
    cases
        .iter()
        .filter_map(|(name, text, ids)| {
            let actual = tok.encode(text).expect("encode");
            first_difference(&actual, ids).map(|diff| format!("{name}: {diff}"))
        })
        .collect()
}
