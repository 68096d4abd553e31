//! Ready-made agents. `shop-support` is the embedded shop's support agent:
//! a SQLite copy of `herd-shop`'s deterministic shop (products, customers,
//! orders, order items) and the two tools the embedded model was trained
//! to call, as SQL tools whose results are byte for byte the JSON of
//! [`herd_shop::Shop::execute`] — the text the corpus showed the model.

use std::path::{Path, PathBuf};

use herd_shop::{Shop, ShopTool};
use rusqlite::{params, Connection};

use crate::config::{AgentFile, Limits, RowMode, ToolFile, AGENT_FILE, EMBEDDED};
use crate::error::AgentError;

/// The templates `herd agent new` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// Customer support for the embedded shop.
    ShopSupport,
}

impl Template {
    /// Every template, by name.
    pub const ALL: [(Template, &'static str); 1] = [(Template::ShopSupport, "shop-support")];

    /// The template called `name`.
    pub fn from_name(name: &str) -> Option<Template> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(t, _)| *t)
    }

    /// Writes the agent into `dir` (created if needed; an existing
    /// `agent.toml` is never overwritten). Returns the files written.
    pub fn write(self, dir: &Path) -> Result<Vec<PathBuf>, AgentError> {
        match self {
            Template::ShopSupport => write_shop_support(dir, herd_shop::DEFAULT_SEED),
        }
    }
}

/// The database file of the shop template.
pub const SHOP_DATABASE: &str = "shop.db";

const LOOKUP_ORDER_SQL: &str = "\
SELECT o.id AS order_id, o.status, o.ordered, o.shipped, o.estimated_delivery, o.delivered,
       o.carrier, o.tracking,
       (SELECT json_group_array(json_object('product', COALESCE(p.name_en, i.sku), 'quantity', i.quantity) ORDER BY i.line)
          FROM order_items i LEFT JOIN products p ON p.sku = i.sku WHERE i.order_id = o.id) AS items,
       printf('%d.%02d EUR', o.total_cents / 100, o.total_cents % 100) AS total
FROM orders o WHERE o.id = :order_id";

const CHECK_STOCK_SQL: &str = "\
SELECT CASE WHEN lower(name_de) = lower(trim(:product)) THEN name_de ELSE name_en END AS product,
       sku,
       CASE WHEN stock > 0 THEN 'true' ELSE 'false' END AS in_stock,
       stock AS quantity,
       printf('%d.%02d EUR', price_cents / 100, price_cents % 100) AS price
FROM products
WHERE lower(trim(:product)) IN (lower(sku), lower(name_en), lower(name_de))
ORDER BY rowid LIMIT 1";

/// The shop template's definition (tools as SQL on [`SHOP_DATABASE`]).
pub fn shop_support_file(shop: &Shop) -> AgentFile {
    let tool = |tool: ShopTool, query: &str, not_found: &str, json_columns: &[&str]| {
        let definition = tool.definition();
        ToolFile::Sql {
            name: definition.name,
            description: definition.description,
            parameters: definition.parameters,
            database: PathBuf::from(SHOP_DATABASE),
            query: query.to_owned(),
            rows: RowMode::One,
            not_found: Some(not_found.to_owned()),
            json_columns: json_columns.iter().map(|c| (*c).to_owned()).collect(),
            omit_nulls: true,
        }
    };
    AgentFile {
        name: "shop-support".into(),
        model: EMBEDDED.into(),
        instructions: shop.system_prompt(),
        limits: Limits::default(),
        guard: None,
        tools: vec![
            tool(
                ShopTool::LookupOrder,
                LOOKUP_ORDER_SQL,
                "no order with number {order_id}",
                &["items"],
            ),
            tool(
                ShopTool::CheckStock,
                CHECK_STOCK_SQL,
                "no product named {product}",
                &["in_stock"],
            ),
        ],
    }
}

fn write_shop_support(dir: &Path, seed: u64) -> Result<Vec<PathBuf>, AgentError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| AgentError::Io { path, source }
    };
    let agent_path = dir.join(AGENT_FILE);
    if agent_path.exists() {
        return Err(AgentError::Io {
            path: agent_path,
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "already exists; choose an empty directory",
            ),
        });
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let shop = Shop::generate(seed);
    let database = dir.join(SHOP_DATABASE);
    let tmp = dir.join(format!(".{SHOP_DATABASE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    write_shop_database(&shop, &tmp)?;
    std::fs::rename(&tmp, &database).map_err(io(&database))?;
    let text = toml::to_string_pretty(&shop_support_file(&shop)).map_err(|e| AgentError::Toml {
        path: agent_path.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&agent_path, text).map_err(io(&agent_path))?;
    Ok(vec![agent_path, database])
}

/// Writes the shop's tables into a new SQLite file.
pub fn write_shop_database(shop: &Shop, path: &Path) -> Result<(), AgentError> {
    let sql = AgentError::sqlite(format!("writing {}", path.display()));
    let mut db = Connection::open(path).map_err(sql)?;
    let result = fill(&mut db, shop);
    result.map_err(AgentError::sqlite(format!("writing {}", path.display())))
}

fn fill(db: &mut Connection, shop: &Shop) -> rusqlite::Result<()> {
    let tx = db.transaction()?;
    tx.execute_batch(
        "CREATE TABLE products (sku TEXT PRIMARY KEY, name_en TEXT NOT NULL, name_de TEXT NOT NULL,
             category TEXT NOT NULL, price_cents INTEGER NOT NULL, stock INTEGER NOT NULL);
         CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, city TEXT NOT NULL);
         CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
             status TEXT NOT NULL, ordered TEXT NOT NULL, shipped TEXT, estimated_delivery TEXT,
             delivered TEXT, carrier TEXT, tracking TEXT, total_cents INTEGER NOT NULL);
         CREATE TABLE order_items (order_id INTEGER NOT NULL REFERENCES orders(id), line INTEGER NOT NULL,
             sku TEXT NOT NULL, quantity INTEGER NOT NULL, unit_price_cents INTEGER NOT NULL,
             PRIMARY KEY (order_id, line));",
    )?;
    for p in &shop.products {
        let category = serde_json::to_value(p.category).unwrap_or_default();
        tx.execute(
            "INSERT INTO products VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                p.sku,
                p.name_en,
                p.name_de,
                category.as_str(),
                p.price.0,
                p.stock
            ],
        )?;
    }
    for c in &shop.customers {
        tx.execute(
            "INSERT INTO customers VALUES (?1, ?2, ?3, ?4)",
            params![c.id, c.name, c.email, c.city],
        )?;
    }
    for o in &shop.orders {
        let date = |d: Option<herd_shop::date::Date>| d.map(|d| d.to_string());
        tx.execute(
            "INSERT INTO orders VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                o.id,
                o.customer_id,
                o.status.as_str(),
                o.ordered.to_string(),
                date(o.shipped),
                date(o.estimated_delivery),
                date(o.delivered),
                o.carrier,
                o.tracking,
                o.total.0
            ],
        )?;
        for (line, item) in o.items.iter().enumerate() {
            tx.execute(
                "INSERT INTO order_items VALUES (?1, ?2, ?3, ?4, ?5)",
                params![o.id, line, item.sku, item.quantity, item.unit_price.0],
            )?;
        }
    }
    tx.commit()
}
