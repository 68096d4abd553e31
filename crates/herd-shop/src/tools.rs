//! The shop's tools: their definitions (rendered into the Llama 3.1 tool
//! prompt) and their execution against the shop's data.
//!
//! Results are small flat JSON objects whose fields an answer copies
//! verbatim (status, dates, tracking number, price), so a small model can
//! learn to answer from them. A call that finds nothing is not an error of
//! the tool: it returns `{"error": "..."}`, which goes back to the model as
//! the result, as the agent loop does with every tool failure.

use serde_json::{json, Value};

use crate::error::ShopError;
use crate::shop::{Product, Shop};
use herd_tokenizer::ToolDefinition;

/// The tools the shop offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShopTool {
    /// `lookup_order(order_id: integer)`: status, dates, tracking, items.
    LookupOrder,
    /// `check_stock(product: string)`: availability and price.
    CheckStock,
}

impl ShopTool {
    /// Both tools, in the order the prompt lists them.
    pub const ALL: [ShopTool; 2] = [ShopTool::LookupOrder, ShopTool::CheckStock];

    /// The function name the model writes.
    pub const fn name(self) -> &'static str {
        match self {
            ShopTool::LookupOrder => "lookup_order",
            ShopTool::CheckStock => "check_stock",
        }
    }

    /// The tool with this function name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|tool| tool.name() == name)
    }

    /// The definition shown to the model.
    pub fn definition(self) -> ToolDefinition {
        let (description, parameters) = match self {
            ShopTool::LookupOrder => (
                "Look up a customer's order by its order number: status, dates, carrier, tracking number and items.",
                json!({
                    "type": "object",
                    "properties": {"order_id": {"type": "integer", "description": "The order number, e.g. 1042."}},
                    "required": ["order_id"],
                }),
            ),
            ShopTool::CheckStock => (
                "Check whether a product is in stock and what it costs.",
                json!({
                    "type": "object",
                    "properties": {"product": {"type": "string", "description": "The product's name or SKU."}},
                    "required": ["product"],
                }),
            ),
        };
        ToolDefinition {
            name: self.name().to_owned(),
            description: description.to_owned(),
            parameters,
        }
    }
}

/// The definitions of all shop tools.
pub fn tool_definitions() -> Vec<ToolDefinition> {
    ShopTool::ALL.iter().map(|t| t.definition()).collect()
}

/// A validated call of a shop tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolRequest {
    /// Look up this order number.
    LookupOrder {
        /// The order number.
        order_id: u32,
    },
    /// Check this product (name or SKU, as the customer wrote it).
    CheckStock {
        /// The product.
        product: String,
    },
}

impl ToolRequest {
    /// Validates a call: a known function name and arguments that match its
    /// schema (required field present, right type, no extra fields).
    pub fn parse(name: &str, arguments: &Value) -> Result<Self, ShopError> {
        let tool =
            ShopTool::from_name(name).ok_or_else(|| ShopError::UnknownTool(name.to_owned()))?;
        let bad = |problem: String| ShopError::BadArguments {
            tool: tool.name(),
            problem,
        };
        let object = arguments
            .as_object()
            .ok_or_else(|| bad("arguments must be a JSON object".into()))?;
        let field = match tool {
            ShopTool::LookupOrder => "order_id",
            ShopTool::CheckStock => "product",
        };
        if let Some(extra) = object.keys().find(|k| k.as_str() != field) {
            return Err(bad(format!("unexpected argument {extra:?}")));
        }
        let value = object
            .get(field)
            .ok_or_else(|| bad(format!("missing required argument {field:?}")))?;
        match tool {
            ShopTool::LookupOrder => value
                .as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .map(|order_id| ToolRequest::LookupOrder { order_id })
                .ok_or_else(|| {
                    bad(format!(
                        "order_id must be a non-negative integer, got {value}"
                    ))
                }),
            ShopTool::CheckStock => value
                .as_str()
                .filter(|s| !s.trim().is_empty())
                .map(|s| ToolRequest::CheckStock {
                    product: s.to_owned(),
                })
                .ok_or_else(|| bad(format!("product must be a non-empty string, got {value}"))),
        }
    }

    /// The tool this request calls.
    pub fn tool(&self) -> ShopTool {
        match self {
            ToolRequest::LookupOrder { .. } => ShopTool::LookupOrder,
            ToolRequest::CheckStock { .. } => ShopTool::CheckStock,
        }
    }

    /// The arguments as a JSON object.
    pub fn arguments(&self) -> Value {
        match self {
            ToolRequest::LookupOrder { order_id } => json!({ "order_id": order_id }),
            ToolRequest::CheckStock { product } => json!({ "product": product }),
        }
    }

    /// The arguments as Python's `json.dumps` writes them
    /// (`{"order_id": 1042}`), the form OpenAI tool calls carry.
    pub fn arguments_text(&self) -> String {
        match self {
            ToolRequest::LookupOrder { order_id } => format!("{{\"order_id\": {order_id}}}"),
            ToolRequest::CheckStock { product } => {
                format!("{{\"product\": {}}}", Value::String(product.clone()))
            }
        }
    }
}

impl Shop {
    /// Runs a validated request against the shop's data.
    pub fn execute(&self, request: &ToolRequest) -> Value {
        match request {
            ToolRequest::LookupOrder { order_id } => self.lookup_order(*order_id),
            ToolRequest::CheckStock { product } => self.check_stock(product),
        }
    }

    /// Parses and runs a call by name; invalid calls are errors, so that
    /// the caller decides whether the model sees them.
    pub fn call(&self, name: &str, arguments: &Value) -> Result<Value, ShopError> {
        Ok(self.execute(&ToolRequest::parse(name, arguments)?))
    }

    fn lookup_order(&self, order_id: u32) -> Value {
        let Some(order) = self.order(order_id) else {
            return json!({ "error": format!("no order with number {order_id}") });
        };
        let items: Vec<Value> = order
            .items
            .iter()
            .map(|item| {
                let name = self
                    .product_by_sku(&item.sku)
                    .map_or(item.sku.as_str(), |p| p.name_en.as_str());
                json!({ "product": name, "quantity": item.quantity })
            })
            .collect();
        let mut result = json!({
            "order_id": order.id,
            "status": order.status.as_str(),
            "ordered": order.ordered,
            "items": items,
            "total": format!("{} {}", order.total.decimal(), self.currency),
        });
        let extra = [
            ("shipped", order.shipped.map(|d| d.to_string())),
            (
                "estimated_delivery",
                order.estimated_delivery.map(|d| d.to_string()),
            ),
            ("delivered", order.delivered.map(|d| d.to_string())),
            ("carrier", order.carrier.clone()),
            ("tracking", order.tracking.clone()),
        ];
        for (key, value) in extra {
            if let Some(value) = value {
                result[key] = Value::String(value);
            }
        }
        result
    }

    fn check_stock(&self, query: &str) -> Value {
        let Some(product) = self.find_product(query) else {
            return json!({ "error": format!("no product named {:?}", query.trim()) });
        };
        json!({
            "product": displayed_name(product, query),
            "sku": product.sku,
            "in_stock": product.stock > 0,
            "quantity": product.stock,
            "price": format!("{} {}", product.price.decimal(), self.currency),
        })
    }
}

/// The product's name in the language the customer asked in.
fn displayed_name<'p>(product: &'p Product, query: &str) -> &'p str {
    if product.name_de.eq_ignore_ascii_case(query.trim()) {
        &product.name_de
    } else {
        &product.name_en
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shop::DEFAULT_SEED;

    #[test]
    fn lookup_and_stock_answer_from_the_data() {
        let shop = Shop::generate(DEFAULT_SEED);
        let order = shop.order(1042).expect("order 1042");
        let result = shop
            .call("lookup_order", &json!({"order_id": 1042}))
            .expect("call");
        assert_eq!(result["order_id"], 1042);
        assert_eq!(result["status"], order.status.as_str());
        assert_eq!(result["ordered"], order.ordered.to_string());
        assert_eq!(
            result.get("tracking").and_then(Value::as_str),
            order.tracking.as_deref()
        );
        let missing = shop
            .call("lookup_order", &json!({"order_id": 2500}))
            .expect("call");
        assert_eq!(missing["error"], "no order with number 2500");

        let kettle = shop.find_product("Wasserkocher").expect("kettle");
        let stock = shop
            .call("check_stock", &json!({"product": "  wasserkocher "}))
            .expect("call");
        assert_eq!(stock["product"], "Wasserkocher");
        assert_eq!(stock["quantity"], kettle.stock);
        assert_eq!(stock["price"], format!("{} EUR", kettle.price.decimal()));
        let by_sku = shop
            .call("check_stock", &json!({"product": kettle.sku}))
            .expect("call");
        assert_eq!(by_sku["product"], "Electric Kettle");
    }

    #[test]
    fn invalid_calls_are_refused_with_the_reason() {
        let shop = Shop::generate(DEFAULT_SEED);
        let cases = [
            ("delete_all", json!({}), "unknown tool \"delete_all\""),
            (
                "lookup_order",
                json!([1042]),
                "arguments must be a JSON object",
            ),
            (
                "lookup_order",
                json!({}),
                "missing required argument \"order_id\"",
            ),
            (
                "lookup_order",
                json!({"order_id": "1042; DROP TABLE"}),
                "non-negative integer",
            ),
            (
                "lookup_order",
                json!({"order_id": -1}),
                "non-negative integer",
            ),
            (
                "lookup_order",
                json!({"order_id": 1, "x": 2}),
                "unexpected argument \"x\"",
            ),
            ("check_stock", json!({"product": " "}), "non-empty string"),
        ];
        for (name, args, want) in cases {
            let err = shop.call(name, &args).expect_err(name).to_string();
            assert!(err.contains(want), "{name} {args}: {err}");
        }
    }

    #[test]
    fn arguments_text_is_python_json() {
        let r = ToolRequest::CheckStock {
            product: "Tea \"pot\"".into(),
        };
        assert_eq!(r.arguments_text(), r#"{"product": "Tea \"pot\""}"#);
        let parsed: Value = serde_json::from_str(&r.arguments_text()).unwrap();
        assert_eq!(parsed, r.arguments());
    }
}
