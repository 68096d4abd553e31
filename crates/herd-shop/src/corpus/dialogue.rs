//! One support dialogue at a time: customer phrasings from the phrasebook,
//! tool calls run against the shop, answers filled from the tool's result.

use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::Value;

use super::noise;
use crate::date::Weekday;
use crate::expected::Expected;
use crate::phrases::{held_out_from, AnswerKind, Language, Phrasebook};
use crate::shop::{hour_text, hours_text, Cents, OrderStatus, Shop, FIRST_ORDER_ID, LAST_ORDER_ID};
use crate::tools::ToolRequest;

/// Which split a dialogue is for: decides which phrasings and order
/// numbers it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Split {
    Train,
    Valid,
    Test,
}

/// Whether order `id` is kept out of training and validation: every id
/// ending in 7 appears only in the test split.
pub fn is_held_out_order(id: u32) -> bool {
    id % 10 == 7
}

/// What the customer wants in one turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Intent {
    OrderStatus,
    OrderNoId,
    OrderUnknown,
    Stock,
    Price,
    ProductUnknown,
    FollowUpPrice,
    FollowUpOrder,
    ShippingCost,
    DeliveryTime,
    Returns,
    OpeningHours,
    OpeningDay,
    Contact,
    Greeting,
    Thanks,
    OutOfScope,
}

/// Relative frequency of each opening intent.
const OPENING_INTENTS: [(Intent, u32); 15] = [
    (Intent::OrderStatus, 20),
    (Intent::OrderNoId, 6),
    (Intent::OrderUnknown, 5),
    (Intent::Stock, 11),
    (Intent::Price, 8),
    (Intent::ProductUnknown, 4),
    (Intent::ShippingCost, 5),
    (Intent::DeliveryTime, 4),
    (Intent::Returns, 5),
    (Intent::OpeningHours, 4),
    (Intent::OpeningDay, 5),
    (Intent::Contact, 3),
    (Intent::Greeting, 3),
    (Intent::OutOfScope, 9),
    (Intent::Thanks, 1),
];

/// An OpenAI chat message, serialised in the dataset's field order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ChatMessage {
    pub role: &'static str,
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<OpenAiToolCall>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    fn text(role: &'static str, content: String) -> Self {
        Self {
            role,
            content,
            tool_calls: None,
            tool_call_id: None,
        }
    }
}

/// `{"id": "call_0", "type": "function", "function": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct OpenAiToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: OpenAiFunction,
}

/// The called function and its arguments as a JSON string.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct OpenAiFunction {
    pub name: &'static str,
    pub arguments: String,
}

/// What one assistant turn was for, for the test split.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Turn {
    /// Index of the assistant message in the dialogue.
    pub message: usize,
    pub intent: Intent,
    /// `lang/list/index` of the customer phrasing it answers.
    pub template: String,
    pub held_out_template: bool,
    pub held_out_order: bool,
    pub expected: Expected,
}

/// A finished dialogue.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Dialogue {
    pub language: Language,
    pub messages: Vec<ChatMessage>,
    pub turns: Vec<Turn>,
}

/// Builds one dialogue.
pub(crate) struct Builder<'a> {
    shop: &'a Shop,
    book: &'static Phrasebook,
    language: Language,
    rng: &'a mut ChaCha8Rng,
    split: Split,
    /// Test dialogues ask with held-out phrasings (else seen ones).
    held_out_phrasing: bool,
    dialogue: Dialogue,
    next_call: usize,
    /// The latest customer phrasing, its held-out flag, and whether it
    /// named a held-out order.
    last_user: (String, bool, bool),
    last_intent: Intent,
    /// The latest found product's stock result, for a price follow-up.
    last_stock: Option<Value>,
}

impl<'a> Builder<'a> {
    pub fn new(
        shop: &'a Shop,
        language: Language,
        rng: &'a mut ChaCha8Rng,
        split: Split,
        system_prompt: String,
    ) -> Self {
        let held_out_phrasing = split == Split::Test && rng.random_bool(0.5);
        Self {
            shop,
            book: language.phrasebook(),
            language,
            rng,
            split,
            held_out_phrasing,
            dialogue: Dialogue {
                language,
                messages: vec![ChatMessage::text("system", system_prompt)],
                turns: Vec::new(),
            },
            next_call: 0,
            last_user: (String::new(), false, false),
            last_intent: Intent::Greeting,
            last_stock: None,
        }
    }

    /// A whole conversation: an opening request, then perhaps follow-ups.
    ///
    /// A test dialogue asked with *seen* phrasings is an order lookup on a
    /// held-out order number, so its question is new text all the same.
    pub fn build(mut self) -> Dialogue {
        let opening = if self.split == Split::Test && !self.held_out_phrasing {
            Intent::OrderStatus
        } else {
            OPENING_INTENTS
                .choose_weighted(self.rng, |(_, w)| *w)
                .expect("weights are positive")
                .0
        };
        self.run(opening);
        let mut more = if opening == Intent::Greeting {
            1.0
        } else {
            0.5
        };
        while self.last_intent != Intent::Thanks
            && self.dialogue.turns.len() < 6
            && self.rng.random_bool(more)
        {
            let next = self.follow_up();
            self.run(next);
            more *= 0.6;
        }
        self.dialogue
    }

    /// What the customer says next, given what was said.
    fn follow_up(&mut self) -> Intent {
        let roll = self.rng.random_range(0..10);
        match (self.last_intent, roll) {
            (Intent::Stock, 0..=3) if self.last_stock.is_some() => Intent::FollowUpPrice,
            (Intent::OrderStatus | Intent::FollowUpOrder | Intent::OrderNoId, 0..=3) => {
                Intent::FollowUpOrder
            }
            (Intent::Greeting, _) | (_, 4..=6) => loop {
                let (intent, _) = *OPENING_INTENTS
                    .choose_weighted(self.rng, |(_, w)| *w)
                    .expect("weights are positive");
                if !matches!(intent, Intent::Greeting | Intent::Thanks) {
                    break intent;
                }
            },
            _ => Intent::Thanks,
        }
    }

    fn run(&mut self, intent: Intent) {
        self.last_intent = intent;
        let u = &self.book.user;
        match intent {
            Intent::OrderStatus => self.order(u.order_status, "order_status", intent, false),
            Intent::OrderUnknown => self.order(u.order_status, "order_status", intent, true),
            Intent::FollowUpOrder => {
                self.order(u.follow_up_order, "follow_up_order", intent, false)
            }
            Intent::OrderNoId => self.order_without_id(),
            Intent::Stock => self.product(u.stock, "stock", intent, false),
            Intent::Price => self.product(u.price, "price", intent, false),
            Intent::ProductUnknown => self.product(u.stock, "stock", intent, true),
            Intent::FollowUpPrice => {
                self.user(u.follow_up_price, "follow_up_price", &[]);
                let result = self.last_stock.clone().unwrap_or_default();
                self.answer_from_stock(&result, AnswerKind::Price, intent);
            }
            Intent::OpeningDay => self.opening_day(),
            _ => self.policy(intent),
        }
    }

    /// Customer asks about an order by number; tool call; answer.
    fn order(&mut self, list: &'static [&'static str], name: &str, intent: Intent, unknown: bool) {
        let (id, held_out) = if unknown {
            let id = if self.rng.random_bool(0.5) {
                self.rng.random_range(LAST_ORDER_ID + 1..=2999)
            } else {
                self.rng.random_range(100..FIRST_ORDER_ID)
            };
            (id, false)
        } else {
            self.pick_order()
        };
        self.user(list, name, &[("id", id.to_string())]);
        self.last_user.2 = held_out;
        let result = self.tool_call(ToolRequest::LookupOrder { order_id: id }, intent);
        self.answer_order(&result, id, intent);
    }

    /// Customer asks without a number; the assistant asks for it.
    fn order_without_id(&mut self) {
        let intent = Intent::OrderNoId;
        self.user(self.book.user.order_no_id, "order_no_id", &[]);
        self.answer(AnswerKind::AskForId, &[], intent);
        let (id, held_out) = self.pick_order();
        self.user(self.book.user.give_id, "give_id", &[("id", id.to_string())]);
        self.last_user.2 = held_out;
        let result = self.tool_call(ToolRequest::LookupOrder { order_id: id }, intent);
        self.answer_order(&result, id, intent);
    }

    fn answer_order(&mut self, result: &Value, id: u32, intent: Intent) {
        let field = |key: &str| {
            result
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let kind = match result.get("status").and_then(Value::as_str) {
            None => AnswerKind::OrderUnknown,
            Some(s) if s == OrderStatus::Processing.as_str() => AnswerKind::Processing,
            Some(s) if s == OrderStatus::Shipped.as_str() => AnswerKind::Shipped,
            Some(s) if s == OrderStatus::Delivered.as_str() => AnswerKind::Delivered,
            Some(s) if s == OrderStatus::Cancelled.as_str() => AnswerKind::Cancelled,
            Some(_) => AnswerKind::Returned,
        };
        let slots = [
            ("id", id.to_string()),
            ("eta", field("estimated_delivery")),
            ("shipped", field("shipped")),
            ("delivered", field("delivered")),
            ("carrier", field("carrier")),
            ("tracking", field("tracking")),
        ];
        self.answer(kind, &slots, intent);
    }

    /// Customer asks about a product; tool call; answer.
    fn product(
        &mut self,
        list: &'static [&'static str],
        name: &str,
        intent: Intent,
        unknown: bool,
    ) {
        let mention = if unknown {
            (*self
                .book
                .unknown_products
                .choose(self.rng)
                .expect("non-empty"))
            .to_owned()
        } else {
            self.pick_product()
        };
        self.user(list, name, &[("product", mention.clone())]);
        let result = self.tool_call(
            ToolRequest::CheckStock {
                product: mention.clone(),
            },
            intent,
        );
        if result.get("error").is_some() {
            self.last_stock = None;
            self.answer(AnswerKind::ProductUnknown, &[("product", mention)], intent);
            return;
        }
        self.last_stock = Some(result.clone());
        let kind = match (intent, result["in_stock"].as_bool()) {
            (Intent::Price, _) => AnswerKind::Price,
            (_, Some(true)) => AnswerKind::InStock,
            _ => AnswerKind::OutOfStock,
        };
        self.answer_from_stock(&result, kind, intent);
    }

    fn answer_from_stock(&mut self, result: &Value, kind: AnswerKind, intent: Intent) {
        let price = result["price"].as_str().unwrap_or_default();
        let slots = [
            (
                "product",
                result["product"].as_str().unwrap_or_default().to_owned(),
            ),
            ("quantity", result["quantity"].to_string()),
            ("price", self.localize_amount(price)),
        ];
        self.answer(kind, &slots, intent);
    }

    fn opening_day(&mut self) {
        let day = *Weekday::ALL.choose(self.rng).expect("seven days");
        let name = self.book.day_names[day as usize].to_owned();
        self.user(
            self.book.user.opening_day,
            "opening_day",
            &[("day", name.clone())],
        );
        match self.shop.policies.hours_on(day) {
            Some((open, close)) => {
                let slots = [
                    ("day", name),
                    ("open", hour_text(open)),
                    ("close", hour_text(close)),
                ];
                self.answer(AnswerKind::OpenOnDay, &slots, Intent::OpeningDay);
            }
            None => self.answer(
                AnswerKind::ClosedOnDay,
                &[("day", name)],
                Intent::OpeningDay,
            ),
        }
    }

    /// Questions answered from the system prompt's facts, and small talk.
    fn policy(&mut self, intent: Intent) {
        let (u, p) = (&self.book.user, &self.shop.policies);
        let (list, name, kind) = match intent {
            Intent::ShippingCost => (u.shipping_cost, "shipping_cost", AnswerKind::ShippingCost),
            Intent::DeliveryTime => (u.delivery_time, "delivery_time", AnswerKind::DeliveryTime),
            Intent::Returns => (u.returns, "returns", AnswerKind::Returns),
            Intent::OpeningHours => (u.opening_hours, "opening_hours", AnswerKind::OpeningHours),
            Intent::Contact => (u.contact, "contact", AnswerKind::Contact),
            Intent::Greeting => (u.greeting, "greeting", AnswerKind::Greeting),
            Intent::Thanks => (u.thanks, "thanks", AnswerKind::Thanks),
            _ => (u.out_of_scope, "out_of_scope", AnswerKind::Refusal),
        };
        let slots = [
            ("fee", self.euros(p.shipping_fee)),
            ("free_from", self.euros(p.free_shipping_from)),
            ("min_days", p.delivery_days.0.to_string()),
            ("max_days", p.delivery_days.1.to_string()),
            ("return_days", p.return_days.to_string()),
            ("weekdays", hours_text(p.hours_on(Weekday::Monday))),
            ("saturday", hours_text(p.hours_on(Weekday::Saturday))),
            ("email", p.email.clone()),
            ("phone", p.phone.clone()),
            ("shop", self.shop.name.clone()),
        ];
        self.user(list, name, &[]);
        self.answer(kind, &slots, intent);
    }

    /// A customer message from `list` (`name` for the template id).
    fn user(&mut self, list: &'static [&'static str], name: &str, slots: &[(&str, String)]) {
        let split = held_out_from(list.len());
        let index = if self.held_out_phrasing {
            self.rng.random_range(split..list.len())
        } else {
            self.rng.random_range(0..split)
        };
        let rough = noise::roughen(list[index], self.rng);
        let mut text = fill(&rough, slots);
        let first = !self.dialogue.messages.iter().any(|m| m.role == "user");
        let small_talk = matches!(self.last_intent, Intent::Greeting | Intent::Thanks);
        if first && !small_talk {
            text = noise::politeness(text, self.book, self.rng);
        }
        let template = format!("{}/{name}/{index}", self.language.code());
        self.last_user = (template, index >= split, false);
        self.dialogue.messages.push(ChatMessage::text("user", text));
    }

    /// The assistant calls a tool; the result is appended and returned.
    fn tool_call(&mut self, request: ToolRequest, intent: Intent) -> Value {
        let id = format!("call_{}", self.next_call);
        self.next_call += 1;
        let name = request.tool().name();
        self.push_turn(
            intent,
            Expected::ToolCall {
                name: name.to_owned(),
                arguments: request.arguments(),
            },
        );
        self.dialogue.messages.push(ChatMessage {
            role: "assistant",
            content: String::new(),
            tool_calls: Some(vec![OpenAiToolCall {
                id: id.clone(),
                kind: "function",
                function: OpenAiFunction {
                    name,
                    arguments: request.arguments_text(),
                },
            }]),
            tool_call_id: None,
        });
        let result = self.shop.execute(&request);
        self.dialogue.messages.push(ChatMessage {
            role: "tool",
            content: result.to_string(),
            tool_calls: None,
            tool_call_id: Some(id),
        });
        result
    }

    /// An assistant answer of `kind`; what it must contain is its required
    /// slots' values and its keyword.
    fn answer(&mut self, kind: AnswerKind, slots: &[(&str, String)], intent: Intent) {
        let template = kind
            .templates(self.book)
            .choose(self.rng)
            .expect("non-empty");
        let text = fill(template, slots);
        let mut contains: Vec<String> = kind
            .required_slots()
            .iter()
            .filter_map(|slot| slots.iter().find(|(name, _)| name == slot))
            .map(|(_, value)| value.clone())
            .collect();
        contains.extend(kind.keyword(self.book).map(str::to_owned));
        self.push_turn(intent, Expected::AnswerContains(contains));
        self.dialogue
            .messages
            .push(ChatMessage::text("assistant", text));
    }

    fn push_turn(&mut self, intent: Intent, expected: Expected) {
        let (template, held_out_template, held_out_order) = self.last_user.clone();
        self.dialogue.turns.push(Turn {
            message: self.dialogue.messages.len(),
            intent,
            template,
            held_out_template,
            held_out_order,
            expected,
        });
    }

    /// An existing order: only test dialogues use held-out numbers (always
    /// for their first order when asked with seen phrasings, else half of
    /// the time); returns the id and whether it is held out.
    fn pick_order(&mut self) -> (u32, bool) {
        let first = self.dialogue.turns.is_empty();
        let want_held_out = self.split == Split::Test
            && ((first && !self.held_out_phrasing) || self.rng.random_bool(0.5));
        loop {
            let id = self.rng.random_range(FIRST_ORDER_ID..=LAST_ORDER_ID);
            if is_held_out_order(id) == want_held_out {
                return (id, want_held_out);
            }
        }
    }

    /// A product as the customer names it.
    fn pick_product(&mut self) -> String {
        let product = self
            .shop
            .products
            .choose(self.rng)
            .expect("non-empty catalogue");
        let (name, lowercase) = match self.language {
            Language::En => (&product.name_en, 0.5),
            Language::De => (&product.name_de, 0.15),
        };
        if self.rng.random_bool(lowercase) {
            name.to_lowercase()
        } else {
            name.clone()
        }
    }

    /// `4.90 EUR` from a tool result, in the language's decimal form.
    fn localize_amount(&self, amount: &str) -> String {
        if self.book.decimal_comma {
            amount.replace('.', ",")
        } else {
            amount.to_owned()
        }
    }

    fn euros(&self, cents: Cents) -> String {
        let number = if self.book.decimal_comma {
            cents.decimal_comma()
        } else {
            cents.decimal()
        };
        format!("{number} EUR")
    }
}

/// Replaces each `{name}` with its value.
fn fill(template: &str, slots: &[(&str, String)]) -> String {
    slots
        .iter()
        .fold(template.to_owned(), |text, (name, value)| {
            text.replace(&format!("{{{name}}}"), value)
        })
}
