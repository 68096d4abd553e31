//! The assistant's system prompt: who it is, what it may do, and the shop's
//! facts, so policy questions are answered by copying from the prompt
//! rather than from memory (a small model copies far more reliably than it
//! recalls, and an agent built on another shop only changes this text).

use crate::date::Weekday;
use crate::shop::{hours_text, Shop};

/// Opening paragraphs; the first is the canonical one (test split, agent).
const INTROS: [&str; 3] = [
    "You are the customer support assistant of {shop}. Answer briefly and politely, in the customer's language. Use the tools to look up orders and stock; never guess order details. Only help with questions about the shop.",
    "You work in customer service for {shop}. Keep answers short and friendly and reply in the language the customer writes in. Look up orders and stock with the tools instead of guessing. Politely decline anything unrelated to the shop.",
    "You are {shop}'s support assistant. Be concise and polite and answer in the customer's language. Order details and stock come only from the tools. Do not help with topics outside the shop.",
];

impl Shop {
    /// The canonical system prompt for this shop's assistant.
    pub fn system_prompt(&self) -> String {
        self.system_prompt_variant(0)
    }

    /// One of the prompt's wordings (`variant` modulo their number), all
    /// with the same facts; training uses several so the model does not
    /// depend on one exact sentence.
    pub fn system_prompt_variant(&self, variant: usize) -> String {
        let p = &self.policies;
        let intro = INTROS[variant % INTROS.len()].replace("{shop}", &self.name);
        format!(
            "{intro}\n\nShop facts:\n\
             - Opening hours: Monday-Friday {weekdays}, Saturday {saturday}, Sunday {sunday}\n\
             - Shipping: {fee} EUR per order, free from {free} EUR; delivery in {min}-{max} business days\n\
             - Returns: free within {days} days of delivery\n\
             - Contact: {email}, {phone}",
            weekdays = hours_text(p.hours_on(Weekday::Monday)),
            saturday = hours_text(p.hours_on(Weekday::Saturday)),
            sunday = hours_text(p.hours_on(Weekday::Sunday)),
            fee = p.shipping_fee.decimal(),
            free = p.free_shipping_from.decimal(),
            min = p.delivery_days.0,
            max = p.delivery_days.1,
            days = p.return_days,
            email = p.email,
            phone = p.phone,
        )
    }
}
