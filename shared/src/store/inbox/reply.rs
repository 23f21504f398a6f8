//! Decoding the inbox scripts' replies: stored documents, state bits, reply fields. A reply of the
//! wrong shape is [`StoreError::Corrupt`], never a panic.

use redis::Value;

use crate::model::{Flags, Notification};

use super::super::StoreError;

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Plain data structures with string keys: serialisation cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// Parses `<seq>\n<notification JSON>` and applies the current flags.
pub(crate) fn parse_doc(doc: &str, flags: Flags) -> Result<Notification, StoreError> {
    let corrupt = |e: String| StoreError::Corrupt(format!("notification: {e}"));
    let (seq, json) = doc
        .split_once('\n')
        .ok_or_else(|| corrupt("no seq".into()))?;
    let mut n: Notification = serde_json::from_str(json).map_err(|e| corrupt(e.to_string()))?;
    n.seq = seq.parse().map_err(|_| corrupt("bad seq".into()))?;
    (n.read, n.seen, n.archived) = (flags.read, flags.seen, flags.archived);
    Ok(n)
}

/// The type in a `flags` entry (`<bits>|<createdMs>|<type>[|<expiresMs>]`; a type holds no `|`).
pub(crate) fn state_type(state: &str) -> Option<&str> {
    state.split('|').nth(2).filter(|t| !t.is_empty())
}

pub(super) fn state_bits(state: &str) -> Result<u8, StoreError> {
    state
        .split('|')
        .next()
        .and_then(|b| b.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("flags {state:?}")))
}

pub(super) fn text(values: &[Value], i: usize) -> Result<String, StoreError> {
    match values.get(i) {
        Some(Value::BulkString(b)) => {
            String::from_utf8(b.clone()).map_err(|_| StoreError::Corrupt("not UTF-8".into()))
        }
        Some(Value::SimpleString(s)) => Ok(s.clone()),
        Some(Value::Int(n)) => Ok(n.to_string()),
        other => Err(StoreError::Corrupt(format!(
            "expected text at {i}, got {other:?}"
        ))),
    }
}

pub(super) fn int(values: &[Value], i: usize) -> Result<u64, StoreError> {
    match values.get(i) {
        Some(Value::Int(n)) => Ok((*n).max(0) as u64),
        _ => text(values, i)?
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("expected a number at {i}"))),
    }
}
