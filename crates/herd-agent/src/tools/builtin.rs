//! Built-in tools: a calculator (a small model is bad at arithmetic) and
//! the current date and time (a model knows only its training date).

use std::time::{SystemTime, UNIX_EPOCH};

use herd_shop::date::Date;
use herd_tokenizer::ToolDefinition;
use serde_json::{json, Value};

use super::Failure;

/// The calculator's definition.
pub(crate) fn calculator_definition(name: Option<&str>) -> ToolDefinition {
    ToolDefinition {
        name: name.unwrap_or("calculator").to_owned(),
        description: "Evaluate an arithmetic expression with + - * / ^ and parentheses.".into(),
        parameters: json!({
            "type": "object",
            "properties": {"expression": {"type": "string", "description": "For example (24.90 * 3) - 5."}},
            "required": ["expression"],
        }),
    }
}

/// The date tool's definition.
pub(crate) fn datetime_definition(name: Option<&str>) -> ToolDefinition {
    ToolDefinition {
        name: name.unwrap_or("current_datetime").to_owned(),
        description: "The current date, weekday and time (UTC).".into(),
        parameters: json!({"type": "object", "properties": {}}),
    }
}

/// `{"expression": "..."}` → `{"result": number}`.
pub(crate) fn calculate(arguments: &Value) -> Result<Value, Failure> {
    let expression = arguments["expression"].as_str().unwrap_or_default();
    let result = evaluate_expression(expression).map_err(Failure::error)?;
    Ok(json!({ "expression": expression, "result": result }))
}

/// Evaluates `+ - * / ^`, unary minus and parentheses over decimal numbers
/// (`^` binds tightest and to the right). Errors name the position.
pub fn evaluate_expression(text: &str) -> Result<f64, String> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        at: 0,
        depth: 0,
    };
    let value = parser.sum()?;
    parser.skip_spaces();
    if parser.at < parser.bytes.len() {
        return Err(format!(
            "unexpected {:?} at {}",
            text[parser.at..].chars().next().unwrap_or(' '),
            parser.at
        ));
    }
    if !value.is_finite() {
        return Err("the result is not a finite number (division by zero?)".into());
    }
    Ok(value)
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn skip_spaces(&mut self) {
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.skip_spaces();
        let hit = self.bytes.get(self.at) == Some(&byte);
        self.at += usize::from(hit);
        hit
    }

    fn sum(&mut self) -> Result<f64, String> {
        let mut value = self.product()?;
        loop {
            if self.eat(b'+') {
                value += self.product()?;
            } else if self.eat(b'-') {
                value -= self.product()?;
            } else {
                return Ok(value);
            }
        }
    }

    fn product(&mut self) -> Result<f64, String> {
        let mut value = self.power()?;
        loop {
            if self.eat(b'*') {
                value *= self.power()?;
            } else if self.eat(b'/') {
                value /= self.power()?;
            } else {
                return Ok(value);
            }
        }
    }

    fn power(&mut self) -> Result<f64, String> {
        let base = self.unary()?;
        if self.eat(b'^') {
            Ok(base.powf(self.power()?))
        } else {
            Ok(base)
        }
    }

    fn unary(&mut self) -> Result<f64, String> {
        if self.eat(b'-') {
            return Ok(-self.unary()?);
        }
        if self.eat(b'(') {
            self.depth += 1;
            if self.depth > 64 {
                return Err("parentheses nested too deeply".into());
            }
            let value = self.sum()?;
            self.depth -= 1;
            return match self.eat(b')') {
                true => Ok(value),
                false => Err(format!("missing ')' at {}", self.at)),
            };
        }
        self.number()
    }

    fn number(&mut self) -> Result<f64, String> {
        self.skip_spaces();
        let start = self.at;
        while self
            .bytes
            .get(self.at)
            .is_some_and(|b| b.is_ascii_digit() || *b == b'.')
        {
            self.at += 1;
        }
        let digits = std::str::from_utf8(&self.bytes[start..self.at]).unwrap_or_default();
        digits
            .parse()
            .map_err(|_| format!("expected a number at {start}"))
    }
}

/// `{"date": "2026-11-30", "weekday": "Monday", "time": "12:05:09", "timezone": "UTC"}`.
pub(crate) fn now() -> Value {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let date = Date::from_unix_days((seconds / 86_400) as i32);
    let time = seconds % 86_400;
    json!({
        "date": date.to_string(),
        "weekday": format!("{:?}", date.weekday()),
        "time": format!("{:02}:{:02}:{:02}", time / 3600, time / 60 % 60, time % 60),
        "timezone": "UTC",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_follows_precedence() {
        assert_eq!(
            evaluate_expression("(24.90 * 3) - 5").unwrap(),
            24.90 * 3.0 - 5.0
        );
        assert_eq!(evaluate_expression("2 ^ 3 ^ 2").unwrap(), 512.0);
        assert_eq!(evaluate_expression("-2 * -(1 + 2)").unwrap(), 6.0);
        for bad in ["1 +", "1 / 0", "2 * (3", "drop table", "1 2"] {
            assert!(evaluate_expression(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn now_names_the_date_and_weekday() {
        let now = now();
        let date = now["date"].as_str().unwrap();
        assert_eq!(date.len(), 10, "{date}");
        assert!(date.starts_with("20"), "{date}");
        let weekday = now["weekday"].as_str().unwrap();
        assert!(weekday.ends_with("day") && weekday.chars().next().unwrap().is_uppercase());
    }
}
