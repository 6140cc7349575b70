//! JSON patch (RFC 6902) with the behaviour of `gopkg.in/evanphx/json-patch.v4`, the library
//! the Kubernetes API server applies JSON patches with. It differs from the RFC in ways
//! clients can see, so it is reproduced rather than delegated to a strict RFC implementation:
//! - `replace` of a missing object key adds it; `test` of a missing key passes for `null`;
//! - `copy` of a missing key copies `null`;
//! - negative array indexes count from the end;
//! - `test` compares objects by the keys of the live value only;
//! - an empty path (the whole document) is not addressable.
//!
//! Failure messages are the library's (they name the operation and path).

use serde_json::{Map, Value};

use super::{MAX_JSON_PATCH_OPERATIONS, PatchError, gofmt};

const MISSING: &str = "missing value";
const TEST_FAILED: &str = "test failed";
const INVALID_INDEX: &str = "invalid index referenced";

type OpResult<T> = Result<T, String>;

pub(super) fn apply(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    let operations: &[Value] = match patch {
        Value::Array(ops) => ops,
        // `null` decodes to an empty patch in Go.
        Value::Null => &[],
        other => {
            return Err(PatchError::BadRequest(format!(
                "json: cannot unmarshal {} into Go value of type jsonpatch.Patch",
                gofmt::json_type(other)
            )));
        }
    };
    let empty = Map::new();
    let mut decoded = Vec::with_capacity(operations.len());
    for op in operations {
        match op {
            Value::Object(map) => decoded.push(map),
            // A `null` operation decodes to an empty one, which fails as an unknown kind.
            Value::Null => decoded.push(&empty),
            other => {
                return Err(PatchError::BadRequest(format!(
                    "json: cannot unmarshal {} into Go value of type jsonpatch.Operation",
                    gofmt::json_type(other)
                )));
            }
        }
    }
    if decoded.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations {
            max: MAX_JSON_PATCH_OPERATIONS,
            count: decoded.len(),
        });
    }
    let mut doc = target.clone();
    for op in decoded {
        apply_operation(&mut doc, op).map_err(PatchError::Rejected)?;
    }
    Ok(doc)
}

/// A string field of an operation: `Err` with Go's message when it is missing or not a string.
fn string_field(op: &Map<String, Value>, field: &str) -> OpResult<String> {
    match op.get(field) {
        None | Some(Value::Null) => Err(if field == "path" {
            format!("operation missing path field: {MISSING}")
        } else {
            format!("operation, missing {field} field: {MISSING}")
        }),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!(
            "json: cannot unmarshal {} into Go value of type string",
            gofmt::json_type(other)
        )),
    }
}

/// The `value` of an operation: `None` when absent (distinct from JSON `null`).
fn value_field(op: &Map<String, Value>) -> Option<&Value> {
    op.get("value")
}

fn apply_operation(doc: &mut Value, op: &Map<String, Value>) -> OpResult<()> {
    let kind = match op.get("op") {
        Some(Value::String(kind)) => kind.as_str(),
        _ => "unknown",
    };
    match kind {
        "add" => {
            let path = string_field(op, "path")
                .map_err(|_| format!("add operation failed to decode path: {MISSING}"))?;
            let value = value_field(op).cloned().unwrap_or(Value::Null);
            let (container, key) = find_object(doc, &path).ok_or_else(|| {
                format!("add operation does not apply: doc is missing path: \"{path}\": {MISSING}")
            })?;
            container_add(container, &key, value)
                .map_err(|e| format!("error in add for path: '{path}': {e}"))
        }
        "remove" => {
            let path = string_field(op, "path")
                .map_err(|_| format!("remove operation failed to decode path: {MISSING}"))?;
            let (container, key) = find_object(doc, &path).ok_or_else(|| {
                format!(
                    "remove operation does not apply: doc is missing path: \"{path}\": {MISSING}"
                )
            })?;
            container_remove(container, &key)
                .map(drop)
                .map_err(|e| format!("error in remove for path: '{path}': {e}"))
        }
        "replace" => {
            let path = string_field(op, "path")
                .map_err(|e| format!("replace operation failed to decode path: {e}"))?;
            let value = value_field(op).cloned().unwrap_or(Value::Null);
            let (container, key) = find_object(doc, &path).ok_or_else(|| {
                format!("replace operation does not apply: doc is missing path: {path}: {MISSING}")
            })?;
            if container_get(container, &key).is_err() {
                return Err(format!(
                    "replace operation does not apply: doc is missing key: {path}: {MISSING}"
                ));
            }
            container_set(container, &key, value)
                .map_err(|e| format!("error in remove for path: '{path}': {e}"))
        }
        "move" => {
            let from = string_field(op, "from")
                .map_err(|e| format!("move operation failed to decode from: {e}"))?;
            let value = {
                let (container, key) = find_object(doc, &from).ok_or_else(|| {
                    format!(
                        "move operation does not apply: doc is missing from path: {from}: {MISSING}"
                    )
                })?;
                container_get(container, &key)
                    .map_err(|e| format!("error in move for path: '{key}': {e}"))?;
                container_remove(container, &key)
                    .map_err(|e| format!("error in move for path: '{key}': {e}"))?
            };
            let path = string_field(op, "path")
                .map_err(|e| format!("move operation failed to decode path: {e}"))?;
            let (container, key) = find_object(doc, &path)
                .ok_or_else(|| format!("move operation does not apply: doc is missing destination path: {path}: {MISSING}"))?;
            container_add(container, &key, value)
                .map_err(|e| format!("error in move for path: '{path}': {e}"))
        }
        "copy" => {
            let from = string_field(op, "from")
                .map_err(|e| format!("copy operation failed to decode from: {e}"))?;
            let value = {
                let (container, key) = find_object(doc, &from).ok_or_else(|| {
                    format!(
                        "copy operation does not apply: doc is missing from path: {from}: {MISSING}"
                    )
                })?;
                // A missing key copies as null.
                container_get(container, &key)
                    .map_err(|e| format!("error in copy for from: '{from}': {e}"))?
                    .cloned()
                    .unwrap_or(Value::Null)
            };
            let path = string_field(op, "path")
                .map_err(|_| format!("copy operation failed to decode path: {MISSING}"))?;
            let (container, key) = find_object(doc, &path)
                .ok_or_else(|| format!("copy operation does not apply: doc is missing destination path: {path}: {MISSING}"))?;
            container_add(container, &key, value)
                .map_err(|e| format!("error while adding value during copy: {e}"))
        }
        "test" => {
            let path = string_field(op, "path")
                .map_err(|e| format!("test operation failed to decode path: {e}"))?;
            let failed = || format!("testing value {path} failed: {TEST_FAILED}");
            let (container, key) = find_object(doc, &path).ok_or_else(|| {
                format!("test operation does not apply: is missing path: {path}: {MISSING}")
            })?;
            let current = container_get(container, &key)
                .map_err(|e| format!("error in test for path: '{path}': {e}"))?;
            match (current, value_field(op)) {
                // Missing (or null) in the document: only an explicit null matches.
                (None, Some(Value::Null)) => Ok(()),
                (None, _) | (Some(_), None | Some(Value::Null)) => Err(failed()),
                (Some(current), Some(expected)) if lazy_equal(current, expected) => Ok(()),
                _ => Err(failed()),
            }
        }
        other => Err(format!("Unexpected kind: {other}")),
    }
}

/// RFC 6901 unescaping (`~1` then `~0`, left to right).
fn decode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut chars = key.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.peek() {
                Some('1') => {
                    chars.next();
                    out.push('/');
                    continue;
                }
                Some('0') => {
                    chars.next();
                    out.push('~');
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

/// Go's `strconv.Atoi`, with its error text.
fn atoi(s: &str) -> OpResult<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.Atoi: parsing \"{s}\": invalid syntax"));
    }
    s.trim_start_matches('+')
        .parse::<i64>()
        .map_err(|_| format!("strconv.Atoi: parsing \"{s}\": value out of range"))
}

/// The container holding the last token of `path`, and that token: `None` when a parent is
/// missing, `null` or not a container, or for the empty path.
fn find_object<'a>(doc: &'a mut Value, path: &str) -> Option<(&'a mut Value, String)> {
    let parts: Vec<&str> = path.split('/').collect();
    let (last, parents) = parts.split_last()?;
    let parents = parents.get(1..)?;
    let mut current = doc;
    for part in parents {
        let part = decode_key(part);
        current = match current {
            Value::Object(map) => map.get_mut(&part)?,
            Value::Array(items) => {
                let index = usize::try_from(atoi(&part).ok()?).ok()?;
                items.get_mut(index)?
            }
            _ => return None,
        };
        if !(current.is_object() || current.is_array()) {
            return None;
        }
    }
    Some((current, decode_key(last)))
}

fn invalid_index(index: i64) -> String {
    format!("Unable to access invalid index: {index}: {INVALID_INDEX}")
}

/// The value at `key`: `Ok(None)` for a missing or `null` object member.
fn container_get<'a>(container: &'a Value, key: &str) -> OpResult<Option<&'a Value>> {
    match container {
        Value::Object(map) => Ok(map.get(key).filter(|v| !v.is_null())),
        Value::Array(items) => {
            let index = atoi(key)?;
            match usize::try_from(index).ok().and_then(|i| items.get(i)) {
                Some(v) => Ok(Some(v)),
                None => Err(invalid_index(index)),
            }
        }
        _ => Err(MISSING.to_owned()),
    }
}

fn container_set(container: &mut Value, key: &str, value: Value) -> OpResult<()> {
    match container {
        Value::Object(map) => {
            map.insert(key.to_owned(), value);
            Ok(())
        }
        Value::Array(items) => {
            let index = atoi(key)?;
            match usize::try_from(index).ok().and_then(|i| items.get_mut(i)) {
                Some(slot) => {
                    *slot = value;
                    Ok(())
                }
                None => Err(invalid_index(index)),
            }
        }
        _ => Err(MISSING.to_owned()),
    }
}

fn container_add(container: &mut Value, key: &str, value: Value) -> OpResult<()> {
    match container {
        Value::Object(map) => {
            map.insert(key.to_owned(), value);
            Ok(())
        }
        Value::Array(items) => {
            if key == "-" {
                items.push(value);
                return Ok(());
            }
            let index = atoi(key)
                .map_err(|e| format!("value was not a proper array index: '{key}': {e}"))?;
            let size = i64::try_from(items.len())
                .unwrap_or(i64::MAX)
                .saturating_add(1);
            if index >= size || index < -size {
                return Err(invalid_index(index));
            }
            let position = if index < 0 { index + size } else { index };
            let position = usize::try_from(position).map_err(|_| invalid_index(index))?;
            items.insert(position, value);
            Ok(())
        }
        _ => Err(MISSING.to_owned()),
    }
}

fn container_remove(container: &mut Value, key: &str) -> OpResult<Value> {
    match container {
        Value::Object(map) => map
            .shift_remove(key)
            .ok_or_else(|| format!("Unable to remove nonexistent key: {key}: {MISSING}")),
        Value::Array(items) => {
            let index = atoi(key)?;
            let len = i64::try_from(items.len()).unwrap_or(i64::MAX);
            if index >= len || index < -len {
                return Err(invalid_index(index));
            }
            let position = if index < 0 { index + len } else { index };
            let position = usize::try_from(position).map_err(|_| invalid_index(index))?;
            Ok(items.remove(position))
        }
        _ => Err(MISSING.to_owned()),
    }
}

/// The library's equality for `test`: objects match when every key of the live value is in
/// the expected value with an equal value (extra expected keys are not checked); arrays match
/// element-wise; scalars match by their compact JSON text.
fn lazy_equal(current: &Value, expected: &Value) -> bool {
    match (current, expected) {
        (Value::Object(current), Value::Object(expected)) => {
            current.iter().all(|(key, value)| match expected.get(key) {
                None => false,
                Some(other) if value.is_null() && other.is_null() => true,
                Some(other) => lazy_equal(value, other),
            })
        }
        (Value::Array(current), Value::Array(expected)) => {
            current.len() == expected.len()
                && current.iter().zip(expected).all(|(a, b)| lazy_equal(a, b))
        }
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => false,
        // Scalars: equal JSON text, so an integer never equals a float.
        (current, expected) => current == expected,
    }
}
