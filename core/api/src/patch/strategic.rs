//! Strategic merge patch, server side: a port of the semantics of apimachinery's
//! `strategicpatch.StrategicMergeMapPatch` (with `MergeParallelList` and
//! `IgnoreUnmatchedNulls`, as the API server calls it), including where it places list
//! elements and which errors it reports.
//!
//! Field metadata (which schema a field has, its patch strategy and merge key) is read from the
//! Swagger 2.0 definitions of [`crate::openapi`], where the one patch-metadata table is written.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::{PatchError, gofmt};
use crate::openapi;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

const ERR_NO_LIST_OF_LISTS: &str = "lists of lists are not supported";
const ERR_BAD_PRIMITIVE_LIST: &str = "invalid patch format of primitive list";
const ERR_BAD_RETAIN_KEYS: &str = "invalid patch format of retainKeys";
const ERR_BAD_SET_ELEMENT_ORDER: &str = "invalid patch format of setElementOrder list";

type Result<T> = std::result::Result<T, PatchError>;
type Object = Map<String, Value>;

pub(super) fn apply((group, kind): (&str, &str), target: &Value, patch: &Value) -> Result<Value> {
    let definition =
        openapi::definition_of_kind(group, kind).ok_or(PatchError::StrategicMergeUnsupported)?;
    let patch = match patch {
        Value::Object(map) => map.clone(),
        // Go decodes `null` into the (empty) patch map it started with.
        Value::Null => Object::new(),
        other => {
            return Err(PatchError::BadRequest(format!(
                "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                gofmt::json_type(other)
            )));
        }
    };
    let Value::Object(original) = target else {
        return Err(PatchError::BadRequest("invalid JSON document".to_owned()));
    };
    let schema = Schema::definition(openapi::definitions(), definition);
    merge_map(original.clone(), patch, schema).map(Value::Object)
}

/// Applies a patch against the definition `definition` of a given set of definitions (tests
/// exercise the algorithm on small schemas of their own).
#[cfg(test)]
pub(super) fn apply_with_definitions(
    definitions: &'static Object,
    definition: &'static str,
    target: &Value,
    patch: &Value,
) -> Result<Value> {
    let (Value::Object(original), Value::Object(patch)) = (target, patch) else {
        return Err(PatchError::BadRequest(
            "test documents must be objects".to_owned(),
        ));
    };
    merge_map(
        original.clone(),
        patch.clone(),
        Schema::definition(definitions, definition),
    )
    .map(Value::Object)
}

// ---------------------------------------------------------------------------------------------
// Schema navigation.

/// A position in the schema: a struct (properties), a map (additionalProperties) or unknown.
#[derive(Clone, Copy)]
struct Schema {
    /// All definitions, to follow references.
    definitions: &'static Object,
    name: &'static str,
    schema: Option<&'static Value>,
}

/// What the schema says about one field.
struct Field {
    /// Schema of the field's value.
    value: Schema,
    strategy: &'static str,
    merge_key: &'static str,
}

impl Schema {
    fn definition(definitions: &'static Object, name: &'static str) -> Schema {
        Schema {
            definitions,
            name,
            schema: definitions.get(name),
        }
    }

    fn unknown(self) -> Schema {
        Schema {
            name: "",
            schema: None,
            ..self
        }
    }

    /// Follows a `$ref` to its definition.
    fn resolve(self, schema: &'static Value) -> Schema {
        let reference = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/definitions/"));
        match reference.and_then(|name| self.definitions.get_key_value(name)) {
            Some((name, definition)) => Schema {
                name: name.as_str(),
                schema: Some(definition),
                ..self
            },
            None => Schema {
                name: "",
                schema: Some(schema),
                ..self
            },
        }
    }

    /// Schema of the elements when this is a list schema.
    fn items(self) -> Schema {
        match self.schema.and_then(|s| s.get("items")) {
            Some(items) => self.resolve(items),
            None => self.unknown(),
        }
    }

    fn field(self, key: &str) -> Field {
        let Some(schema) = self.schema else {
            return Field::unknown(self);
        };
        // A struct names its fields; a map (labels, resource lists) gives one schema for all.
        let property = schema
            .get("properties")
            .and_then(|p| p.get(key))
            .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
        let Some(property) = property else {
            // Unknown fields carry no metadata: maps merge and lists are replaced. (Stored
            // objects never contain unknown fields, so only the patch can bring them.)
            return Field::unknown(self);
        };
        let text = |key: &str| property.get(key).and_then(Value::as_str).unwrap_or("");
        Field {
            value: self.resolve(property),
            strategy: text("x-kubernetes-patch-strategy"),
            merge_key: text("x-kubernetes-patch-merge-key"),
        }
    }
}

impl Field {
    fn unknown(schema: Schema) -> Field {
        Field {
            value: schema.unknown(),
            strategy: "",
            merge_key: "",
        }
    }

    /// The merge strategy with `retainKeys` split off (`merge,retainKeys` -> `merge`);
    /// `retainKeys` itself only matters to the client building `$retainKeys`.
    fn strategy(&self) -> Result<&'static str> {
        if self.strategy.is_empty() {
            return Ok("");
        }
        let parts: Vec<&'static str> = self.strategy.split(',').collect();
        match parts.as_slice() {
            ["retainKeys"] => Ok(""),
            [single] => Ok(single),
            ["retainKeys", other] | [other, "retainKeys"] => Ok(other),
            _ => Err(PatchError::Internal(format!(
                "unexpected patch strategy: [{}]",
                parts.join(" ")
            ))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Value helpers with Go's notion of equality and type.

/// The Go type a decoded JSON value has; lists must hold one type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Nil,
    Bool,
    Int,
    Float,
    String,
    Slice,
    Map,
}

fn kind(v: &Value) -> Kind {
    match v {
        Value::Null => Kind::Nil,
        Value::Bool(_) => Kind::Bool,
        // Kubernetes decodes integral JSON numbers as int64 and the rest as float64.
        Value::Number(n) if n.is_f64() => Kind::Float,
        Value::Number(_) => Kind::Int,
        Value::String(_) => Kind::String,
        Value::Array(_) => Kind::Slice,
        Value::Object(_) => Kind::Map,
    }
}

/// Go's `==` on decoded JSON scalars (an int64 never equals a float64); containers compare
/// structurally.
fn go_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.is_f64(), y.is_f64()) {
            (false, false) => x.as_i128() == y.as_i128(),
            (true, true) => x.as_f64() == y.as_f64(),
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| go_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| go_eq(v, w)))
        }
        _ => a == b,
    }
}

fn opt_eq(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => go_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

fn internal(message: String) -> PatchError {
    PatchError::Internal(message)
}

fn bad_arg_type(expected: &str, actual: &Value) -> PatchError {
    internal(format!(
        "expected a {expected}, but received a {}",
        gofmt::type_name(actual)
    ))
}

const MAP_TYPE: &str = "map[string]interface {}";
const SLICE_TYPE: &str = "[]interface {}";

fn no_merge_key(map: &Object, key: &str) -> PatchError {
    internal(format!(
        "map: {} does not contain declared merge key: {key}",
        gofmt::map(map)
    ))
}

fn bad_patch_type(directive: &Value, map: &Object) -> PatchError {
    internal(format!(
        "unknown patch type: {} in map: {}",
        gofmt::value(directive),
        gofmt::map(map)
    ))
}

/// The type of the elements of some lists, which must all have the same non-list type.
fn slice_element_type(lists: &[&[Value]]) -> Result<Kind> {
    let mut element: Option<Kind> = None;
    for item in lists.iter().flat_map(|l| l.iter()) {
        let current = kind(item);
        match element {
            None if current == Kind::Slice => {
                return Err(PatchError::Rejected(ERR_NO_LIST_OF_LISTS.to_owned()));
            }
            None if current != Kind::Nil => element = Some(current),
            Some(previous) if previous == current => {}
            _ => {
                return Err(internal(format!(
                    "list element types are not identical: {}",
                    gofmt::lists(lists)
                )));
            }
        }
    }
    element.ok_or_else(|| internal("no elements in any of the given slices".to_owned()))
}

/// Removes `$patch` maps (and list elements) from a value that is taken as is, keeping the
/// other directive keys as Kubernetes does. `None` when the value itself is a directive.
fn remove_directives(value: Value) -> Option<Value> {
    match value {
        Value::Object(map) => {
            if map.contains_key(DIRECTIVE) {
                return None;
            }
            let kept = map
                .into_iter()
                .filter_map(|(k, v)| remove_directives(v).map(|v| (k, v)))
                .collect();
            Some(Value::Object(kept))
        }
        Value::Array(items) => Some(Value::Array(
            items.into_iter().filter_map(remove_directives).collect(),
        )),
        other => Some(other),
    }
}

/// Drops `null` fields from a value that is added as is: there is nothing for them to delete.
fn discard_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(discard_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(discard_nulls),
        _ => {}
    }
}

/// `$deleteFromPrimitiveList/finalizers` -> `finalizers`.
fn extract_key(key: &str, prefix: &str) -> Result<String> {
    match key.split_once('/') {
        Some((head, rest)) if head == prefix => Ok(rest.to_owned()),
        _ if prefix == DELETE_FROM_PRIMITIVE_LIST => {
            Err(PatchError::BadRequest(ERR_BAD_PRIMITIVE_LIST.to_owned()))
        }
        _ => Err(PatchError::BadRequest(ERR_BAD_SET_ELEMENT_ORDER.to_owned())),
    }
}

// ---------------------------------------------------------------------------------------------
// Maps.

fn merge_map(mut original: Object, mut patch: Object, schema: Schema) -> Result<Object> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            // Replace the map with the rest of the patch (no merging below this point).
            Some("replace") => {
                patch.shift_remove(DIRECTIVE);
                Ok(patch)
            }
            Some("delete") => Ok(Object::new()),
            _ => Err(bad_patch_type(directive, &patch)),
        };
    }

    apply_retain_keys(&mut original, &mut patch)?;
    merge_ordered_lists(&mut original, &mut patch, schema)?;

    for (key, patch_value) in patch {
        let (key, is_delete_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            (extract_key(&key, DELETE_FROM_PRIMITIVE_LIST)?, true)
        } else {
            (key, false)
        };

        if patch_value.is_null() {
            original.shift_remove(&key);
            continue;
        }

        let Some(slot) = original.get_mut(&key) else {
            if !is_delete_list {
                let mut value = patch_value;
                discard_nulls(&mut value);
                if let Some(value) = remove_directives(value) {
                    original.insert(key, value);
                }
            }
            continue;
        };

        let current = std::mem::take(slot);
        let merged = if kind(&current) != kind(&patch_value) {
            if is_delete_list {
                Some(current)
            } else {
                let mut value = patch_value;
                discard_nulls(&mut value);
                remove_directives(value)
            }
        } else {
            match (current, patch_value) {
                (Value::Object(current), Value::Object(patch_map)) => {
                    let field = schema.field(&key);
                    if field.strategy()? == "replace" {
                        Some(Value::Object(patch_map))
                    } else {
                        Some(Value::Object(merge_map(current, patch_map, field.value)?))
                    }
                }
                (Value::Array(current), Value::Array(patch_list)) => {
                    let field = schema.field(&key);
                    let strategy = field.strategy()?;
                    let merged = merge_slice_handler(
                        current,
                        patch_list,
                        field.value.items(),
                        strategy,
                        field.merge_key,
                        is_delete_list,
                    )?;
                    Some(Value::Array(merged.list))
                }
                (_, scalar) => remove_directives(scalar),
            }
        };
        match merged {
            Some(value) => {
                if let Some(slot) = original.get_mut(&key) {
                    *slot = value;
                }
            }
            None => {
                original.shift_remove(&key);
            }
        }
    }
    Ok(original)
}

/// `$retainKeys`: clears the fields of the original that the list does not name, after
/// checking that the patch only sets fields the list names.
fn apply_retain_keys(original: &mut Object, patch: &mut Object) -> Result<()> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(PatchError::BadRequest(ERR_BAD_RETAIN_KEYS.to_owned()));
    };
    let retained = |key: &str| retain.iter().any(|k| k.as_str() == Some(key));
    for (key, value) in patch.iter() {
        if value.is_null()
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || key.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !retained(key) {
            return Err(PatchError::BadRequest(ERR_BAD_RETAIN_KEYS.to_owned()));
        }
    }
    original.retain(|key, _| retained(key));
    Ok(())
}

/// `$setElementOrder/<field>`: merges the field's list now and orders the result as the
/// directive says (then the patch, then the live object), removing both from the patch.
fn merge_ordered_lists(original: &mut Object, patch: &mut Object, schema: Schema) -> Result<()> {
    let directives: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive in directives {
        let Some(order) = patch.shift_remove(&directive) else {
            continue;
        };
        let Value::Array(order) = order else {
            return Err(bad_arg_type(SLICE_TYPE, &order));
        };
        let key = extract_key(&directive, SET_ELEMENT_ORDER)?;
        // A stored object has no null fields; treat one like a missing field.
        let original_list = match original.get(&key) {
            None | Some(Value::Null) => None,
            Some(Value::Array(list)) => Some(list.clone()),
            Some(other) => return Err(bad_arg_type(SLICE_TYPE, other)),
        };
        let patch_list = match patch.get(&key) {
            None => None,
            Some(Value::Array(list)) => Some(list.clone()),
            Some(other) => return Err(bad_arg_type(SLICE_TYPE, other)),
        };
        let field = schema.field(&key);
        let strategy = field.strategy()?;
        let merge_key = field.merge_key;
        validate_patch_with_order(patch_list.as_deref().unwrap_or_default(), &order, merge_key)?;

        let mut original_ref = original_list.clone().unwrap_or_default();
        let patch_ref = patch_list.clone().unwrap_or_default();
        let merged = match (original_list, patch_list) {
            (Some(original_list), None) => original_list,
            (None, Some(patch_list)) => match remove_directives(Value::Array(patch_list)) {
                Some(Value::Array(list)) => list,
                _ => continue,
            },
            (Some(original_list), Some(patch_list)) => {
                let merged = merge_slice_handler(
                    original_list,
                    patch_list,
                    field.value.items(),
                    strategy,
                    merge_key,
                    false,
                )?;
                if let Some(view) = merged.original_view {
                    original_ref = view;
                }
                merged.list
            }
            (None, None) => continue,
        };

        let (patch_items, server_only) = if merge_key.is_empty() {
            partition_primitives(merged, &order)
        } else {
            partition_maps(merged, &order, merge_key)?
        };
        let element = slice_element_type(&[&original_ref, &patch_ref])?;
        let ordered = normalize_element_order(
            patch_items,
            server_only,
            &order,
            &original_ref,
            merge_key,
            element,
        )?;
        match original.get_mut(&key) {
            Some(slot) => *slot = Value::Array(ordered),
            None => {
                original.insert(key.clone(), Value::Array(ordered));
            }
        }
        patch.shift_remove(&key);
    }
    Ok(())
}

/// The patch list must list its elements in the order `$setElementOrder` gives them (deletions
/// and other directives aside), and only elements it names.
fn validate_patch_with_order(patch_list: &[Value], order: &[Value], merge_key: &str) -> Result<()> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let non_delete: Vec<&Value> = if merge_key.is_empty() {
        patch_list.iter().collect()
    } else {
        split_deletions(patch_list)?.0
    };
    let (mut in_patch, mut in_order) = (0, 0);
    while in_patch < non_delete.len() && in_order < order.len() {
        if non_delete[in_patch].get(DIRECTIVE).is_some() {
            in_patch += 1;
            continue;
        }
        if merge_key_value_equal(non_delete[in_patch], &order[in_order], merge_key)? {
            in_patch += 1;
        }
        in_order += 1;
    }
    if in_patch < non_delete.len() && in_order >= order.len() {
        return Err(internal(format!(
            "the order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER} list:\n{}",
            gofmt::value(&Value::Array(patch_list.to_vec())),
            gofmt::value(&Value::Array(order.to_vec()))
        )));
    }
    Ok(())
}

fn merge_key_value_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool> {
    if merge_key.is_empty() {
        return Ok(go_eq(left, right));
    }
    let left = left
        .as_object()
        .ok_or_else(|| bad_arg_type(MAP_TYPE, left))?;
    let right = right
        .as_object()
        .ok_or_else(|| bad_arg_type(MAP_TYPE, right))?;
    let l = left
        .get(merge_key)
        .ok_or_else(|| no_merge_key(left, merge_key))?;
    let r = right
        .get(merge_key)
        .ok_or_else(|| no_merge_key(right, merge_key))?;
    Ok(go_eq(l, r))
}

/// Splits list elements into those kept and `$patch: delete` ones; all must be maps.
fn split_deletions(list: &[Value]) -> Result<(Vec<&Value>, Vec<&Value>)> {
    let mut keep = Vec::new();
    let mut delete = Vec::new();
    for item in list {
        let map = item
            .as_object()
            .ok_or_else(|| bad_arg_type(MAP_TYPE, item))?;
        if map.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
            delete.push(item);
        } else {
            keep.push(item);
        }
    }
    Ok((keep, delete))
}

// ---------------------------------------------------------------------------------------------
// Lists.

/// A merged list, and what the merge left in the caller's copy of the original list.
struct MergedList {
    list: Vec<Value>,
    /// Kubernetes deletes and appends in place in the Go slice it was given, which shares its
    /// array with the caller's copy of the original list; a `$setElementOrder` pass then orders
    /// against those contents. `None` when the caller's copy is unchanged.
    original_view: Option<Vec<Value>>,
}

impl MergedList {
    fn plain(list: Vec<Value>) -> MergedList {
        MergedList {
            list,
            original_view: None,
        }
    }
}

fn merge_slice_handler(
    original: Vec<Value>,
    patch: Vec<Value>,
    element: Schema,
    strategy: &str,
    merge_key: &str,
    is_delete_list: bool,
) -> Result<MergedList> {
    // Deletion lists apply whatever the field's strategy; other lists without the merge
    // strategy are replaced by the patch as sent.
    if strategy == "merge" || is_delete_list {
        merge_slice(original, patch, element, merge_key, is_delete_list)
    } else {
        Ok(MergedList::plain(patch))
    }
}

fn merge_slice(
    original: Vec<Value>,
    patch: Vec<Value>,
    element: Schema,
    merge_key: &str,
    is_delete_list: bool,
) -> Result<MergedList> {
    if original.is_empty() && patch.is_empty() {
        return Ok(MergedList::plain(original));
    }
    let element_kind = slice_element_type(&[&original, &patch])?;

    if element_kind != Kind::Map {
        if is_delete_list {
            let kept = original
                .into_iter()
                .filter(|item| !patch.iter().any(|gone| go_eq(item, gone)))
                .collect();
            return Ok(MergedList::plain(kept));
        }
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for item in original.iter().chain(&patch) {
            if !merged.iter().any(|seen| go_eq(seen, item)) {
                merged.push(item.clone());
            }
        }
        let (patch_items, server_only) = partition_primitives(merged, &patch);
        let list = normalize_element_order(
            patch_items,
            server_only,
            &patch,
            &original,
            merge_key,
            element_kind,
        )?;
        return Ok(MergedList::plain(list));
    }

    if merge_key.is_empty() {
        return Err(internal(format!(
            "cannot merge lists without merge key for {}",
            element.name
        )));
    }
    let mut backing = Backing::new(original);
    let (replace, plain) = apply_list_directives(&mut backing, patch, merge_key)?;
    let list = if replace {
        // The rest of the patch is the whole list: nothing to merge or to order against.
        normalize_element_order(
            Vec::new(),
            plain.clone(),
            &[],
            &plain,
            merge_key,
            element_kind,
        )?
    } else {
        let kept = backing.len;
        merge_by_key(&mut backing, &plain, merge_key, element)?;
        // The live order is that of the original after deletions (appends went past it).
        let server_order: Vec<Value> = backing.iter().take(kept).cloned().collect();
        let (patch_items, server_only) = partition_maps(backing.to_vec(), &plain, merge_key)?;
        normalize_element_order(
            patch_items,
            server_only,
            &plain,
            &server_order,
            merge_key,
            element_kind,
        )?
    };
    Ok(MergedList {
        list,
        original_view: Some(backing.cells),
    })
}

/// A Go slice over the array that the caller's copy of the original list also uses.
struct Backing {
    /// The cells the caller sees (as many as the original list had).
    cells: Vec<Value>,
    /// Current length of the slice.
    len: usize,
    /// Cells appended past the caller's length, which it never sees.
    beyond: Vec<Value>,
}

impl Backing {
    fn new(list: Vec<Value>) -> Backing {
        Backing {
            len: list.len(),
            cells: list,
            beyond: Vec::new(),
        }
    }

    fn get(&self, index: usize) -> Option<&Value> {
        if index >= self.len {
            return None;
        }
        match index.checked_sub(self.cells.len()) {
            None => self.cells.get(index),
            Some(past) => self.beyond.get(past),
        }
    }

    fn get_mut(&mut self, index: usize) -> Option<&mut Value> {
        if index >= self.len {
            return None;
        }
        match index.checked_sub(self.cells.len()) {
            None => self.cells.get_mut(index),
            Some(past) => self.beyond.get_mut(past),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Value> {
        (0..self.len).filter_map(|i| self.get(i))
    }

    fn to_vec(&self) -> Vec<Value> {
        self.iter().cloned().collect()
    }

    /// `append(s[:i], s[i+1:]...)`: shifts the tail left in place; the last cell keeps its
    /// old value.
    fn remove(&mut self, index: usize) {
        for i in index..self.len.saturating_sub(1) {
            if let Some(next) = self.get(i + 1).cloned()
                && let Some(cell) = self.get_mut(i)
            {
                *cell = next;
            }
        }
        self.len = self.len.saturating_sub(1);
    }

    /// `append(s, v)`: fills the caller's cells first (the array has at least that capacity).
    fn push(&mut self, value: Value) {
        match self.cells.get_mut(self.len) {
            Some(cell) => *cell = value,
            None => self.beyond.push(value),
        }
        self.len += 1;
    }

    fn position(&self, merge_key: &str, value: &Value) -> Option<usize> {
        self.iter()
            .position(|element| element.get(merge_key).is_some_and(|v| go_eq(v, value)))
    }
}

/// Handles `$patch` elements of a merging list: `delete` removes the matching elements from
/// the original, `replace` makes the rest of the patch the whole list. Returns whether the
/// list is replaced, and the patch elements without directives.
fn apply_list_directives(
    original: &mut Backing,
    patch: Vec<Value>,
    merge_key: &str,
) -> Result<(bool, Vec<Value>)> {
    let mut plain = Vec::new();
    let mut replace = false;
    for item in patch {
        let Some(map) = item.as_object() else {
            return Err(bad_arg_type(MAP_TYPE, &item));
        };
        let Some(directive) = map.get(DIRECTIVE) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let value = map
                    .get(merge_key)
                    .ok_or_else(|| no_merge_key(map, merge_key))?;
                while let Some(index) = original.position(merge_key, value) {
                    original.remove(index);
                }
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(internal(
                    "merging lists cannot yet be specified in the patch".to_owned(),
                ));
            }
            _ => return Err(bad_patch_type(directive, map)),
        }
    }
    Ok((replace, plain))
}

/// Index of the first map in `list` whose merge key equals `value`.
fn find_by_key(list: &[Value], merge_key: &str, value: &Value) -> Result<Option<usize>> {
    for (index, element) in list.iter().enumerate() {
        let Some(map) = element.as_object() else {
            return Err(internal(format!("value for key {index} is not a map")));
        };
        if map.get(merge_key).is_some_and(|v| go_eq(v, value)) {
            return Ok(Some(index));
        }
    }
    Ok(None)
}

/// Merges each patch element into the element with the same merge key, or appends it.
fn merge_by_key(
    list: &mut Backing,
    patch: &[Value],
    merge_key: &str,
    element: Schema,
) -> Result<()> {
    for item in patch {
        let Some(map) = item.as_object() else {
            return Err(bad_arg_type(MAP_TYPE, item));
        };
        let value = map
            .get(merge_key)
            .ok_or_else(|| no_merge_key(map, merge_key))?;
        match list
            .position(merge_key, value)
            .and_then(|index| list.get_mut(index))
        {
            Some(slot) => {
                if let Value::Object(current) = std::mem::take(slot) {
                    *slot = Value::Object(merge_map(current, map.clone(), element)?);
                }
            }
            None => list.push(item.clone()),
        }
    }
    Ok(())
}

fn partition_primitives(merged: Vec<Value>, by: &[Value]) -> (Vec<Value>, Vec<Value>) {
    merged
        .into_iter()
        .partition(|item| by.iter().any(|b| go_eq(b, item)))
}

fn partition_maps(
    merged: Vec<Value>,
    by: &[Value],
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut in_patch = Vec::new();
    let mut server_only = Vec::new();
    for item in merged {
        let Some(map) = item.as_object() else {
            return Err(bad_arg_type(MAP_TYPE, &item));
        };
        let value = map
            .get(merge_key)
            .ok_or_else(|| no_merge_key(map, merge_key))?;
        if find_by_key(by, merge_key, value)?.is_some() {
            in_patch.push(item);
        } else {
            server_only.push(item);
        }
    }
    Ok((in_patch, server_only))
}

// ---------------------------------------------------------------------------------------------
// Element order (apimachinery's normalizeElementOrder and mergeSortedSlice).

/// Position of `item` in `list`, by merge key for maps and by value for scalars.
fn index(list: &[Value], item: &Value, merge_key: &str, element: Kind) -> Option<usize> {
    let key_of = |v: &Value| -> Option<Value> {
        if element == Kind::Map {
            v.as_object().and_then(|m| m.get(merge_key)).cloned()
        } else {
            Some(v.clone())
        }
    };
    let wanted = key_of(item);
    list.iter()
        .position(|v| opt_eq(key_of(v).as_ref(), wanted.as_ref()))
}

/// Sorts `items` by their position in `order` (stable).
fn normalize_slice_order(
    items: Vec<Value>,
    order: &[Value],
    merge_key: &str,
    element: Kind,
) -> Result<Vec<Value>> {
    let (mut items, deletions) = if element == Kind::Map {
        for item in items.iter().chain(order) {
            let map = item
                .as_object()
                .ok_or_else(|| bad_arg_type(MAP_TYPE, item))?;
            if !map.contains_key(merge_key) {
                return Err(no_merge_key(map, merge_key));
            }
        }
        let (keep, delete): (Vec<Value>, Vec<Value>) = items
            .into_iter()
            .partition(|item| item.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"));
        (keep, delete)
    } else {
        (items, Vec::new())
    };
    // Items missing from `order` cannot happen for the lists merged here; they go last.
    items.sort_by_key(|item| index(order, item, merge_key, element).unwrap_or(usize::MAX));
    items.extend(deletions);
    Ok(items)
}

/// Orders the merged list: patch items in patch order, server-only items in live order, the
/// two interleaved by their live positions, items new to the live list taking precedence.
fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: &str,
    element: Kind,
) -> Result<Vec<Value>> {
    let patch_items = normalize_slice_order(patch_items, patch_order, merge_key, element)?;
    let server_only = normalize_slice_order(server_only, server_order, merge_key, element)?;
    Ok(merge_sorted(
        server_only,
        patch_items,
        server_order,
        merge_key,
        element,
    ))
}

fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    merge_key: &str,
    element: Kind,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                // A live item goes first only when both are live and it comes first there.
                let li = index(server_order, l, merge_key, element);
                let ri = index(server_order, r, merge_key, element);
                matches!((li, ri), (Some(li), Some(ri)) if li.cmp(&ri) == Ordering::Less)
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}
