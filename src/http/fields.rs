//! Request fields with Vault's coercion rules: durations as seconds or `"1h"`, string lists
//! from an array, a single string or a comma list, booleans from strings, `null` as unset.

use serde_json::{Map, Value};

use crate::engine::error::{EngineError, Result};

fn bad(key: &str, expected: &str) -> EngineError {
    EngineError::InvalidRequest(format!(
        "error converting input for field \"{key}\": expected {expected}"
    ))
}

/// The fields of one request.
#[derive(Debug, Default, Clone)]
pub struct Fields(pub Map<String, Value>);

impl Fields {
    /// The raw value of a field; `null` counts as absent.
    pub fn raw(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    /// Whether the field was sent (and is not null).
    pub fn has(&self, key: &str) -> bool {
        self.raw(key).is_some()
    }

    /// A string field; numbers and booleans are accepted as their text.
    pub fn string(&self, key: &str) -> Result<Option<String>> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(bad(key, "a string")),
        }
    }

    /// A boolean field; `"true"`, `"false"`, `1` and `0` are accepted.
    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "t" => Ok(Some(true)),
                "false" | "0" | "f" | "" => Ok(Some(false)),
                _ => Err(bad(key, "a boolean")),
            },
            Some(Value::Number(n)) => Ok(Some(n.as_i64() != Some(0))),
            Some(_) => Err(bad(key, "a boolean")),
        }
    }

    /// An integer field; numeric strings are accepted.
    pub fn int(&self, key: &str) -> Result<Option<i64>> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| bad(key, "an integer")),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| bad(key, "an integer")),
            Some(_) => Err(bad(key, "an integer")),
        }
    }

    /// A duration in seconds: an integer, a numeric string, or a string like `"1h30m"`.
    pub fn duration(&self, key: &str) -> Result<Option<i64>> {
        let secs = match self.raw(key) {
            None => return Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .ok_or_else(|| bad(key, "a duration"))?,
            Some(Value::String(s)) => {
                parse_duration(s).ok_or_else(|| bad(key, "a duration such as 3600 or \"1h\""))?
            }
            Some(_) => return Err(bad(key, "a duration")),
        };
        if secs < 0 {
            return Err(EngineError::InvalidRequest(format!(
                "field \"{key}\" must not be negative"
            )));
        }
        Ok(Some(secs))
    }

    /// A string list: an array, or a single string that becomes one element (`""` is empty).
    pub fn string_list(&self, key: &str) -> Result<Option<Vec<String>>> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(Some(Vec::new())),
            Some(Value::String(s)) => Ok(Some(vec![s.trim().to_owned()])),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.trim().to_owned()),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err(bad(key, "a list of strings")),
                })
                .collect::<Result<Vec<_>>>()
                .map(|v| Some(v.into_iter().filter(|s| !s.is_empty()).collect())),
            Some(_) => Err(bad(key, "a list of strings")),
        }
    }

    /// A comma-separated list: `"a,b"` or an array.
    pub fn comma_list(&self, key: &str) -> Result<Option<Vec<String>>> {
        match self.raw(key) {
            Some(Value::String(s)) => Ok(Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            )),
            _ => self.string_list(key),
        }
    }

    /// A map of string to string (also accepts `["k=v"]`).
    pub fn kv_pairs(
        &self,
        key: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    other => Ok((k.clone(), other.to_string())),
                })
                .collect::<Result<_>>()
                .map(Some),
            Some(Value::Array(_)) => {
                let items = self.string_list(key)?.unwrap_or_default();
                items
                    .iter()
                    .map(|item| {
                        item.split_once('=')
                            .map(|(k, v)| (k.to_owned(), v.to_owned()))
                            .ok_or_else(|| bad(key, "key=value pairs"))
                    })
                    .collect::<Result<_>>()
                    .map(Some)
            }
            Some(_) => Err(bad(key, "a map")),
        }
    }
}

/// Parses `3600`, `"3600"`, `"3600s"`, `"1h30m"`, `"1h 30m"`, `"768h"`.
pub fn parse_duration(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() {
        return Some(0);
    }
    if let Ok(secs) = text.parse::<i64>() {
        return Some(secs);
    }
    humantime::parse_duration(text)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Fields {
        Fields(v.as_object().unwrap().clone())
    }

    #[test]
    fn durations_coerce_like_vault() {
        let f = fields(
            json!({"a": 60, "b": "1h", "c": "3600", "d": null, "e": "1h30m", "f": -1, "g": "soon"}),
        );
        assert_eq!(f.duration("a").unwrap(), Some(60));
        assert_eq!(f.duration("b").unwrap(), Some(3600));
        assert_eq!(f.duration("c").unwrap(), Some(3600));
        assert_eq!(f.duration("d").unwrap(), None);
        assert_eq!(f.duration("e").unwrap(), Some(5400));
        assert!(f.duration("f").is_err());
        assert!(f.duration("g").is_err());
        assert_eq!(f.duration("missing").unwrap(), None);
    }

    #[test]
    fn lists_coerce_like_vault() {
        let f = fields(json!({"a": "x", "b": ["x", " y "], "c": "", "d": "x, y,", "e": 3}));
        assert_eq!(f.string_list("a").unwrap(), Some(vec!["x".into()]));
        assert_eq!(
            f.string_list("b").unwrap(),
            Some(vec!["x".into(), "y".into()])
        );
        assert_eq!(f.string_list("c").unwrap(), Some(vec![]));
        assert_eq!(
            f.comma_list("d").unwrap(),
            Some(vec!["x".into(), "y".into()])
        );
        assert!(f.string_list("e").is_err());
    }

    #[test]
    fn booleans_and_ints() {
        let f = fields(json!({"a": "true", "b": false, "c": "7", "d": "x"}));
        assert_eq!(f.bool("a").unwrap(), Some(true));
        assert_eq!(f.bool("b").unwrap(), Some(false));
        assert_eq!(f.int("c").unwrap(), Some(7));
        assert!(f.int("d").is_err());
        assert!(f.bool("d").is_err());
    }
}
