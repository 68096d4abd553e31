//! The support-dialogue corpus: train, valid and test splits in the OpenAI
//! `messages` shape, generated deterministically from a seed.
//!
//! Each split draws from its own ChaCha stream of the seed, so changing
//! the number of training dialogues does not change the test split.
//! Train and valid use only the *seen* four fifths of every phrasing list
//! and orders whose number does not end in 7; the test split is cut into
//! one case per assistant turn (see [`crate::expected`]), half of its
//! dialogues asked with held-out phrasings, half of its order lookups on
//! held-out numbers; a test dialogue asked with seen phrasings starts with
//! a lookup of a held-out order, so every test question is new text while
//! the test split stays independent of the training split's size.

mod dialogue;
mod noise;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use rand::seq::IndexedRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::Value;

use crate::error::ShopError;
use crate::phrases::Language;
use crate::shop::Shop;
use crate::tools::tool_definitions;
pub use dialogue::is_held_out_order;
use dialogue::{Builder, ChatMessage, Dialogue, Intent, Split};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusOptions {
    /// Seed of the shop and of every split.
    pub seed: u64,
    /// Training dialogues; validation gets a twentieth and the test split
    /// a tenth (at least 20 each).
    pub dialogues: usize,
    /// Languages, each used for an equal share of dialogues.
    pub languages: Vec<Language>,
}

impl Default for CorpusOptions {
    fn default() -> Self {
        Self {
            seed: crate::shop::DEFAULT_SEED,
            dialogues: 4000,
            languages: Language::ALL.to_vec(),
        }
    }
}

/// A generated corpus, ready to write.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// The shop the dialogues are about.
    pub shop: Shop,
    shop_prompt: String,
    train: Vec<Dialogue>,
    valid: Vec<Dialogue>,
    test: Vec<Dialogue>,
}

/// Counts for the summary line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CorpusStats {
    /// Training dialogues.
    pub train: usize,
    /// Validation dialogues.
    pub valid: usize,
    /// Test dialogues.
    pub test_dialogues: usize,
    /// Test cases (one per assistant turn).
    pub test_cases: usize,
    /// Test cases asked with a held-out phrasing.
    pub test_held_out_phrasing: usize,
    /// Test cases about a held-out order number.
    pub test_held_out_order: usize,
    /// Test cases whose answer is a tool call.
    pub test_tool_calls: usize,
    /// Bytes of chat-rendered training text (tool prompt included), the
    /// text the tokenizer is trained on.
    pub train_text_bytes: usize,
}

/// A train or valid line.
#[derive(Serialize)]
struct Record<'a> {
    tools: &'a [Value],
    messages: &'a [ChatMessage],
}

/// A test line (see [`crate::expected`]).
#[derive(Serialize)]
struct TestCase<'a> {
    tools: &'a [Value],
    messages: &'a [ChatMessage],
    expected: &'a crate::expected::Expected,
    reference: &'a ChatMessage,
    meta: TestMeta<'a>,
}

#[derive(Serialize)]
struct TestMeta<'a> {
    id: String,
    language: &'static str,
    intent: Intent,
    turn: usize,
    template: &'a str,
    held_out_template: bool,
    held_out_order: bool,
}

/// Stream numbers of the splits within a seed.
const TRAIN_STREAM: u64 = 1;
const VALID_STREAM: u64 = 2;
const TEST_STREAM: u64 = 3;

impl Corpus {
    /// Generates the shop and all three splits.
    pub fn generate(options: &CorpusOptions) -> Result<Self, ShopError> {
        if options.dialogues == 0 {
            return Err(ShopError::InvalidOption(
                "--dialogues must be at least 1".into(),
            ));
        }
        if options.languages.is_empty() {
            return Err(ShopError::InvalidOption(
                "at least one language is needed".into(),
            ));
        }
        let shop = Shop::generate(options.seed);
        let shop_prompt = shop.system_prompt();
        let small_split = (options.dialogues / 20).max(20);
        let test_size = (options.dialogues / 10).max(20);
        let train = generate_split(
            &shop,
            options,
            Split::Train,
            TRAIN_STREAM,
            options.dialogues,
        );
        let valid = generate_split(&shop, options, Split::Valid, VALID_STREAM, small_split);
        let test = generate_split(&shop, options, Split::Test, TEST_STREAM, test_size);
        Ok(Self {
            shop,
            shop_prompt,
            train,
            valid,
            test,
        })
    }

    /// The system prompt every dialogue's variants derive from.
    pub fn system_prompt(&self) -> &str {
        &self.shop_prompt
    }

    /// `train.jsonl`: one `{"tools", "messages"}` record per line.
    pub fn train_jsonl(&self) -> String {
        records_jsonl(&self.train)
    }

    /// `valid.jsonl`, like train.
    pub fn valid_jsonl(&self) -> String {
        records_jsonl(&self.valid)
    }

    /// `prompts.jsonl`: prompts for a teacher (`herd generate-data`), one
    /// `{"tools", "messages"}` line per assistant turn of the training
    /// dialogues, holding the messages before that turn, so that synthetic
    /// answers cover every kind of turn the corpus has (first answers, tool
    /// calls, answers after a tool result, follow-ups).
    pub fn prompts_jsonl(&self) -> String {
        let tools = tools_json();
        let mut out = String::new();
        for dialogue in &self.train {
            for turn in &dialogue.turns {
                let record = Record {
                    tools: &tools,
                    messages: &dialogue.messages[..turn.message],
                };
                push_line(&mut out, &record);
            }
        }
        out
    }

    /// `test.jsonl`: one case per assistant turn of each test dialogue.
    pub fn test_jsonl(&self) -> String {
        let tools = tools_json();
        let mut out = String::new();
        for (d, dialogue) in self.test.iter().enumerate() {
            for (t, turn) in dialogue.turns.iter().enumerate() {
                let case = TestCase {
                    tools: &tools,
                    messages: &dialogue.messages[..turn.message],
                    expected: &turn.expected,
                    reference: &dialogue.messages[turn.message],
                    meta: TestMeta {
                        id: format!("test-{d:05}-{t}"),
                        language: dialogue.language.code(),
                        intent: turn.intent,
                        turn: t,
                        template: &turn.template,
                        held_out_template: turn.held_out_template,
                        held_out_order: turn.held_out_order,
                    },
                };
                push_line(&mut out, &case);
            }
        }
        out
    }

    /// Writes `train.jsonl`, `valid.jsonl`, `test.jsonl`, `tools.json` and
    /// `shop.json` into `dir`, each through a temporary file so an existing
    /// file is only ever replaced by a complete one. Returns the paths.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, ShopError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ShopError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let shop = ShopFile {
            shop: &self.shop,
            system_prompt: &self.shop_prompt,
        };
        let files = [
            ("train.jsonl", self.train_jsonl()),
            ("valid.jsonl", self.valid_jsonl()),
            ("test.jsonl", self.test_jsonl()),
            ("tools.json", pretty(&tools_json())),
            ("shop.json", pretty(&shop)),
        ];
        let mut written = Vec::new();
        for (name, text) in files {
            let path = dir.join(name);
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, text).map_err(io(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(io(&path))?;
            written.push(path);
        }
        Ok(written)
    }

    /// Counts of the splits and of the test cases.
    pub fn stats(&self) -> CorpusStats {
        let cases: Vec<&dialogue::Turn> = self.test.iter().flat_map(|d| &d.turns).collect();
        let tools = tools_json();
        let train_text_bytes = self
            .train
            .iter()
            .map(|d| rendered_bytes(&tools, &d.messages))
            .sum();
        CorpusStats {
            train: self.train.len(),
            valid: self.valid.len(),
            test_dialogues: self.test.len(),
            test_cases: cases.len(),
            test_held_out_phrasing: cases.iter().filter(|t| t.held_out_template).count(),
            test_held_out_order: cases.iter().filter(|t| t.held_out_order).count(),
            test_tool_calls: cases
                .iter()
                .filter(|t| matches!(t.expected, crate::expected::Expected::ToolCall { .. }))
                .count(),
            train_text_bytes,
        }
    }
}

/// `shop.json`: the data plus the canonical system prompt.
#[derive(Serialize)]
struct ShopFile<'a> {
    shop: &'a Shop,
    system_prompt: &'a str,
}

/// Pretty JSON with a final newline.
fn pretty<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("plain data serialises") + "\n"
}

/// The tools as OpenAI tool objects.
pub fn tools_json() -> Vec<Value> {
    tool_definitions()
        .iter()
        .map(|t| t.to_openai_json())
        .collect()
}

fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

fn generate_split(
    shop: &Shop,
    options: &CorpusOptions,
    split: Split,
    stream_id: u64,
    count: usize,
) -> Vec<Dialogue> {
    let mut rng = stream(options.seed, stream_id);
    (0..count)
        .map(|i| {
            let language = options.languages[i % options.languages.len()];
            draw_dialogue(shop, language, &mut rng, split)
        })
        .collect()
}

fn draw_dialogue(shop: &Shop, language: Language, rng: &mut ChaCha8Rng, split: Split) -> Dialogue {
    let prompt = if split == Split::Test {
        shop.system_prompt()
    } else {
        let variant = *[0, 0, 1, 2].choose(rng).expect("non-empty");
        shop.system_prompt_variant(variant)
    };
    Builder::new(shop, language, rng, split, prompt).build()
}

#[cfg(test)]
fn first_user_text(dialogue: &Dialogue) -> Option<&str> {
    dialogue
        .messages
        .iter()
        .find(|m| m.role == "user")
        .map(|m| m.content.as_str())
}

fn records_jsonl(dialogues: &[Dialogue]) -> String {
    let tools = tools_json();
    let mut out = String::new();
    for dialogue in dialogues {
        push_line(
            &mut out,
            &Record {
                tools: &tools,
                messages: &dialogue.messages,
            },
        );
    }
    out
}

fn push_line<T: Serialize>(out: &mut String, value: &T) {
    out.push_str(&serde_json::to_string(value).expect("plain data serialises"));
    out.push('\n');
}

/// Bytes of the text pieces the chat format encodes for one dialogue.
fn rendered_bytes(tools: &[Value], messages: &[ChatMessage]) -> usize {
    let value = serde_json::json!({ "tools": tools, "messages": messages });
    herd_tokenizer::ChatRecord::from_value(&value)
        .map(|record| {
            herd_tokenizer::dialog_text_pieces(&record.dialog())
                .iter()
                .map(String::len)
                .sum()
        })
        .expect("generated records are valid chat records")
}
