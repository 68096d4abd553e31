//! Built-in tools: a calculator (a small model is bad at arithmetic) and
//! the current date and time (a model knows only its training date).

use std::time::{SystemTime, UNIX_EPOCH};

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
    let days = (seconds / 86_400) as i64;
    let (year, month, day) = civil_from_days(days);
    let weekdays = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    let time = seconds % 86_400;
    json!({
        "date": format!("{year:04}-{month:02}-{day:02}"),
        "weekday": weekdays[days.rem_euclid(7) as usize],
        "time": format!("{:02}:{:02}:{:02}", time / 3600, time / 60 % 60, time % 60),
        "timezone": "UTC",
    })
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
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
    fn calendar_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_930), (2024, 7, 26));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
