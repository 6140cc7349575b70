//! JSON values as the YAML text of `openapi.v2.Any.yaml`.
//!
//! kubectl reads that text with a YAML 1.1 parser (`gopkg.in/yaml.v2`). Kubernetes writes block
//! YAML; flow style parses to the same values and needs no indentation bookkeeping, so nested
//! values are written in flow style (`[{group: "", kind: Pod, version: v1}]`). Strings are plain
//! only when no YAML 1.1 parser could read them as anything but that string.

use serde_json::Value;

/// The YAML document for `value`, ending in a newline like `yaml.Marshal`'s output.
pub(super) fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, &mut out);
    out.push('\n');
    out
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(key, out);
                out.push_str(": ");
                write_value(item, out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    if is_plain_safe(s) {
        out.push_str(s);
    } else {
        write_quoted(s, out);
    }
}

/// Words YAML 1.1 resolves to booleans or null when unquoted.
const RESERVED: &[&str] = &[
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
    "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL",
];

/// A conservative test for strings that may be written unquoted: a letter followed by letters,
/// digits and `_ . / -`, and not a YAML 1.1 boolean or null word. Such a string starts with no
/// indicator, holds no `: ` or ` #`, and cannot resolve to a number, time or merge key.
fn is_plain_safe(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
        && !RESERVED.contains(&s)
}

/// A double-quoted YAML scalar. Its escapes are a superset of JSON's; characters YAML does not
/// allow unescaped (controls, DEL, C1, line and paragraph separators, BOM, non-characters) are `\u` escapes.
fn write_quoted(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control()
                || matches!(
                    c,
                    '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
                ) =>
            {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
