//! Kafka triggers: a function's `MSK`/`SelfManagedKafka` events ([`kafka_event`]) and
//! `AWS::Lambda::EventSourceMapping` resources reading Kafka ([`event_source_mapping`]), with
//! Lambda's defaults (BatchSize 100, a 0.5 s batching window, TRIM_HORIZON, endless retries).

use std::time::Duration;

use serde_json::{Map, Value};

use super::{str_list, KafkaEventSource, KafkaSourceKind, StartingPosition};
use crate::template::intrinsics::Resolver;
use crate::template::TemplateError;

/// One Kafka event of function `function_id`, or `None` when it is disabled.
pub(super) fn kafka_event(
    function_id: &str,
    name: &str,
    kind: &str,
    p: &Map<String, Value>,
    at: &str,
) -> Result<Option<KafkaEventSource>, TemplateError> {
    if p.get("Enabled").and_then(Value::as_bool) == Some(false) {
        return Ok(None);
    }
    let topics = str_list(p.get("Topics"), at, "Topics")?;
    if topics.is_empty() {
        return Err(TemplateError::invalid(at, "Topics is missing"));
    }
    let pv = Value::Object(p.clone());
    let group = p
        .get("ConsumerGroupId")
        .or_else(|| pv.pointer("/AmazonManagedKafkaEventSourceConfig/ConsumerGroupId"))
        .or_else(|| pv.pointer("/SelfManagedKafkaEventSourceConfig/ConsumerGroupId"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{function_id}-{name}"));
    let num = |key: &str| -> Result<Option<f64>, TemplateError> {
        match p.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(Value::String(s)) => s
                .parse()
                .map(Some)
                .map_err(|_| TemplateError::invalid(at, format!("{key} is not a number"))),
            Some(_) => Err(TemplateError::invalid(at, format!("{key} is not a number"))),
        }
    };
    let batch_size = num("BatchSize")?.unwrap_or(100.0).clamp(1.0, 10_000.0) as usize;
    let batching_window = Duration::try_from_secs_f64(
        num("MaximumBatchingWindowInSeconds")?
            .unwrap_or(0.5)
            .clamp(0.0, 300.0),
    )
    .unwrap_or_default();
    let starting_position = match p
        .get("StartingPosition")
        .and_then(Value::as_str)
        .unwrap_or("TRIM_HORIZON")
    {
        "TRIM_HORIZON" => StartingPosition::TrimHorizon,
        "LATEST" => StartingPosition::Latest,
        other => {
            return Err(TemplateError::unsupported(
                at,
                format!("StartingPosition {other}"),
            ))
        }
    };
    let types = str_list(p.get("FunctionResponseTypes"), at, "FunctionResponseTypes")?;
    let maximum_retry_attempts = match num("MaximumRetryAttempts")? {
        None => None,
        Some(n) if n < 0.0 => None,
        Some(n) => Some(n as u32),
    };
    let on_failure = pv
        .pointer("/DestinationConfig/OnFailure/Destination")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let source = if kind == "MSK" {
        KafkaSourceKind::Msk {
            stream_arn: p
                .get("Stream")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        }
    } else {
        KafkaSourceKind::SelfManaged
    };
    Ok(Some(KafkaEventSource {
        name: name.to_owned(),
        kind: source,
        topics,
        consumer_group_id: group,
        batch_size,
        batching_window,
        starting_position,
        report_batch_item_failures: types.iter().any(|t| t == "ReportBatchItemFailures"),
        maximum_retry_attempts,
        on_failure,
        bisect_batch_on_function_error: p
            .get("BisectBatchOnFunctionError")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }))
}

/// An `AWS::Lambda::EventSourceMapping` (live: its Condition, if any, holds) reading Kafka:
/// the function's binary and the mapping. MSK when it has an `EventSourceArn` of a Kafka
/// cluster, self-managed when it has a `SelfManagedEventSource`; any other source (SQS, Kinesis,
/// DynamoDB) is unsupported. The Kafka properties are the SAM events' (`kafka_event`), with the
/// consumer group in `AmazonManagedKafkaEventSourceConfig` / `SelfManagedKafkaEventSourceConfig`.
pub(super) fn event_source_mapping(
    r: &Resolver<'_>,
    id: &str,
    res: &Value,
    at: &str,
) -> Result<Option<(String, KafkaEventSource)>, TemplateError> {
    let pat = format!("{at}.Properties");
    let mut props = match res.get("Properties") {
        Some(p) => match r.resolve(p, &pat)? {
            Some(Value::Object(m)) => m,
            _ => return Err(TemplateError::invalid(at, "Properties must be a map")),
        },
        None => return Err(TemplateError::invalid(at, "has no Properties")),
    };
    let name = props
        .get("FunctionName")
        .and_then(Value::as_str)
        .ok_or_else(|| TemplateError::invalid(&pat, "FunctionName is missing"))?;
    // `!Ref Fn` is the binary locally; `!GetAtt Fn.Arn` an ARN ending in `function:<binary>`.
    let binary = name
        .rsplit_once("function:")
        .map_or(name, |(_, b)| b)
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let kind = if props.contains_key("SelfManagedEventSource") {
        "SelfManagedKafka"
    } else {
        match props.get("EventSourceArn").and_then(Value::as_str) {
            Some(arn) if arn.split(':').nth(2) == Some("kafka") => {
                let arn = arn.to_owned();
                props.insert("Stream".into(), Value::String(arn));
                "MSK"
            }
            other => {
                return Err(TemplateError::unsupported(
                    &pat,
                    format!(
                        "event-source mappings other than Kafka (EventSourceArn {:?}; devstack reads MSK and SelfManagedEventSource mappings)",
                        other.unwrap_or_default()
                    ),
                ))
            }
        }
    };
    Ok(kafka_event(id, id, kind, &props, &pat)?.map(|source| (binary, source)))
}
