//! The embedded shop: a small fictional shop's data, its tools, and the
//! deterministic support-dialogue corpus herd trains its own models on.
//!
//! # Design decisions
//!
//! **Everything from one seed, nothing from the clock.** The shop
//! ([`Shop::generate`]) and every split of the corpus ([`Corpus::generate`])
//! come from ChaCha8 streams of one seed, and "today" is a constant
//! ([`date::TODAY`]), so the same seed gives byte-identical files on every
//! machine and every day. herd ships the corpus of [`DEFAULT_SEED`].
//!
//! **Answers are copied, not recalled.** After a tool call the answer is
//! filled from the tool's JSON result (status, dates, tracking number,
//! price), and policy answers from the facts in the system prompt, so a
//! model of a few million parameters learns a task it can actually do:
//! find the right field and copy it. Tool results are the output of the
//! same [`Shop::execute`] the agent runs, so training and serving agree.
//!
//! **Generalisation is measured, not assumed.** The last fifth of every
//! list of customer phrasings and every order number ending in 7 appear
//! only in the test split; each test case says which of the two it
//! exercises ([`expected`] documents the schema).
//!
//! **The data is SQL-shaped.** Flat tables with ids ([`Product`],
//! [`Customer`], [`Order`], [`OrderItem`]) so the agent's SQLite database is
//! a direct copy.

#![deny(missing_docs)]

mod corpus;
pub mod date;
mod error;
pub mod eval;
pub mod expected;
mod phrases;
mod prompt;
pub mod report;
mod shop;
mod tools;

pub use corpus::{is_held_out_order, tools_json, Corpus, CorpusOptions, CorpusStats};
pub use error::ShopError;
pub use phrases::Language;
pub use shop::{
    hour_text, hours_text, Category, Cents, Customer, Hours, Order, OrderItem, OrderStatus,
    Policies, Product, Shop, DEFAULT_SEED, FIRST_ORDER_ID, LAST_ORDER_ID,
};
pub use tools::{tool_definitions, ShopTool, ToolRequest};
