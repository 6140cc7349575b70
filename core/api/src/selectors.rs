//! Label and field selectors, parsed and matched as `k8s.io/apimachinery` does.
//!
//! Label selectors follow `labels.Parse`: `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
//! `k notin (a,b)`, `k` (exists), `!k` (does not exist), `k>1`, `k<1`; comma separated,
//! whitespace tolerant; requirements are kept sorted by key. Field selectors follow
//! `fields.ParseSelector`: `f=v`, `f==v`, `f!=v` with `\,` `\=` `\\` escapes. Errors carry
//! Kubernetes' messages so the server can return them in a 400 BadRequest unchanged.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde_json::Value;

use crate::registry::ResourceInfo;
use crate::validation::{go_quote, is_qualified_name, is_valid_label_value};

/// Why a selector was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The label selector text does not parse (message as Kubernetes words it).
    #[error("{0}")]
    Label(String),
    /// The field selector text does not parse.
    #[error("{0}")]
    Field(String),
    /// The field selector names a field the kind cannot be selected by.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

/// A label selector operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operator {
    /// `k=v`
    Equals,
    /// `k==v`
    DoubleEquals,
    /// `k!=v`
    NotEquals,
    /// `k in (a,b)`
    In,
    /// `k notin (a,b)`
    NotIn,
    /// `k`
    Exists,
    /// `!k`
    DoesNotExist,
    /// `k>1`
    GreaterThan,
    /// `k<1`
    LessThan,
}

/// One `key op values` term of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// Label key.
    pub key: String,
    /// Operator.
    pub operator: Operator,
    /// Values, sorted and unique (empty for Exists/DoesNotExist).
    pub values: Vec<String>,
}

impl Requirement {
    /// Builds and validates a requirement (`labels.NewRequirement`).
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        let msgs = is_qualified_name(key);
        if !msgs.is_empty() {
            return Err(SelectorError::Label(format!(
                "<nil>: Invalid value: {}: {}",
                go_quote(key),
                msgs.join("; ")
            )));
        }
        let set: BTreeSet<String> = values.into_iter().collect();
        let values: Vec<String> = set.into_iter().collect();
        let bad_count = |detail: &str| {
            let list: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
            SelectorError::Label(format!(
                "values: Invalid value: []string{{{}}}: {detail}",
                list.join(", ")
            ))
        };
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(bad_count(
                    "for 'in', 'notin' operators, values set can't be empty",
                ));
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                return Err(bad_count(
                    "exact-match compatibility requires one single value",
                ));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err(bad_count(
                    "values set must be empty for exists and does not exist",
                ));
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    return Err(bad_count(
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        return Err(SelectorError::Label(format!(
                            "values[{i}]: Invalid value: {}: for 'Gt', 'Lt' operators, the value must be an integer",
                            go_quote(v)
                        )));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let msgs = is_valid_label_value(v);
            if !msgs.is_empty() {
                return Err(SelectorError::Label(format!(
                    "values[{i}][{key}]: Invalid value: {}: {}",
                    go_quote(v),
                    msgs.join("; ")
                )));
            }
        }
        Ok(Requirement {
            key: key.to_string(),
            operator,
            values,
        })
    }

    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => {
                value.is_some_and(|v| self.values.contains(v))
            }
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(have), Some(want)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let one = self.values.first().map(String::as_str).unwrap_or_default();
        match self.operator {
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::Equals => write!(f, "{}={one}", self.key),
            Operator::DoubleEquals => write!(f, "{}=={one}", self.key),
            Operator::NotEquals => write!(f, "{}!={one}", self.key),
            Operator::GreaterThan => write!(f, "{}>{one}", self.key),
            Operator::LessThan => write!(f, "{}<{one}", self.key),
            Operator::In => write!(f, "{} in ({})", self.key, self.values.join(",")),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(",")),
        }
    }
}

/// A parsed label selector: all requirements must hold. Empty selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    /// `metav1.LabelSelector` with an unknown operator, or nil: selects nothing.
    nothing: bool,
}

impl LabelSelector {
    /// Parses the `labelSelector` query syntax.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let tokens = lex(s).map_err(SelectorError::Label)?;
        let mut p = Parser { tokens, pos: 0 };
        let mut requirements = p.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Selects every object.
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// Selects no object (what a nil `metav1.LabelSelector` means in most APIs).
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// `k=v` for every entry (what an RC's or a Service's `selector` map means).
    pub fn from_map(map: &BTreeMap<String, String>) -> Self {
        LabelSelector {
            requirements: map
                .iter()
                .map(|(k, v)| Requirement {
                    key: k.clone(),
                    operator: Operator::Equals,
                    values: vec![v.clone()],
                })
                .collect(),
            nothing: false,
        }
    }

    /// From a JSON object of string values (a selector map as stored).
    pub fn from_json_map(map: Option<&serde_json::Map<String, Value>>) -> Self {
        let map: BTreeMap<String, String> = map
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        Self::from_map(&map)
    }

    /// `metav1.LabelSelectorAsSelector`: matchLabels and matchExpressions.
    pub fn from_meta(sel: &metav1::LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            requirements.push(Requirement::new(k, Operator::Equals, vec![v.clone()])?);
        }
        for expr in sel.match_expressions.iter().flatten() {
            let op = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError::Label(format!(
                        "{} is not a valid label selector operator",
                        go_quote(other)
                    )));
                }
            };
            requirements.push(Requirement::new(
                &expr.key,
                op,
                expr.values.clone().unwrap_or_default(),
            )?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Same as [`LabelSelector::matches`] for labels held as a JSON object (`metadata.labels`).
    pub fn matches_json(&self, labels: Option<&Value>) -> bool {
        let labels: BTreeMap<String, String> = labels
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        self.matches(&labels)
    }

    /// True when the selector has no requirements (selects everything).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Not,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    Open,
    Close,
    Comma,
    End,
}

impl Tok {
    fn literal(&self) -> &str {
        match self {
            Tok::Ident(s) => s,
            Tok::Not => "!",
            Tok::Eq => "=",
            Tok::DoubleEq => "==",
            Tok::NotEq => "!=",
            Tok::Gt => ">",
            Tok::Lt => "<",
            Tok::Open => "(",
            Tok::Close => ")",
            Tok::Comma => ",",
            Tok::End => "",
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

/// The lexer of `labels.Parse`: identifiers are runs of anything but whitespace and the
/// special symbols; symbols are read greedily (`!=`, `==`).
fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if is_special(c) {
            let next = chars.get(i + 1).copied();
            let (tok, len) = match (c, next) {
                ('!', Some('=')) => (Tok::NotEq, 2),
                ('=', Some('=')) => (Tok::DoubleEq, 2),
                ('!', _) => (Tok::Not, 1),
                ('=', _) => (Tok::Eq, 1),
                ('>', _) => (Tok::Gt, 1),
                ('<', _) => (Tok::Lt, 1),
                ('(', _) => (Tok::Open, 1),
                (')', _) => (Tok::Close, 1),
                _ => (Tok::Comma, 1),
            };
            out.push(tok);
            i += len;
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !is_special(chars[i]) {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        }
    }
    out.push(Tok::End);
    Ok(out)
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        self.tokens.get(self.pos).unwrap_or(&Tok::End)
    }

    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn err(msg: String) -> SelectorError {
        SelectorError::Label(msg)
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut out = Vec::new();
        loop {
            match self.peek().clone() {
                Tok::Ident(_) | Tok::Not => {
                    let r = self.requirement().map_err(|e| match e {
                        SelectorError::Label(m) => {
                            Self::err(format!("unable to parse requirement: {m}"))
                        }
                        other => other,
                    })?;
                    out.push(r);
                    match self.next() {
                        Tok::End => return Ok(out),
                        Tok::Comma => {
                            let t = self.peek().clone();
                            if !matches!(t, Tok::Ident(_) | Tok::Not) {
                                return Err(Self::err(format!(
                                    "found '{}', expected: identifier after ','",
                                    t.literal()
                                )));
                            }
                        }
                        t => {
                            return Err(Self::err(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                t.literal()
                            )));
                        }
                    }
                }
                Tok::End => return Ok(out),
                t => {
                    return Err(Self::err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        t.literal()
                    )));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let mut not = false;
        let mut tok = self.next();
        if tok == Tok::Not {
            not = true;
            tok = self.next();
        }
        let Tok::Ident(key) = tok else {
            return Err(Self::err(format!(
                "found '{}', expected: identifier",
                tok.literal()
            )));
        };
        let msgs = is_qualified_name(&key);
        if !msgs.is_empty() {
            return Err(Self::err(format!(
                "<nil>: Invalid value: {}: {}",
                go_quote(&key),
                msgs.join("; ")
            )));
        }
        if matches!(self.peek(), Tok::End | Tok::Comma) {
            let op = if not {
                Operator::DoesNotExist
            } else {
                Operator::Exists
            };
            return Requirement::new(&key, op, Vec::new());
        }
        let op = match self.next() {
            Tok::Ident(w) if w == "in" => Operator::In,
            Tok::Ident(w) if w == "notin" => Operator::NotIn,
            Tok::Eq => Operator::Equals,
            Tok::DoubleEq => Operator::DoubleEquals,
            Tok::NotEq => Operator::NotEquals,
            Tok::Gt => Operator::GreaterThan,
            Tok::Lt => Operator::LessThan,
            t => {
                return Err(Self::err(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    t.literal()
                )));
            }
        };
        let values = match op {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => self.exact_value()?,
        };
        Requirement::new(&key, op, values)
    }

    fn exact_value(&mut self) -> Result<Vec<String>, SelectorError> {
        match self.peek().clone() {
            Tok::End | Tok::Comma => Ok(vec![String::new()]),
            Tok::Ident(v) => {
                self.next();
                Ok(vec![v])
            }
            t => Err(Self::err(format!(
                "found '{}', expected: identifier",
                t.literal()
            ))),
        }
    }

    fn value_set(&mut self) -> Result<Vec<String>, SelectorError> {
        let t = self.next();
        if t != Tok::Open {
            return Err(Self::err(format!("found '{}' expected: '('", t.literal())));
        }
        match self.peek().clone() {
            Tok::Close => {
                self.next();
                Ok(vec![String::new()])
            }
            Tok::Ident(_) | Tok::Comma => {
                let values = self.identifiers()?;
                let t = self.next();
                if t != Tok::Close {
                    return Err(Self::err(format!("found '{}', expected: ')'", t.literal())));
                }
                Ok(values)
            }
            t => Err(Self::err(format!(
                "found '{}', expected: ',', ')' or identifier",
                t.literal()
            ))),
        }
    }

    fn identifiers(&mut self) -> Result<Vec<String>, SelectorError> {
        let mut values = Vec::new();
        loop {
            match self.next() {
                Tok::Ident(v) => {
                    values.push(v);
                    match self.peek().clone() {
                        Tok::Comma => continue,
                        Tok::Close => return Ok(values),
                        t => {
                            return Err(Self::err(format!(
                                "found '{}', expected: ',' or ')'",
                                t.literal()
                            )));
                        }
                    }
                }
                Tok::Comma => {
                    // "(,a)", "(a,)" and "(a,,b)" each carry an empty value.
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    match self.peek() {
                        Tok::Close => {
                            values.push(String::new());
                            return Ok(values);
                        }
                        Tok::Comma => {
                            self.next();
                            values.push(String::new());
                        }
                        _ => {}
                    }
                }
                t => {
                    return Err(Self::err(format!(
                        "found '{}', expected: ',', or identifier",
                        t.literal()
                    )));
                }
            }
        }
    }
}

/// Field selector operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldOp {
    /// `f=v` or `f==v`
    Equals,
    /// `f!=v`
    NotEquals,
}

/// One term of a field selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    /// Field path, e.g. `spec.nodeName`.
    pub field: String,
    /// Operator.
    pub op: FieldOp,
    /// Value, unescaped.
    pub value: String,
}

/// A parsed field selector: all terms must hold. Empty selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses the `fieldSelector` query syntax.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut parts = split_terms(s);
        parts.sort();
        let mut requirements = Vec::new();
        for part in parts.iter().filter(|p| !p.is_empty()) {
            let Some((field, op, rhs)) = split_term(part) else {
                return Err(SelectorError::Field(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            requirements.push(FieldRequirement {
                field: field.to_string(),
                op,
                value: unescape_value(rhs)?,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// Selects every object.
    pub fn everything() -> Self {
        FieldSelector::default()
    }

    /// The terms, sorted as Kubernetes sorts them.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// True when the selector has no terms.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The value required by an `f=v` term on `field`, if any (useful for indexes such as
    /// pods by `spec.nodeName`).
    pub fn required_value(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.op == FieldOp::Equals)
            .map(|r| r.value.as_str())
    }

    /// Refuses terms on fields `info` cannot be selected by (`field label not supported`).
    pub fn check_supported(&self, info: &ResourceInfo) -> Result<(), SelectorError> {
        match self
            .requirements
            .iter()
            .find(|r| !supported_field(info, &r.field))
        {
            Some(r) => Err(SelectorError::UnsupportedField(r.field.clone())),
            None => Ok(()),
        }
    }

    /// Whether an object satisfies every term; `fields` returns a field's value (`None` is
    /// treated as `""`, as Kubernetes' `fields.Set` does).
    pub fn matches(&self, fields: &dyn Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let have = fields(&r.field).unwrap_or_default();
            match r.op {
                FieldOp::Equals => have == r.value,
                FieldOp::NotEquals => have != r.value,
            }
        })
    }

    /// [`FieldSelector::matches`] against an object of `info`'s kind.
    pub fn matches_object(&self, info: &ResourceInfo, obj: &Value) -> bool {
        self.matches(&|f| field_value(info, obj, f))
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| {
                let op = if r.op == FieldOp::Equals { "=" } else { "!=" };
                format!("{}{op}{}", r.field, escape_value(&r.value))
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Splits on commas not escaped with a backslash.
fn split_terms(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            cur.push(c);
            escaped = true;
        } else if c == ',' {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// The first `!=`, `==` or `=` in the term, in that order of preference at each position.
fn split_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, kind) in [
            ("!=", FieldOp::NotEquals),
            ("==", FieldOp::Equals),
            ("=", FieldOp::Equals),
        ] {
            if let Some(rhs) = rest.strip_prefix(op) {
                return Some((&term[..i], kind, rhs));
            }
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                other => {
                    return Err(SelectorError::Field(format!(
                        "invalid field selector: invalid escape sequence: \\{other}"
                    )));
                }
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => {
                return Err(SelectorError::Field(format!(
                    "invalid field selector: unescaped character in value: {c}"
                )));
            }
            c => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError::Field(
            "invalid field selector: invalid escape sequence: \\".to_string(),
        ));
    }
    Ok(out)
}

fn escape_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace('=', "\\=")
}

/// The fields Kubernetes lets you select each kind by.
fn kind_fields(info: &ResourceInfo) -> &'static [&'static str] {
    match (info.group, info.kind) {
        ("", "Pod") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "Node") => &["spec.unschedulable"],
        ("", "Namespace") => &["status.phase"],
        ("", "Secret") => &["type"],
        ("", "ReplicationController") => &["status.replicas"],
        ("", "Service") => &["spec.clusterIP", "spec.type"],
        ("", "Event") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        _ => &[],
    }
}

/// Whether `field` can be used in a field selector on `info`'s kind.
pub fn supported_field(info: &ResourceInfo, field: &str) -> bool {
    // Nodes accept metadata.name but not metadata.namespace (their conversion function
    // lists only what it knows); every other kind takes both.
    let meta = match info.kind {
        "Node" => field == "metadata.name",
        _ => field == "metadata.name" || field == "metadata.namespace",
    };
    meta || kind_fields(info).contains(&field)
}

/// The value of a selectable field of `obj` (`""` when unset, `"true"`/`"false"` for
/// booleans), or `None` when the field is not selectable for the kind.
pub fn field_value(info: &ResourceInfo, obj: &Value, field: &str) -> Option<String> {
    if !supported_field(info, field) {
        return None;
    }
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let at = |dotted: &str| text(crate::object::pointer(obj, dotted));
    Some(match (info.kind, field) {
        ("Pod", "spec.hostNetwork") | ("Node", "spec.unschedulable") => {
            let v = crate::object::pointer(obj, field).and_then(Value::as_bool);
            v.unwrap_or(false).to_string()
        }
        ("Pod", "status.podIP") => {
            let first = obj
                .pointer("/status/podIPs/0/ip")
                .and_then(Value::as_str)
                .map(str::to_string);
            first.unwrap_or_else(|| at("status.podIP"))
        }
        ("ReplicationController", "status.replicas") => {
            let v = crate::object::pointer(obj, field).and_then(Value::as_i64);
            v.unwrap_or(0).to_string()
        }
        ("Event", "source") => at("source.component"),
        ("Event", "reportingComponent") => at("reportingComponent"),
        _ => at(field),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::registry::lookup;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selector_syntax() {
        let l = labels(&[("name", "frontend"), ("tier", "web"), ("v", "3")]);
        let yes = [
            "",
            "name=frontend",
            "name==frontend",
            " name = frontend , tier=web ",
            "name!=backend",
            "missing!=x",
            "name in (frontend, backend)",
            "name notin (backend)",
            "missing notin (x)",
            "tier",
            "!missing",
            "v>2",
            "v<4",
            "name in (frontend),!missing,tier",
        ];
        for s in yes {
            assert!(LabelSelector::parse(s).unwrap().matches(&l), "{s}");
        }
        let no = [
            "name=backend",
            "name!=frontend",
            "name in (a,b)",
            "name notin (frontend)",
            "missing",
            "!tier",
            "v>3",
            "missing<4",
            "missing=x",
            "name=frontend,tier=db",
        ];
        for s in no {
            assert!(!LabelSelector::parse(s).unwrap().matches(&l), "{s}");
        }
    }

    #[test]
    fn label_selector_string_is_sorted_and_canonical() {
        let s = LabelSelector::parse("z in (b,a),a==1, !m").unwrap();
        assert_eq!(s.to_string(), "a==1,!m,z in (a,b)");
        assert!(LabelSelector::parse("").unwrap().is_empty());
        assert!(LabelSelector::everything().matches(&BTreeMap::new()));
        assert!(!LabelSelector::nothing().matches(&BTreeMap::new()));
        // "x=" selects an empty value.
        let empty = LabelSelector::parse("x=").unwrap();
        assert!(empty.matches(&labels(&[("x", "")])));
        assert!(!empty.matches(&BTreeMap::new()));
    }

    #[test]
    fn label_selector_errors() {
        let cases = [
            ("a=b=c", "found '=', expected: ',' or 'end of string'"),
            ("a,", "found '', expected: identifier after ','"),
            (
                "=a",
                "found '=', expected: !, identifier, or 'end of string'",
            ),
            (
                "a in b",
                "unable to parse requirement: found 'b' expected: '('",
            ),
            (
                "a in (b",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            (
                "a b",
                "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "a>b",
                "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators, the value must be an integer",
            ),
        ];
        for (s, want) in cases {
            assert_eq!(
                LabelSelector::parse(s).unwrap_err().to_string(),
                want,
                "{s}"
            );
        }
        let err = LabelSelector::parse("a=-b").unwrap_err().to_string();
        assert!(
            err.starts_with("unable to parse requirement: values[0][a]: Invalid value: \"-b\": a valid label must be"),
            "{err}"
        );
        let err = LabelSelector::parse("-a=b").unwrap_err().to_string();
        assert!(
            err.starts_with(
                "unable to parse requirement: <nil>: Invalid value: \"-a\": name part must consist"
            ),
            "{err}"
        );
    }

    #[test]
    fn from_meta_and_map() {
        let sel: metav1::LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "x"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
                                 {"key": "old", "operator": "DoesNotExist"}]
        }))
        .unwrap();
        let s = LabelSelector::from_meta(&sel).unwrap();
        assert_eq!(s.to_string(), "app=x,!old,tier in (a,b)");
        assert!(s.matches(&labels(&[("app", "x"), ("tier", "b")])));
        let bad: metav1::LabelSelector = serde_json::from_value(json!({
            "matchExpressions": [{"key": "a", "operator": "Near"}]}))
        .unwrap();
        assert_eq!(
            LabelSelector::from_meta(&bad).unwrap_err().to_string(),
            "\"Near\" is not a valid label selector operator"
        );
        let m = LabelSelector::from_map(&labels(&[("name", "redis-master")]));
        assert!(m.matches(&labels(&[("name", "redis-master"), ("x", "y")])));
        assert!(LabelSelector::from_map(&BTreeMap::new()).is_empty());
        assert!(m.matches_json(Some(&json!({"name": "redis-master"}))));
    }

    #[test]
    fn field_selectors() {
        let pods = lookup("", "v1", "pods").unwrap();
        let pending = json!({"spec": {"containers": []}, "status": {"phase": "Pending"}});
        let running = json!({"spec": {"nodeName": "n1", "hostNetwork": true},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.1.0.5"}]}});
        let unscheduled = FieldSelector::parse("spec.nodeName=").unwrap();
        assert!(unscheduled.matches_object(pods, &pending));
        assert!(!unscheduled.matches_object(pods, &running));
        let s = FieldSelector::parse("status.phase!=Failed,spec.nodeName==n1").unwrap();
        assert!(s.matches_object(pods, &running));
        assert_eq!(s.to_string(), "spec.nodeName=n1,status.phase!=Failed");
        assert_eq!(s.required_value("spec.nodeName"), Some("n1"));
        assert_eq!(
            field_value(pods, &running, "spec.hostNetwork").as_deref(),
            Some("true")
        );
        assert_eq!(
            field_value(pods, &pending, "spec.hostNetwork").as_deref(),
            Some("false")
        );
        assert_eq!(
            field_value(pods, &running, "status.podIP").as_deref(),
            Some("10.1.0.5")
        );
        assert_eq!(field_value(pods, &running, "spec.bogus"), None);

        let escaped = FieldSelector::parse(r"metadata.name=a\,b").unwrap();
        assert_eq!(escaped.requirements()[0].value, "a,b");
        assert_eq!(escaped.to_string(), r"metadata.name=a\,b");
        assert_eq!(
            FieldSelector::parse("foo").unwrap_err().to_string(),
            "invalid selector: 'foo'; can't understand 'foo'"
        );
        assert_eq!(
            FieldSelector::parse(r"a=b\x").unwrap_err().to_string(),
            r"invalid field selector: invalid escape sequence: \x"
        );
        assert_eq!(
            FieldSelector::parse("a=b=c").unwrap_err().to_string(),
            "invalid field selector: unescaped character in value: ="
        );
        let bogus = FieldSelector::parse("foo=bar").unwrap();
        assert_eq!(
            bogus.check_supported(pods).unwrap_err().to_string(),
            "field label not supported: foo"
        );
        assert!(FieldSelector::parse("").unwrap().is_empty());
    }

    #[test]
    fn supported_fields_per_kind() {
        let nodes = lookup("", "v1", "nodes").unwrap();
        assert!(supported_field(nodes, "spec.unschedulable"));
        assert!(supported_field(nodes, "metadata.name"));
        assert!(!supported_field(nodes, "metadata.namespace"));
        let node = json!({"spec": {"unschedulable": true}});
        assert_eq!(
            field_value(nodes, &node, "spec.unschedulable").as_deref(),
            Some("true")
        );
        let events = lookup("", "v1", "events").unwrap();
        let ev = json!({"involvedObject": {"kind": "Pod", "name": "p"}, "source": {"component": "kubelet"}});
        assert_eq!(
            field_value(events, &ev, "source").as_deref(),
            Some("kubelet")
        );
        assert_eq!(
            field_value(events, &ev, "involvedObject.kind").as_deref(),
            Some("Pod")
        );
        let ns = lookup("", "v1", "namespaces").unwrap();
        assert!(supported_field(ns, "status.phase"));
        let secrets = lookup("", "v1", "secrets").unwrap();
        assert!(supported_field(secrets, "type"));
        let rcs = lookup("", "v1", "replicationcontrollers").unwrap();
        assert_eq!(
            field_value(rcs, &json!({}), "status.replicas").as_deref(),
            Some("0")
        );
        let cms = lookup("", "v1", "configmaps").unwrap();
        assert!(supported_field(cms, "metadata.namespace"));
        assert!(!supported_field(cms, "data"));
    }
}
