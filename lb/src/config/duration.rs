//! Durations as written in the config file: `500ms`, `2s`, `1m30s` (humantime syntax).
//!
//! Durations are kept as raw YAML values during parsing and converted here, so that a bad
//! duration becomes one entry in the error list instead of aborting the whole parse.

use std::time::Duration;

use serde_yaml::Value;

/// Parse a YAML scalar as a duration. Bare numbers are refused: `2` could mean seconds or
/// milliseconds, and guessing wrong makes a health check 1000x too eager.
pub(crate) fn parse(value: &Value) -> Result<Duration, String> {
    match value {
        Value::String(s) => {
            humantime::parse_duration(s.trim()).map_err(|_| format!("{s:?} is not a duration"))
        }
        Value::Number(n) => Err(format!(
            "{n} is not a duration (write a unit, e.g. \"{n}s\" or \"{n}ms\")"
        )),
        other => Err(format!("{} is not a duration", show(other))),
    }
}

/// A short rendering of a YAML value for error messages.
pub(crate) fn show(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".to_string(),
        Value::Mapping(_) => "a mapping".to_string(),
        Value::Tagged(t) => format!("!{}", t.tag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        let v = |s: &str| Value::String(s.into());
        assert_eq!(parse(&v("500ms")), Ok(Duration::from_millis(500)));
        assert_eq!(parse(&v("2s")), Ok(Duration::from_secs(2)));
        assert_eq!(parse(&v("1m 30s")), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn refuses_garbage_and_bare_numbers() {
        assert_eq!(
            parse(&Value::String("5x".into())),
            Err("\"5x\" is not a duration".to_string())
        );
        assert!(parse(&Value::Number(5.into())).is_err());
        assert!(parse(&Value::Bool(true)).is_err());
    }
}
