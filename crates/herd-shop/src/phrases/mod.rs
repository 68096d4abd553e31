//! What customers say and what the assistant answers, per language.
//!
//! Templates hold slots in braces (`{id}`, `{product}`, `{tracking}`, ...)
//! that the generator fills from the shop's data or a tool's result. Each
//! list of customer phrasings keeps its last fifth (at least one) out of
//! the training split: the test split asks with those *unseen* phrasings
//! ([`held_out_from`]). Every answer template of one kind contains the same
//! slots and keyword, which is what the test split's `answer_contains`
//! checks; a unit test enforces it.

mod de;
mod en;

use crate::error::ShopError;

/// A language of the corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Language {
    /// English.
    En,
    /// German (formal "Sie").
    De,
}

impl Language {
    /// Every language with a phrasebook.
    pub const ALL: [Language; 2] = [Language::En, Language::De];

    /// The ISO 639-1 code.
    pub const fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::De => "de",
        }
    }

    /// The language with this code.
    pub fn from_code(code: &str) -> Result<Self, ShopError> {
        Self::ALL
            .into_iter()
            .find(|l| l.code() == code.trim())
            .ok_or_else(|| ShopError::UnknownLanguage(code.to_owned()))
    }

    pub(crate) fn phrasebook(self) -> &'static Phrasebook {
        match self {
            Language::En => &en::PHRASES,
            Language::De => &de::PHRASES,
        }
    }
}

/// Customer phrasings, one list per intent.
pub(crate) struct UserPhrases {
    /// Asks where an order is; slot `{id}`.
    pub order_status: &'static [&'static str],
    /// Asks about an order without giving its number.
    pub order_no_id: &'static [&'static str],
    /// Gives the order number the assistant asked for; slot `{id}`.
    pub give_id: &'static [&'static str],
    /// Asks whether a product is available; slot `{product}`.
    pub stock: &'static [&'static str],
    /// Asks what a product costs; slot `{product}`.
    pub price: &'static [&'static str],
    /// Asks the price after a stock answer, without naming the product.
    pub follow_up_price: &'static [&'static str],
    /// Asks about another order after an answer; slot `{id}`.
    pub follow_up_order: &'static [&'static str],
    /// Shipping cost.
    pub shipping_cost: &'static [&'static str],
    /// Delivery time.
    pub delivery_time: &'static [&'static str],
    /// Returns.
    pub returns: &'static [&'static str],
    /// Opening hours in general.
    pub opening_hours: &'static [&'static str],
    /// Open on one day; slot `{day}`.
    pub opening_day: &'static [&'static str],
    /// How to reach the shop.
    pub contact: &'static [&'static str],
    /// Hello.
    pub greeting: &'static [&'static str],
    /// Thanks / goodbye.
    pub thanks: &'static [&'static str],
    /// Anything the shop assistant must not do.
    pub out_of_scope: &'static [&'static str],
}

/// Assistant answers, one list per kind.
pub(crate) struct AnswerPhrases {
    /// Order being packed: `{id}`, `{eta}`.
    pub processing: &'static [&'static str],
    /// Order on its way: `{id}`, `{shipped}`, `{carrier}`, `{tracking}`, `{eta}`.
    pub shipped: &'static [&'static str],
    /// Order arrived: `{id}`, `{delivered}`.
    pub delivered: &'static [&'static str],
    /// Order cancelled: `{id}`.
    pub cancelled: &'static [&'static str],
    /// Order returned: `{id}`.
    pub returned: &'static [&'static str],
    /// Asks for the order number.
    pub ask_for_id: &'static [&'static str],
    /// The tool found no such order: `{id}`.
    pub order_unknown: &'static [&'static str],
    /// In stock: `{product}`, `{quantity}`, `{price}`.
    pub in_stock: &'static [&'static str],
    /// Out of stock: `{product}`.
    pub out_of_stock: &'static [&'static str],
    /// The price: `{product}`, `{price}`.
    pub price: &'static [&'static str],
    /// The tool found no such product: `{product}`.
    pub product_unknown: &'static [&'static str],
    /// `{fee}`, `{free_from}`.
    pub shipping_cost: &'static [&'static str],
    /// `{min_days}`, `{max_days}`.
    pub delivery_time: &'static [&'static str],
    /// `{return_days}`.
    pub returns: &'static [&'static str],
    /// `{weekdays}` (e.g. 09:00-18:00), `{saturday}`.
    pub opening_hours: &'static [&'static str],
    /// `{day}`, `{open}`, `{close}`.
    pub open_on_day: &'static [&'static str],
    /// `{day}`.
    pub closed_on_day: &'static [&'static str],
    /// `{email}`, `{phone}`.
    pub contact: &'static [&'static str],
    /// Hello back: `{shop}`.
    pub greeting: &'static [&'static str],
    /// You're welcome.
    pub thanks: &'static [&'static str],
    /// Polite refusal: `{shop}`.
    pub refusal: &'static [&'static str],
}

/// Fixed words that every answer of a kind contains, for `answer_contains`.
pub(crate) struct Keywords {
    pub processing: &'static str,
    pub shipped: &'static str,
    pub delivered: &'static str,
    pub cancelled: &'static str,
    pub returned: &'static str,
    pub order_unknown: &'static str,
    pub out_of_stock: &'static str,
    pub product_unknown: &'static str,
    pub closed: &'static str,
    pub refusal: &'static str,
}

/// Everything one language says.
pub(crate) struct Phrasebook {
    pub user: UserPhrases,
    pub answer: AnswerPhrases,
    pub keywords: Keywords,
    /// Monday first.
    pub day_names: [&'static str; 7],
    /// Prepended to some customer messages ("Hi,").
    pub openers: &'static [&'static str],
    /// Appended to some customer messages ("Thanks!").
    pub closers: &'static [&'static str],
    /// Decimal separator of amounts in answers.
    pub decimal_comma: bool,
    /// Things customers ask for that the shop does not sell (ASCII).
    pub unknown_products: &'static [&'static str],
}

/// The kinds of assistant answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum AnswerKind {
    Processing,
    Shipped,
    Delivered,
    Cancelled,
    Returned,
    AskForId,
    OrderUnknown,
    InStock,
    OutOfStock,
    Price,
    ProductUnknown,
    ShippingCost,
    DeliveryTime,
    Returns,
    OpeningHours,
    OpenOnDay,
    ClosedOnDay,
    Contact,
    Greeting,
    Thanks,
    Refusal,
}

impl AnswerKind {
    #[cfg(test)]
    pub const ALL: [AnswerKind; 21] = [
        AnswerKind::Processing,
        AnswerKind::Shipped,
        AnswerKind::Delivered,
        AnswerKind::Cancelled,
        AnswerKind::Returned,
        AnswerKind::AskForId,
        AnswerKind::OrderUnknown,
        AnswerKind::InStock,
        AnswerKind::OutOfStock,
        AnswerKind::Price,
        AnswerKind::ProductUnknown,
        AnswerKind::ShippingCost,
        AnswerKind::DeliveryTime,
        AnswerKind::Returns,
        AnswerKind::OpeningHours,
        AnswerKind::OpenOnDay,
        AnswerKind::ClosedOnDay,
        AnswerKind::Contact,
        AnswerKind::Greeting,
        AnswerKind::Thanks,
        AnswerKind::Refusal,
    ];

    /// The templates of this kind in `book`.
    pub fn templates(self, book: &Phrasebook) -> &'static [&'static str] {
        let a = &book.answer;
        match self {
            AnswerKind::Processing => a.processing,
            AnswerKind::Shipped => a.shipped,
            AnswerKind::Delivered => a.delivered,
            AnswerKind::Cancelled => a.cancelled,
            AnswerKind::Returned => a.returned,
            AnswerKind::AskForId => a.ask_for_id,
            AnswerKind::OrderUnknown => a.order_unknown,
            AnswerKind::InStock => a.in_stock,
            AnswerKind::OutOfStock => a.out_of_stock,
            AnswerKind::Price => a.price,
            AnswerKind::ProductUnknown => a.product_unknown,
            AnswerKind::ShippingCost => a.shipping_cost,
            AnswerKind::DeliveryTime => a.delivery_time,
            AnswerKind::Returns => a.returns,
            AnswerKind::OpeningHours => a.opening_hours,
            AnswerKind::OpenOnDay => a.open_on_day,
            AnswerKind::ClosedOnDay => a.closed_on_day,
            AnswerKind::Contact => a.contact,
            AnswerKind::Greeting => a.greeting,
            AnswerKind::Thanks => a.thanks,
            AnswerKind::Refusal => a.refusal,
        }
    }

    /// The slots every template of this kind fills: their values are what
    /// an answer must contain.
    pub fn required_slots(self) -> &'static [&'static str] {
        match self {
            AnswerKind::Processing
            | AnswerKind::Cancelled
            | AnswerKind::Returned
            | AnswerKind::OrderUnknown => &["id"],
            AnswerKind::Shipped => &["id", "tracking"],
            AnswerKind::Delivered => &["id", "delivered"],
            AnswerKind::InStock => &["quantity", "price"],
            AnswerKind::OutOfStock | AnswerKind::ProductUnknown => &["product"],
            AnswerKind::Price => &["price"],
            AnswerKind::ShippingCost => &["fee", "free_from"],
            AnswerKind::DeliveryTime => &["min_days", "max_days"],
            AnswerKind::Returns => &["return_days"],
            AnswerKind::OpeningHours => &["weekdays", "saturday"],
            AnswerKind::OpenOnDay => &["open", "close"],
            AnswerKind::Contact => &["email"],
            AnswerKind::AskForId
            | AnswerKind::ClosedOnDay
            | AnswerKind::Greeting
            | AnswerKind::Thanks
            | AnswerKind::Refusal => &[],
        }
    }

    /// The fixed word every template of this kind contains, if any.
    pub fn keyword(self, book: &Phrasebook) -> Option<&'static str> {
        let k = &book.keywords;
        match self {
            AnswerKind::Processing => Some(k.processing),
            AnswerKind::Shipped => Some(k.shipped),
            AnswerKind::Delivered => Some(k.delivered),
            AnswerKind::Cancelled => Some(k.cancelled),
            AnswerKind::Returned => Some(k.returned),
            AnswerKind::OrderUnknown => Some(k.order_unknown),
            AnswerKind::OutOfStock => Some(k.out_of_stock),
            AnswerKind::ProductUnknown => Some(k.product_unknown),
            AnswerKind::ClosedOnDay => Some(k.closed),
            AnswerKind::Refusal => Some(k.refusal),
            _ => None,
        }
    }
}

/// How many phrasings of a list of `n` are held out of training: a fifth,
/// at least one (lists have at least five entries).
pub(crate) fn held_out_count(n: usize) -> usize {
    n.div_ceil(5).max(1)
}

/// Index of the first held-out phrasing of a list of `n`.
pub fn held_out_from(n: usize) -> usize {
    n - held_out_count(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_lists(p: &Phrasebook) -> Vec<(&'static str, &'static [&'static str])> {
        let u = &p.user;
        vec![
            ("order_status", u.order_status),
            ("order_no_id", u.order_no_id),
            ("give_id", u.give_id),
            ("stock", u.stock),
            ("price", u.price),
            ("follow_up_price", u.follow_up_price),
            ("follow_up_order", u.follow_up_order),
            ("shipping_cost", u.shipping_cost),
            ("delivery_time", u.delivery_time),
            ("returns", u.returns),
            ("opening_hours", u.opening_hours),
            ("opening_day", u.opening_day),
            ("contact", u.contact),
            ("greeting", u.greeting),
            ("thanks", u.thanks),
            ("out_of_scope", u.out_of_scope),
        ]
    }

    #[test]
    fn phrasebooks_are_complete_and_consistent() {
        for language in Language::ALL {
            let p = language.phrasebook();
            for (name, list) in user_lists(p) {
                assert!(
                    list.len() >= 5,
                    "{language:?} {name}: only {} phrasings",
                    list.len()
                );
                let unique: std::collections::HashSet<_> = list.iter().collect();
                assert_eq!(unique.len(), list.len(), "{language:?} {name}: duplicates");
            }
            for kind in AnswerKind::ALL {
                let list = kind.templates(p);
                assert!(list.len() >= 2, "{language:?} {kind:?}: {list:?}");
                let slots = kind.required_slots().iter().map(|s| format!("{{{s}}}"));
                let needed: Vec<String> = slots.chain(kind.keyword(p).map(str::to_owned)).collect();
                for template in list {
                    for part in &needed {
                        assert!(
                            template.contains(part.as_str()),
                            "{language:?}: {template:?} lacks {part:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn held_out_is_a_fifth() {
        assert_eq!(held_out_from(5), 4);
        assert_eq!(held_out_from(10), 8);
        assert_eq!(held_out_from(12), 9);
    }
}
