//! The WebSocket frames tests receive, held to the AsyncAPI document (`api::asyncapi`, served at
//! `/asyncapi.json`): a frame is checked against the payload of the message its `type` names, and
//! a frame whose `type` the document does not know fails. [`crate::stack::WsClient`] checks every
//! frame it receives.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use jsonschema::Validator;
use serde_json::{json, Value};

/// One validator per message of the document, by message name.
fn validators() -> &'static BTreeMap<String, Validator> {
    static VALIDATORS: OnceLock<BTreeMap<String, Validator>> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        let doc = api::asyncapi::document();
        let messages = doc["components"]["messages"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        messages
            .keys()
            .map(|name| {
                // The payload by reference, so its `#/components/schemas/…` references resolve
                // inside the same root.
                let root = json!({
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "components": doc["components"],
                    "$ref": format!("#/components/messages/{}/payload", pointer_escape(name)),
                });
                let validator = jsonschema::validator_for(&root)
                    .unwrap_or_else(|e| panic!("/asyncapi.json: message {name}: {e}"));
                (name.clone(), validator)
            })
            .collect()
    })
}

fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Checks `value` against the payload of message `name`; the error lists every violation.
pub fn check_message(name: &str, value: &Value) -> Result<(), String> {
    let validator = validators()
        .get(name)
        .ok_or_else(|| format!("/asyncapi.json has no message {name:?}"))?;
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{name}: {}", errors.join("; ")))
    }
}

/// Checks a frame the server sent against the message its `type` names.
pub fn check_frame(frame: &Value) -> Result<(), String> {
    let name = api::asyncapi::frame_message(frame)
        .ok_or_else(|| format!("a frame without a string `type`: {frame}"))?;
    check_message(name, frame)
}
