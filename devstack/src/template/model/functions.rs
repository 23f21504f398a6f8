//! `AWS::Serverless::Function`: binary, memory, timeout, environment (Globals overlaid), and its
//! `Events`, each handed to the reader of its kind.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::http_api::{http_event, RouteOf};
use super::kafka_triggers::kafka_event;
use super::schedules::schedule;
use super::{with_globals, Function};
use crate::template::intrinsics::Resolver;
use crate::template::TemplateError;

/// One function and the `HttpApi` routes its events declare (settled once the API is read).
pub(super) fn function(
    r: &Resolver<'_>,
    id: &str,
    res: &Value,
    globals: Option<&Map<String, Value>>,
    at: &str,
) -> Result<(Function, Vec<RouteOf>), TemplateError> {
    let binary_at = format!("{at}.Metadata.BuildProperties.Binary");
    let binary = match res.pointer("/Metadata/BuildProperties/Binary") {
        Some(v) => r.string(v, &binary_at)?,
        None => {
            return Err(TemplateError::invalid(
                at,
                "has no Metadata.BuildProperties.Binary (the cargo binary devstack runs)",
            ))
        }
    };
    let empty = Map::new();
    let props = with_globals(
        res.get("Properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty),
        globals,
    );
    let number = |key: &str, default: u64| -> Result<u64, TemplateError> {
        match props.get(key) {
            None => Ok(default),
            Some(v) => r
                .string(v, &format!("{at}.Properties.{key}"))?
                .parse()
                .map_err(|_| TemplateError::invalid(at, format!("{key} is not a number"))),
        }
    };
    let memory_mb = u32::try_from(number("MemorySize", 128)?).unwrap_or(u32::MAX);
    let timeout = Duration::from_secs(number("Timeout", 3)?);

    let mut environment = BTreeMap::new();
    if let Some(vars) = props
        .get("Environment")
        .and_then(|e| e.get("Variables"))
        .and_then(Value::as_object)
    {
        for (k, v) in vars {
            let vat = format!("{at}.Properties.Environment.Variables.{k}");
            if r.resolve(v, &vat)?.is_some() {
                environment.insert(k.clone(), r.string(v, &vat)?);
            }
        }
    }

    let mut schedules = Vec::new();
    let mut kafka = Vec::new();
    let mut routes = Vec::new();
    if let Some(events) = props.get("Events").and_then(Value::as_object) {
        for (name, ev) in events {
            let eat = format!("{at}.Properties.Events.{name}");
            let kind = ev.get("Type").and_then(Value::as_str).unwrap_or_default();
            let eprops = match ev.get("Properties") {
                Some(p) => match r.resolve(p, &format!("{eat}.Properties"))? {
                    Some(Value::Object(m)) => m,
                    _ => return Err(TemplateError::invalid(&eat, "Properties must be a map")),
                },
                None => Map::new(),
            };
            match kind {
                "HttpApi" => routes.push(http_event(&eprops, &binary, &eat)?),
                "Schedule" | "ScheduleV2" => {
                    if let Some(s) = schedule(name, &eprops, &eat)? {
                        schedules.push(s);
                    }
                }
                "MSK" | "SelfManagedKafka" => {
                    if let Some(k) = kafka_event(id, name, kind, &eprops, &eat)? {
                        kafka.push(k);
                    }
                }
                other => {
                    return Err(TemplateError::unsupported(
                        &eat,
                        format!("event type {other:?}"),
                    ))
                }
            }
        }
    }
    Ok((
        Function {
            logical_id: id.to_owned(),
            binary,
            memory_mb,
            timeout,
            environment,
            schedules,
            kafka,
        },
        routes,
    ))
}
