//! Renders JSON values the way Go's `%v` prints the `interface{}` values Kubernetes decodes
//! JSON into, so that patch error messages read as the Kubernetes ones do.

use serde_json::{Map, Value};

/// Go's `%v` of a decoded JSON value: `map[a:1 b:[x y]]`, `<nil>`, `1.5`.
pub(crate) fn value(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v);
    out
}

/// Go's `%v` of a decoded JSON object.
pub(crate) fn map(m: &Map<String, Value>) -> String {
    let mut out = String::new();
    write_map(&mut out, m);
    out
}

/// Go's `%v` of a list of lists (`fmt.Sprint` of variadic slices).
pub(crate) fn lists(lists: &[&[Value]]) -> String {
    let mut out = String::from("[");
    for (i, list) in lists.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write_list(&mut out, list);
    }
    out.push(']');
    out
}

/// The Go type name `reflect.TypeOf` reports for a decoded JSON value.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// The JSON type name Go's decoder uses in "cannot unmarshal X into ..." errors.
pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => out.push_str(&float(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => out.push_str(s),
        Value::Array(items) => write_list(out, items),
        Value::Object(m) => write_map(out, m),
    }
}

fn write_list(out: &mut String, items: &[Value]) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write_value(out, item);
    }
    out.push(']');
}

fn write_map(out: &mut String, m: &Map<String, Value>) {
    // Go prints map keys sorted.
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    out.push_str("map[");
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(key);
        out.push(':');
        if let Some(v) = m.get(key) {
            write_value(out, v);
        }
    }
    out.push(']');
}

/// Go's shortest `%v` of a float64: plain digits, or an exponent (`1e+21`, `1e-05`) outside
/// `[1e-4, 1e21)`.
fn float(f: f64) -> String {
    let magnitude = f.abs();
    if f == 0.0 || (1e-4..1e21).contains(&magnitude) {
        return format!("{f}");
    }
    let formatted = format!("{f:e}");
    match formatted.split_once('e') {
        Some((mantissa, exponent)) => {
            let (sign, digits) = match exponent.strip_prefix('-') {
                Some(digits) => ('-', digits),
                None => ('+', exponent),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => formatted,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn prints_like_go() {
        assert_eq!(
            value(&json!({"b": [1, "x"], "a": null})),
            "map[a:<nil> b:[1 x]]"
        );
        assert_eq!(value(&json!(1.5)), "1.5");
        assert_eq!(value(&json!(1e21)), "1e+21");
        assert_eq!(value(&json!(0.00001)), "1e-05");
        assert_eq!(value(&json!(true)), "true");
        assert_eq!(lists(&[&[json!("a")], &[json!(1)]]), "[[a] [1]]");
        assert_eq!(type_name(&json!([])), "[]interface {}");
        assert_eq!(type_name(&json!(2)), "int64");
    }
}
