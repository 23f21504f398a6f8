//! The WebSocket API: the one `AWS::ApiGatewayV2::Api` with `ProtocolType: WEBSOCKET`, its
//! `AWS::ApiGatewayV2::Route`s (each an `AWS_PROXY` integration with a function of the template)
//! and its `AWS::ApiGatewayV2::Stage`.

use serde_json::{Map, Value};

use super::{Function, WebSocketApi, WsRoute};
use crate::template::intrinsics::Resolver;
use crate::template::TemplateError;

/// The WebSocket API, when the template has one; `functions` are the template's (integrations
/// must name one of them).
pub(super) fn websocket_api(
    r: &Resolver<'_>,
    live: &Map<String, Value>,
    functions: &[Function],
) -> Result<Option<WebSocketApi>, TemplateError> {
    let of_type = |t: &str| -> Vec<(&String, &Value)> {
        live.iter()
            .filter(|(_, v)| v.get("Type").and_then(Value::as_str) == Some(t))
            .collect()
    };
    let apis: Vec<_> = of_type("AWS::ApiGatewayV2::Api")
        .into_iter()
        .filter(|(_, v)| {
            v.pointer("/Properties/ProtocolType")
                .and_then(Value::as_str)
                == Some("WEBSOCKET")
        })
        .collect();
    let Some((api_id, api)) = apis.first() else {
        return Ok(None);
    };
    if apis.len() > 1 {
        return Err(TemplateError::unsupported(
            "Resources",
            "more than one WebSocket API",
        ));
    }
    let at = format!("Resources.{api_id}.Properties");
    let expr = match api.pointer("/Properties/RouteSelectionExpression") {
        Some(v) => r.string(v, &format!("{at}.RouteSelectionExpression"))?,
        None => {
            return Err(TemplateError::invalid(
                &at,
                "RouteSelectionExpression is missing",
            ))
        }
    };
    let field = expr
        .strip_prefix("$request.body.")
        .ok_or_else(|| {
            TemplateError::unsupported(
                &at,
                format!("RouteSelectionExpression {expr:?} (only $request.body.<field>)"),
            )
        })?
        .to_owned();

    let mut routes = Vec::new();
    for (id, res) in of_type("AWS::ApiGatewayV2::Route") {
        if let Some(route) = ws_route(r, live, functions, api_id, id, res)? {
            routes.push(route);
        }
    }
    let stage = of_type("AWS::ApiGatewayV2::Stage")
        .into_iter()
        .filter_map(|(id, s)| {
            let p = s.get("Properties")?;
            let api = r
                .resolve(p.get("ApiId")?, &format!("Resources.{id}"))
                .ok()??;
            (api.as_str() == Some(api_id.as_str())).then(|| {
                p.get("StageName")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })?
        })
        .next();
    Ok(Some(WebSocketApi {
        logical_id: api_id.to_string(),
        route_selection_field: field,
        routes,
        stage,
    }))
}

/// The `AWS::ApiGatewayV2::Route` `id`, when it belongs to the API `api_id`: its key, and the
/// function its `AWS_PROXY` integration invokes.
fn ws_route(
    r: &Resolver<'_>,
    live: &Map<String, Value>,
    functions: &[Function],
    api_id: &str,
    id: &str,
    res: &Value,
) -> Result<Option<WsRoute>, TemplateError> {
    let rat = format!("Resources.{id}.Properties");
    let props = match res.get("Properties") {
        Some(p) => r.resolve(p, &rat)?.unwrap_or(Value::Null),
        None => Value::Null,
    };
    if props.get("ApiId").and_then(Value::as_str) != Some(api_id) {
        return Ok(None);
    }
    let route_key = props
        .get("RouteKey")
        .and_then(Value::as_str)
        .ok_or_else(|| TemplateError::invalid(&rat, "RouteKey is missing"))?
        .to_owned();
    match props
        .get("AuthorizationType")
        .and_then(Value::as_str)
        .unwrap_or("NONE")
    {
        "NONE" => {}
        other => {
            return Err(TemplateError::unsupported(
                &rat,
                format!("AuthorizationType {other} (Herald's ws function verifies tokens itself)"),
            ))
        }
    }
    let target = props
        .get("Target")
        .and_then(Value::as_str)
        .ok_or_else(|| TemplateError::invalid(&rat, "Target is missing"))?;
    let integration_id = target.strip_prefix("integrations/").ok_or_else(|| {
        TemplateError::unsupported(
            &rat,
            format!("Target {target:?} (expected integrations/<id>)"),
        )
    })?;
    let integration = live.get(integration_id).ok_or_else(|| {
        TemplateError::invalid(&rat, format!("no integration named {integration_id}"))
    })?;
    let iat = format!("Resources.{integration_id}.Properties");
    let iprops = match integration.get("Properties") {
        Some(p) => r.resolve(p, &iat)?.unwrap_or(Value::Null),
        None => Value::Null,
    };
    match iprops.get("IntegrationType").and_then(Value::as_str) {
        Some("AWS_PROXY") => {}
        other => {
            return Err(TemplateError::unsupported(
                &iat,
                format!("IntegrationType {other:?} (only AWS_PROXY)"),
            ))
        }
    }
    let uri = iprops
        .get("IntegrationUri")
        .and_then(Value::as_str)
        .ok_or_else(|| TemplateError::invalid(&iat, "IntegrationUri is missing"))?;
    let function = uri
        .split("function:")
        .nth(1)
        .map(|rest| rest.split(['/', ':']).next().unwrap_or_default().to_owned())
        .filter(|f| functions.iter().any(|x| &x.binary == f))
        .ok_or_else(|| {
            TemplateError::unsupported(
                &iat,
                format!("IntegrationUri {uri:?} (expected a function of this template)"),
            )
        })?;
    let two_way = props
        .get("RouteResponseSelectionExpression")
        .and_then(Value::as_str)
        .is_some();
    Ok(Some(WsRoute {
        route_key,
        function,
        two_way,
    }))
}
