//! Reads `template.yaml`, the one source of truth for Herald's wiring, into the [`Stack`] devstack
//! runs: functions (binary, memory, timeout, environment), the HTTP API (routes, JWT authorizers,
//! CORS), the WebSocket API (raw `AWS::ApiGatewayV2::*` resources), schedules and Kafka
//! event-source mappings.
//!
//! Contract: every value devstack uses is resolved here, once, at start-up. A field devstack needs
//! but cannot honour (an unsupported intrinsic, event type, authorizer kind or route target) is a
//! [`TemplateError`] that names its place in the template; nothing is silently skipped. Resources
//! devstack has no use for (IAM roles, policies, alarms) are ignored.

mod intrinsics;
mod model;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub use intrinsics::Pseudo;
pub use model::*;

/// A template devstack cannot run.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the template is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("{at}: devstack does not support {what}")]
    Unsupported { at: String, what: String },
    #[error("{at}: {message}")]
    Invalid { at: String, message: String },
}

impl TemplateError {
    pub(crate) fn invalid(at: &str, message: impl Into<String>) -> Self {
        TemplateError::Invalid {
            at: at.to_owned(),
            message: message.into(),
        }
    }
    pub(crate) fn unsupported(at: &str, what: impl Into<String>) -> Self {
        TemplateError::Unsupported {
            at: at.to_owned(),
            what: what.into(),
        }
    }
}

/// What the reader needs besides the file: parameter overrides and the local endpoints that
/// `!GetAtt` of API resources resolve to.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `Name=value` overrides, as `sam deploy --parameter-overrides`.
    pub parameters: BTreeMap<String, String>,
    pub pseudo: Pseudo,
    /// `!GetAtt <HttpApi>.ApiEndpoint`, e.g. `http://127.0.0.1:3000`.
    pub http_endpoint: String,
    /// `!GetAtt <WebSocketApi>.ApiEndpoint`, e.g. `ws://127.0.0.1:3001`.
    pub ws_endpoint: String,
}

/// Reads and resolves a template file.
pub fn load(path: &Path, options: &LoadOptions) -> Result<Stack, TemplateError> {
    let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, options)
}

/// Reads and resolves a template from text.
pub fn parse(text: &str, options: &LoadOptions) -> Result<Stack, TemplateError> {
    let yaml: serde_yaml::Value = serde_yaml::from_str(text)?;
    let doc = intrinsics::yaml_to_json(yaml, "template")?;
    model::build(&doc, options)
}

/// A template's parameters with their defaults and the overrides applied. `CommaDelimitedList`
/// parameters become lists.
fn parameters(
    doc: &Value,
    overrides: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Value>, TemplateError> {
    let mut out = BTreeMap::new();
    let empty = Map::new();
    let declared = doc
        .get("Parameters")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for name in overrides.keys() {
        if !declared.contains_key(name) {
            return Err(TemplateError::invalid(
                "Parameters",
                format!("override for {name}, which the template does not declare"),
            ));
        }
    }
    for (name, decl) in declared {
        let at = format!("Parameters.{name}");
        let kind = decl.get("Type").and_then(Value::as_str).unwrap_or("String");
        let raw = match overrides.get(name) {
            Some(v) => v.clone(),
            None => match decl.get("Default") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                Some(_) => return Err(TemplateError::invalid(&at, "Default must be a scalar")),
                None => {
                    return Err(TemplateError::invalid(
                        &at,
                        format!("has no Default; pass --param {name}=VALUE"),
                    ))
                }
            },
        };
        if let Some(allowed) = decl.get("AllowedValues").and_then(Value::as_array) {
            if !allowed.iter().any(|a| {
                a.as_str() == Some(raw.as_str())
                    || a.as_number().is_some_and(|n| n.to_string() == raw)
            }) {
                return Err(TemplateError::invalid(
                    &at,
                    format!("{raw:?} is not one of its AllowedValues"),
                ));
            }
        }
        let value = match kind {
            "CommaDelimitedList" | "List<String>" => Value::Array(
                raw.split(',')
                    .map(|s| Value::String(s.trim().to_owned()))
                    .collect(),
            ),
            "String" | "Number" => Value::String(raw),
            other if other.starts_with("AWS::SSM::") => {
                return Err(TemplateError::unsupported(
                    &at,
                    format!("parameter type {other}"),
                ))
            }
            _ => Value::String(raw),
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}
