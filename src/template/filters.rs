//! The filters. Each takes the value it filters first; text arguments that are numbers or
//! booleans are used as their JSON text. Error details name the filter, never the value.

use super::*;

fn text(filter: &str, v: &Value) -> Result<String, EngineError> {
    match v.kind() {
        ValueKind::String => Ok(v.as_str().unwrap_or_default().to_string()),
        ValueKind::Number | ValueKind::Bool => Ok(v.to_string()),
        ValueKind::Undefined => Err(EngineError::new(
            ErrorKind::UndefinedError,
            format!("{filter} got an undefined value (a field the data lacks?)"),
        )),
        other => Err(EngineError::new(
            ErrorKind::InvalidOperation,
            format!("{filter} expects text, got {other}"),
        )),
    }
}

pub fn b64enc(v: Value) -> Result<String, EngineError> {
    Ok(base64::engine::general_purpose::STANDARD.encode(text("b64enc", &v)?))
}

pub fn b64dec(v: Value) -> Result<String, EngineError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text("b64dec", &v)?.trim())
        .map_err(|_| EngineError::new(ErrorKind::InvalidOperation, "b64dec: not valid base64"))?;
    String::from_utf8(bytes).map_err(|_| {
        EngineError::new(
            ErrorKind::InvalidOperation,
            "b64dec: the decoded bytes are not UTF-8 text",
        )
    })
}

/// Percent-encodes everything but RFC 3986's unreserved characters (safe in any URL part).
pub fn urlencode(v: Value) -> Result<String, EngineError> {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    Ok(percent_encoding::utf8_percent_encode(&text("urlencode", &v)?, SET).to_string())
}

/// Most items (list entries, map entries) `toJson` and `toYaml` walk: the engine repeats
/// lists lazily, so a value can be far larger than what the fuel paid for.
const MAX_ITEMS: usize = 100_000;

/// The value as JSON, walking at most [`MAX_ITEMS`] items and [`MAX_OUTPUT_PER_KEY`] bytes
/// of text.
fn bounded_json(filter: &str, v: &Value) -> Result<serde_json::Value, EngineError> {
    struct Budget {
        items: usize,
        bytes: usize,
    }
    fn too_large(filter: &str) -> EngineError {
        EngineError::new(
            ErrorKind::InvalidOperation,
            format!(
                "{filter}: the value is too large (more than {MAX_ITEMS} items or {MAX_OUTPUT_PER_KEY} bytes)"
            ),
        )
    }
    fn walk(
        filter: &str,
        v: &Value,
        budget: &mut Budget,
    ) -> Result<serde_json::Value, EngineError> {
        fn charge(
            filter: &str,
            budget: &mut Budget,
            items: usize,
            bytes: usize,
        ) -> Result<(), EngineError> {
            budget.items = budget
                .items
                .checked_sub(items)
                .ok_or_else(|| too_large(filter))?;
            budget.bytes = budget
                .bytes
                .checked_sub(bytes)
                .ok_or_else(|| too_large(filter))?;
            Ok(())
        }
        Ok(match v.kind() {
            ValueKind::Undefined => {
                return Err(EngineError::new(
                    ErrorKind::UndefinedError,
                    format!("{filter} got an undefined value (a field the data lacks?)"),
                ));
            }
            ValueKind::None => serde_json::Value::Null,
            ValueKind::Bool => serde_json::Value::Bool(v.is_true()),
            ValueKind::Number => {
                charge(filter, budget, 1, 32)?;
                serde_json::to_value(v).map_err(|_| not_representable(filter))?
            }
            ValueKind::String => {
                let s = v.as_str().unwrap_or_default();
                charge(filter, budget, 1, s.len())?;
                serde_json::Value::String(s.to_string())
            }
            ValueKind::Seq | ValueKind::Iterable => {
                let mut out = Vec::new();
                for item in v.try_iter().map_err(|_| not_representable(filter))? {
                    charge(filter, budget, 1, 1)?;
                    out.push(walk(filter, &item, budget)?);
                }
                serde_json::Value::Array(out)
            }
            ValueKind::Map => {
                let mut out = serde_json::Map::new();
                for key in v.try_iter().map_err(|_| not_representable(filter))? {
                    let name = key
                        .as_str()
                        .map(String::from)
                        .unwrap_or_else(|| key.to_string());
                    charge(filter, budget, 1, name.len())?;
                    let value = v.get_item(&key).map_err(|_| not_representable(filter))?;
                    out.insert(name, walk(filter, &value, budget)?);
                }
                serde_json::Value::Object(out)
            }
            _ => return Err(not_representable(filter)),
        })
    }
    walk(
        filter,
        v,
        &mut Budget {
            items: MAX_ITEMS,
            bytes: MAX_OUTPUT_PER_KEY,
        },
    )
}

fn not_representable(filter: &str) -> EngineError {
    EngineError::new(
        ErrorKind::BadSerialization,
        format!("{filter}: the value is not representable"),
    )
}

pub fn to_json(v: Value) -> Result<String, EngineError> {
    let value = bounded_json("toJson", &v)?;
    serde_json::to_string(&value).map_err(|_| not_representable("toJson"))
}

/// YAML text without the trailing newline (so that `indent` and inline use compose).
pub fn to_yaml(v: Value) -> Result<String, EngineError> {
    let value = bounded_json("toYaml", &v)?;
    serde_saphyr::to_string(&value)
        .map(|s| s.trim_end_matches('\n').to_string())
        .map_err(|_| not_representable("toYaml"))
}

/// Parses a field holding JSON text into a value. The error gives the position only.
pub fn from_json(v: Value) -> Result<Value, EngineError> {
    let text = text("fromJson", &v)?;
    let parsed: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        EngineError::new(
            ErrorKind::InvalidOperation,
            format!(
                "fromJson: not valid JSON (at line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    Ok(Value::from(Serde(parsed)))
}

fn missing(v: &Value) -> bool {
    v.is_undefined() || v.is_none() || v.as_str() == Some("")
}

/// `value | default(other)`: `other` when the value is undefined, null or empty text.
pub fn default(v: Value, other: Option<Value>) -> Value {
    if missing(&v) {
        other.unwrap_or_else(|| Value::from(""))
    } else {
        v
    }
}

/// `value | required("message")`: fails with the message (the template author's text)
/// when the value is undefined, null or empty text.
pub fn required(v: Value, message: Option<String>) -> Result<Value, EngineError> {
    if missing(&v) {
        return Err(EngineError::new(
            ErrorKind::InvalidOperation,
            message.unwrap_or_else(|| "a required value is missing".into()),
        ));
    }
    Ok(v)
}

/// `text | indent(width, first=false)`: indents every line but the first (and the first
/// too with `first`); blank lines stay empty.
pub fn indent(v: Value, width: usize, first: Option<bool>) -> Result<String, EngineError> {
    let text = text("indent", &v)?;
    if width > 256 {
        return Err(EngineError::new(
            ErrorKind::InvalidOperation,
            "indent: the width must be at most 256",
        ));
    }
    let lines = text.split('\n').count();
    if text.len().saturating_add(lines.saturating_mul(width)) > MAX_OUTPUT_PER_KEY {
        return Err(EngineError::new(
            ErrorKind::InvalidOperation,
            format!("indent: the result would exceed {MAX_OUTPUT_PER_KEY} bytes"),
        ));
    }
    let pad = " ".repeat(width);
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if !line.is_empty() && (i > 0 || first.unwrap_or(false)) {
            out.push_str(&pad);
        }
        out.push_str(line);
    }
    Ok(out)
}

pub fn trim(v: Value) -> Result<String, EngineError> {
    Ok(text("trim", &v)?.trim().to_string())
}

pub fn lower(v: Value) -> Result<String, EngineError> {
    Ok(text("lower", &v)?.to_lowercase())
}

pub fn upper(v: Value) -> Result<String, EngineError> {
    Ok(text("upper", &v)?.to_uppercase())
}
