//! The shop's data: catalogue, policies, customers and orders, generated
//! from a seed.
//!
//! Every table is flat (ids and plain values, items in their own list) so it
//! maps one to one onto SQL tables (`products`, `customers`, `orders`,
//! `order_items`) for the agent's database.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::date::{Date, Weekday, TODAY};

/// An amount in euro cents; integers, so totals add up exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Cents(pub u32);

impl Cents {
    /// `24.90`: the form tool results and English answers use.
    pub fn decimal(self) -> String {
        format!("{}.{:02}", self.0 / 100, self.0 % 100)
    }

    /// `24,90`: the German form.
    pub fn decimal_comma(self) -> String {
        format!("{},{:02}", self.0 / 100, self.0 % 100)
    }
}

/// What kind of product it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Pots, pans, kettles.
    Kitchen,
    /// Blankets, lamps, decoration.
    Home,
    /// Paper and desk things.
    Office,
    /// Garden and travel.
    Outdoor,
}

/// One product of the catalogue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Product {
    /// Stock-keeping unit, e.g. `P-104`.
    pub sku: String,
    /// English name; ASCII, like the German one, so a tool-call argument
    /// copies it without escapes.
    pub name_en: String,
    /// German name.
    pub name_de: String,
    /// Its category.
    pub category: Category,
    /// Price per piece.
    pub price: Cents,
    /// Pieces in the warehouse (0 = out of stock).
    pub stock: u32,
}

/// Where an order is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Paid, being packed.
    Processing,
    /// With the carrier.
    Shipped,
    /// Arrived.
    Delivered,
    /// Cancelled before shipping.
    Cancelled,
    /// Sent back and refunded.
    Returned,
}

impl OrderStatus {
    /// All statuses.
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::Processing,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
        OrderStatus::Returned,
    ];

    /// The lower-case name tool results carry.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Processing => "processing",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Returned => "returned",
        }
    }
}

/// A registered customer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Customer {
    /// Customer number.
    pub id: u32,
    /// Full name.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// Home town.
    pub city: String,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderItem {
    /// The product's SKU.
    pub sku: String,
    /// Pieces ordered.
    pub quantity: u32,
    /// Price per piece when ordered.
    pub unit_price: Cents,
}

/// An order (ids 1000–1999).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Order {
    /// Order number.
    pub id: u32,
    /// Who ordered.
    pub customer_id: u32,
    /// Where it is.
    pub status: OrderStatus,
    /// When it was placed.
    pub ordered: Date,
    /// Handed to the carrier (shipped, delivered, returned).
    pub shipped: Option<Date>,
    /// Expected arrival (processing, shipped).
    pub estimated_delivery: Option<Date>,
    /// Arrived (delivered, returned).
    pub delivered: Option<Date>,
    /// Carrier name (shipped, delivered, returned).
    pub carrier: Option<String>,
    /// Tracking number (shipped, delivered, returned).
    pub tracking: Option<String>,
    /// What was ordered.
    pub items: Vec<OrderItem>,
    /// Sum of the items plus shipping.
    pub total: Cents,
}

/// Opening hours of one day, in whole hours; `None` = closed.
pub type Hours = Option<(u8, u8)>;

/// `09:00`: how hours are written in prompts and answers.
pub fn hour_text(hour: u8) -> String {
    format!("{hour:02}:00")
}

/// `09:00-18:00`, or `closed`.
pub fn hours_text(hours: Hours) -> String {
    hours.map_or_else(
        || "closed".to_owned(),
        |(open, close)| format!("{}-{}", hour_text(open), hour_text(close)),
    )
}

/// Shipping, returns, opening hours and contact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policies {
    /// Shipping fee per order below the free-shipping threshold.
    pub shipping_fee: Cents,
    /// Orders from this amount ship free.
    pub free_shipping_from: Cents,
    /// Delivery time in business days, fastest and slowest.
    pub delivery_days: (u8, u8),
    /// Days after delivery within which goods can be returned.
    pub return_days: u32,
    /// Opening hours, Monday first.
    pub hours: [Hours; 7],
    /// Support e-mail.
    pub email: String,
    /// Support phone.
    pub phone: String,
}

impl Policies {
    /// The hours of `day`.
    pub fn hours_on(&self, day: Weekday) -> Hours {
        self.hours[day as usize]
    }
}

/// The whole shop.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shop {
    /// The seed it was generated from.
    pub seed: u64,
    /// Its name.
    pub name: String,
    /// The date its data is current to.
    pub today: Date,
    /// Currency of every amount.
    pub currency: &'static str,
    /// Shipping, returns, hours, contact.
    pub policies: Policies,
    /// The catalogue.
    pub products: Vec<Product>,
    /// Registered customers.
    pub customers: Vec<Customer>,
    /// Orders 1000–1999, by id.
    pub orders: Vec<Order>,
}

/// The seed of the shop and corpus herd ships.
pub const DEFAULT_SEED: u64 = 0;
/// Orders are numbered from here ...
pub const FIRST_ORDER_ID: u32 = 1000;
/// ... to here, inclusive.
pub const LAST_ORDER_ID: u32 = 1999;

/// (English, German, category, lowest and highest price in euros).
const CATALOGUE: [(&str, &str, Category, u32, u32); 24] = [
    (
        "Espresso Maker",
        "Espressokocher",
        Category::Kitchen,
        25,
        60,
    ),
    ("Electric Kettle", "Wasserkocher", Category::Kitchen, 20, 45),
    ("Teapot", "Teekanne", Category::Kitchen, 15, 35),
    ("Chef Knife", "Kochmesser", Category::Kitchen, 30, 90),
    ("Cutting Board", "Schneidebrett", Category::Kitchen, 12, 30),
    ("Frying Pan", "Bratpfanne", Category::Kitchen, 25, 70),
    ("Cooking Pot", "Kochtopf", Category::Kitchen, 30, 80),
    ("Coffee Mug", "Kaffeebecher", Category::Kitchen, 6, 15),
    ("Wool Blanket", "Wolldecke", Category::Home, 40, 110),
    ("Cushion Cover", "Kissenbezug", Category::Home, 10, 25),
    ("Table Lamp", "Tischlampe", Category::Home, 35, 95),
    ("Scented Candle", "Duftkerze", Category::Home, 8, 20),
    ("Flower Vase", "Blumenvase", Category::Home, 15, 40),
    ("Wall Clock", "Wanduhr", Category::Home, 20, 55),
    ("Bath Towel", "Badetuch", Category::Home, 12, 30),
    ("Picture Frame", "Bilderrahmen", Category::Home, 8, 25),
    ("Notebook", "Notizbuch", Category::Office, 5, 15),
    (
        "Desk Organizer",
        "Schreibtischablage",
        Category::Office,
        15,
        35,
    ),
    ("Backpack", "Rucksack", Category::Outdoor, 40, 120),
    ("Water Bottle", "Trinkflasche", Category::Outdoor, 10, 30),
    ("Umbrella", "Regenschirm", Category::Outdoor, 12, 35),
    (
        "Garden Gloves",
        "Gartenhandschuhe",
        Category::Outdoor,
        8,
        20,
    ),
    ("Plant Pot", "Blumentopf", Category::Outdoor, 6, 25),
    ("Bird Feeder", "Vogelhaus", Category::Outdoor, 15, 40),
];

const SHOP_NAMES: [&str; 6] = [
    "Lindenhof Goods",
    "Alder & Finch",
    "Nordlicht Store",
    "Maple Lane Shop",
    "Kleinwaren Berlin",
    "Oak and Ember",
];
const FIRST_NAMES: [&str; 16] = [
    "Anna", "Lukas", "Sophie", "Jonas", "Emma", "Felix", "Mia", "Paul", "Olivia", "James", "Lena",
    "Noah", "Clara", "Ben", "Grace", "Tom",
];
const LAST_NAMES: [&str; 12] = [
    "Schmidt", "Miller", "Weber", "Taylor", "Fischer", "Brown", "Wagner", "Wilson", "Becker",
    "Clark", "Hoffmann", "Evans",
];
const CITIES: [&str; 8] = [
    "Berlin", "Hamburg", "Munich", "Cologne", "Vienna", "Zurich", "London", "Leipzig",
];
const CARRIERS: [(&str, &str); 3] = [("DHL", "DHL"), ("UPS", "1Z"), ("DPD", "DPD")];

impl Shop {
    /// Generates the shop for `seed`; the same seed always gives the same
    /// shop (ChaCha8, no clock, no hash-map order).
    pub fn generate(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let name = (*SHOP_NAMES.choose(&mut rng).expect("non-empty")).to_owned();
        let policies = generate_policies(&mut rng, &name);
        let products = generate_products(&mut rng);
        let customers = generate_customers(&mut rng);
        let orders = (FIRST_ORDER_ID..=LAST_ORDER_ID)
            .map(|id| generate_order(&mut rng, id, &products, &customers, &policies))
            .collect();
        Self {
            seed,
            name,
            today: TODAY,
            currency: "EUR",
            policies,
            products,
            customers,
            orders,
        }
    }

    /// The order with this id.
    pub fn order(&self, id: u32) -> Option<&Order> {
        let index = id.checked_sub(FIRST_ORDER_ID)?;
        self.orders.get(usize::try_from(index).ok()?)
    }

    /// The product with this SKU.
    pub fn product_by_sku(&self, sku: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.sku == sku)
    }

    /// The product a customer means: its SKU, English or German name,
    /// ignoring case and surrounding spaces.
    pub fn find_product(&self, query: &str) -> Option<&Product> {
        let query = query.trim();
        self.products.iter().find(|p| {
            [&p.sku, &p.name_en, &p.name_de]
                .iter()
                .any(|name| name.eq_ignore_ascii_case(query))
        })
    }
}

fn generate_policies(rng: &mut ChaCha8Rng, shop_name: &str) -> Policies {
    let open = rng.random_range(8..=10);
    let close = rng.random_range(17..=19);
    let saturday = (rng.random_range(9..=10), rng.random_range(13..=16));
    let mut hours = [Some((open, close)); 7];
    hours[Weekday::Saturday as usize] = Some(saturday);
    hours[Weekday::Sunday as usize] = None;
    let domain: String = shop_name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    let fastest = rng.random_range(1..=3);
    Policies {
        shipping_fee: Cents(*[390, 450, 490, 590].choose(rng).expect("non-empty")),
        free_shipping_from: Cents(*[3000, 4000, 5000, 6000].choose(rng).expect("non-empty")),
        delivery_days: (fastest, fastest + rng.random_range(1..=3)),
        return_days: *[14, 30, 60].choose(rng).expect("non-empty"),
        hours,
        email: format!("support@{domain}.example"),
        phone: format!(
            "+49 30 {:04} {:03}",
            rng.random_range(1000..10000),
            rng.random_range(100..1000)
        ),
    }
}

fn generate_products(rng: &mut ChaCha8Rng) -> Vec<Product> {
    CATALOGUE
        .iter()
        .enumerate()
        .map(|(i, (en, de, category, low, high))| {
            let euros = rng.random_range(*low..=*high);
            let cents = *[0, 50, 90, 95, 99].choose(rng).expect("non-empty");
            let stock = if rng.random_bool(0.2) {
                0
            } else {
                rng.random_range(1..=40)
            };
            Product {
                sku: format!("P-{}", 101 + i),
                name_en: (*en).to_owned(),
                name_de: (*de).to_owned(),
                category: *category,
                price: Cents(euros * 100 + cents),
                stock,
            }
        })
        .collect()
}

fn generate_customers(rng: &mut ChaCha8Rng) -> Vec<Customer> {
    (1..=120)
        .map(|id| {
            let first = *FIRST_NAMES.choose(rng).expect("non-empty");
            let last = *LAST_NAMES.choose(rng).expect("non-empty");
            Customer {
                id,
                name: format!("{first} {last}"),
                email: format!(
                    "{}.{}{id}@mail.example",
                    first.to_lowercase(),
                    last.to_lowercase()
                ),
                city: (*CITIES.choose(rng).expect("non-empty")).to_owned(),
            }
        })
        .collect()
}

fn generate_order(
    rng: &mut ChaCha8Rng,
    id: u32,
    products: &[Product],
    customers: &[Customer],
    policies: &Policies,
) -> Order {
    let age = rng.random_range(0..=60);
    let ordered = TODAY.add_days(-age);
    let lines = rng.random_range(1..=3);
    let items: Vec<OrderItem> = products
        .choose_multiple(rng, lines)
        .map(|p| OrderItem {
            sku: p.sku.clone(),
            quantity: if rng.random_bool(0.8) {
                1
            } else {
                rng.random_range(2..=4)
            },
            unit_price: p.price,
        })
        .collect();
    let subtotal: u32 = items.iter().map(|i| i.unit_price.0 * i.quantity).sum();
    let shipping = if subtotal >= policies.free_shipping_from.0 {
        0
    } else {
        policies.shipping_fee.0
    };
    let (fastest, slowest) = policies.delivery_days;
    let shipped = ordered.add_days(rng.random_range(1..=2));
    let arrival = shipped.add_days(rng.random_range(i32::from(fastest)..=i32::from(slowest)));
    let status = if rng.random_bool(0.06) {
        OrderStatus::Cancelled
    } else if TODAY < shipped {
        OrderStatus::Processing
    } else if TODAY < arrival {
        OrderStatus::Shipped
    } else if age > 14 && rng.random_bool(0.1) {
        OrderStatus::Returned
    } else {
        OrderStatus::Delivered
    };
    let (carrier, prefix) = *CARRIERS.choose(rng).expect("non-empty");
    let tracking = format!("{prefix}{:010}", rng.random_range(0..10_000_000_000u64));
    let sent = matches!(
        status,
        OrderStatus::Shipped | OrderStatus::Delivered | OrderStatus::Returned
    );
    let arrived = matches!(status, OrderStatus::Delivered | OrderStatus::Returned);
    let customer = customers.choose(rng).expect("non-empty");
    Order {
        id,
        customer_id: customer.id,
        status,
        ordered,
        shipped: sent.then_some(shipped),
        estimated_delivery: matches!(status, OrderStatus::Processing | OrderStatus::Shipped)
            .then_some(arrival),
        delivered: arrived.then_some(arrival),
        carrier: sent.then(|| carrier.to_owned()),
        tracking: sent.then_some(tracking),
        items,
        total: Cents(subtotal + shipping),
    }
}
