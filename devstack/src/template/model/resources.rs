//! The `Resources` section: which resources exist, what `!Ref`/`!GetAtt` of each resolves to
//! locally, and the reader of each kind ([`build`]).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::functions::function;
use super::http_api::{http_api, RouteOf};
use super::kafka_triggers::event_source_mapping;
use super::websocket_api::websocket_api;
use super::Stack;
use crate::template::intrinsics::{Resolver, ResourceValues};
use crate::template::{parameters, LoadOptions, TemplateError};

/// Resource values as devstack sees them: `!Ref` of a function is its binary name, of an API its
/// logical id, of a stage its name; `!GetAtt Fn.Arn` is a local ARN.
struct Resources<'a> {
    all: &'a Map<String, Value>,
    options: &'a LoadOptions,
}

impl Resources<'_> {
    fn kind(&self, id: &str) -> Option<&str> {
        self.all.get(id)?.get("Type")?.as_str()
    }
    fn binary(&self, id: &str) -> Option<String> {
        self.all
            .get(id)?
            .pointer("/Metadata/BuildProperties/Binary")?
            .as_str()
            .map(str::to_owned)
    }
    /// `arn:aws:<service>:<region>:<account>:<logical id>`, the service from the type
    /// (`AWS::SQS::Queue` is `sqs`).
    fn resource_arn(&self, kind: &str, id: &str) -> String {
        let p = &self.options.pseudo;
        let service = kind
            .split("::")
            .nth(1)
            .unwrap_or("resource")
            .to_ascii_lowercase();
        format!("arn:aws:{service}:{}:{}:{id}", p.region, p.account_id)
    }
    fn function_arn(&self, binary: &str) -> String {
        let p = &self.options.pseudo;
        format!(
            "arn:aws:lambda:{}:{}:function:{binary}",
            p.region, p.account_id
        )
    }
}

impl ResourceValues for Resources<'_> {
    fn reference(&self, id: &str) -> Option<Result<String, TemplateError>> {
        let kind = self.kind(id)?;
        Some(Ok(match kind {
            "AWS::Serverless::Function" => self.binary(id).unwrap_or_else(|| id.to_owned()),
            "AWS::ApiGatewayV2::Stage" => self
                .all
                .get(id)
                .and_then(|r| r.pointer("/Properties/StageName"))
                .and_then(Value::as_str)
                .unwrap_or(id)
                .to_owned(),
            _ => id.to_owned(),
        }))
    }

    fn attribute(
        &self,
        id: &str,
        attribute: &str,
        at: &str,
    ) -> Option<Result<String, TemplateError>> {
        let kind = self.kind(id)?;
        Some(match (kind, attribute) {
            ("AWS::Serverless::Function", "Arn") => {
                Ok(self.function_arn(&self.binary(id).unwrap_or_else(|| id.to_owned())))
            }
            ("AWS::ApiGatewayV2::Api", "ApiEndpoint") => {
                let ws = self
                    .all
                    .get(id)
                    .and_then(|r| r.pointer("/Properties/ProtocolType"))
                    .and_then(Value::as_str)
                    == Some("WEBSOCKET");
                Ok(if ws {
                    self.options.ws_endpoint.clone()
                } else {
                    self.options.http_endpoint.clone()
                })
            }
            ("AWS::Serverless::HttpApi", "ApiEndpoint") => Ok(self.options.http_endpoint.clone()),
            ("AWS::ApiGatewayV2::Api" | "AWS::Serverless::HttpApi", "ApiId") => Ok(id.to_owned()),
            // Any other resource's ARN (an on-failure queue, a topic): a local ARN naming it.
            (kind, "Arn") => Ok(self.resource_arn(kind, id)),
            (kind, attribute) => Err(TemplateError::unsupported(
                at,
                format!("!GetAtt {id}.{attribute} (a {kind})"),
            )),
        })
    }
}

/// The whole template, read: parameters, live resources, then each kind by its reader (Kafka
/// event-source mappings after the functions they feed, the APIs after the routes they serve).
pub(in crate::template) fn build(
    doc: &Value,
    options: &LoadOptions,
) -> Result<Stack, TemplateError> {
    let params = parameters(doc, &options.parameters)?;
    let empty = Map::new();
    let conditions = doc
        .get("Conditions")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let all = doc
        .get("Resources")
        .and_then(Value::as_object)
        .ok_or_else(|| TemplateError::invalid("template", "has no Resources"))?;
    let every = Resources { all, options };
    let r = Resolver {
        parameters: &params,
        conditions,
        pseudo: &options.pseudo,
        resources: &every,
    };

    let live = live_resources(&r, all)?;
    let resources = Resources {
        all: &live,
        options,
    };
    let r = Resolver {
        parameters: &params,
        conditions,
        pseudo: &options.pseudo,
        resources: &resources,
    };

    let globals = doc.get("Globals");
    let fn_globals = globals
        .and_then(|g| g.get("Function"))
        .and_then(Value::as_object);
    let api_globals = globals
        .and_then(|g| g.get("HttpApi"))
        .and_then(Value::as_object);

    let mut functions = Vec::new();
    let mut http_routes: Vec<RouteOf> = Vec::new();
    let mut mappings = Vec::new();
    for (id, res) in &live {
        let kind = res.get("Type").and_then(Value::as_str).unwrap_or_default();
        let at = format!("Resources.{id}");
        match kind {
            "AWS::Serverless::Function" => {
                let (f, routes) = function(&r, id, res, fn_globals, &at)?;
                functions.push(f);
                http_routes.extend(routes);
            }
            "AWS::Lambda::EventSourceMapping" => mappings.push((id, res)),
            "AWS::Lambda::Function" | "AWS::Serverless::Api" | "AWS::ApiGateway::RestApi" => {
                return Err(TemplateError::unsupported(
                    &at,
                    format!("{kind} resources (use AWS::Serverless::Function / HttpApi)"),
                ));
            }
            _ => {}
        }
    }

    for (id, res) in mappings {
        let at = format!("Resources.{id}");
        if let Some((binary, source)) = event_source_mapping(&r, id, res, &at)? {
            let f = functions
                .iter_mut()
                .find(|f| f.binary == binary)
                .ok_or_else(|| {
                    TemplateError::invalid(
                        &at,
                        format!("FunctionName {binary:?} is not a function of this template"),
                    )
                })?;
            f.kafka.push(source);
        }
    }

    let http_api = http_api(&r, &live, api_globals, http_routes)?;
    let websocket_api = websocket_api(&r, &live, &functions)?;
    let parameters = parameters_in_force(params);
    Ok(Stack {
        functions,
        http_api,
        websocket_api,
        parameters,
    })
}

/// The parameters in force as the [`Stack`] reports them: lists joined with commas.
fn parameters_in_force(params: BTreeMap<String, Value>) -> BTreeMap<String, String> {
    params
        .into_iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s,
                Value::Array(items) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            (k, s)
        })
        .collect()
}

/// The resources that exist: those without a `Condition` and those whose `Condition` holds.
fn live_resources(
    r: &Resolver<'_>,
    all: &Map<String, Value>,
) -> Result<Map<String, Value>, TemplateError> {
    let mut live = Map::new();
    for (id, res) in all {
        let present = match res.get("Condition").and_then(Value::as_str) {
            Some(c) => r.condition(c, &format!("Resources.{id}.Condition"))?,
            None => true,
        };
        if present {
            live.insert(id.clone(), res.clone());
        }
    }
    Ok(live)
}
