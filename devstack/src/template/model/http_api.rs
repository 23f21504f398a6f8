//! The HTTP API: each function's `HttpApi` events ([`http_event`]) and the one
//! `AWS::Serverless::HttpApi`, explicit or SAM's implicit `ServerlessHttpApi` ([`http_api`]), with
//! its JWT authorizers, CORS and each route's authorization settled against `DefaultAuthorizer`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{str_list, with_globals, Cors, HttpApi, HttpRoute, JwtAuthorizer, RouteAuth};
use crate::template::intrinsics::Resolver;
use crate::template::TemplateError;

/// A route before its API is known: (ApiId, route, the event's `Auth` as (Authorizer, scopes)).
pub(super) type RouteOf = (
    Option<String>,
    HttpRoute,
    Option<(Option<String>, Vec<String>)>,
);

/// The route an `HttpApi` event declares (no Method and Path: `$default`); its authorization is
/// settled by [`http_api`].
pub(super) fn http_event(
    p: &Map<String, Value>,
    binary: &str,
    at: &str,
) -> Result<RouteOf, TemplateError> {
    let (method, path) = match (
        p.get("Method").and_then(Value::as_str),
        p.get("Path").and_then(Value::as_str),
    ) {
        (Some(m), Some(path)) => {
            let m = m.to_ascii_uppercase();
            (if m == "*" { "ANY".to_owned() } else { m }, path.to_owned())
        }
        (None, None) => ("ANY".to_owned(), "$default".to_owned()),
        _ => {
            return Err(TemplateError::invalid(
                at,
                "HttpApi events need both Method and Path (or neither, for $default)",
            ))
        }
    };
    if path != "$default" && !path.starts_with('/') {
        return Err(TemplateError::invalid(
            at,
            format!("Path {path:?} must start with /"),
        ));
    }
    let auth = match p.get("Auth") {
        None => None,
        Some(a) => {
            let authorizer = a
                .get("Authorizer")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let scopes = str_list(a.get("AuthorizationScopes"), at, "AuthorizationScopes")?;
            Some((authorizer, scopes))
        }
    };
    let api = p.get("ApiId").and_then(Value::as_str).map(str::to_owned);
    // Authorization is settled once the API (and its DefaultAuthorizer) is known.
    let route = HttpRoute {
        method,
        path,
        function: binary.to_owned(),
        auth: RouteAuth::None,
    };
    Ok((api, route, auth))
}

/// The one HTTP API, when the template declares one or any function has an `HttpApi` event.
pub(super) fn http_api(
    r: &Resolver<'_>,
    live: &Map<String, Value>,
    globals: Option<&Map<String, Value>>,
    routes: Vec<RouteOf>,
) -> Result<Option<HttpApi>, TemplateError> {
    let declared: Vec<&String> = live
        .iter()
        .filter(|(_, v)| v.get("Type").and_then(Value::as_str) == Some("AWS::Serverless::HttpApi"))
        .map(|(k, _)| k)
        .collect();
    if declared.len() > 1 {
        return Err(TemplateError::unsupported(
            "Resources",
            "more than one AWS::Serverless::HttpApi (devstack serves one HTTP API)",
        ));
    }
    if declared.is_empty() && routes.is_empty() {
        return Ok(None);
    }
    let logical_id = declared
        .first()
        .map(|s| s.to_string())
        .unwrap_or_else(|| "ServerlessHttpApi".to_owned());
    let at = format!("Resources.{logical_id}.Properties");
    let empty = Map::new();
    let own = live
        .get(&logical_id)
        .and_then(|v| v.get("Properties"))
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let props = with_globals(own, globals);
    let props = match r.resolve(&Value::Object(props), &at)? {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };

    let auth = props.get("Auth");
    let authorizers = authorizers(auth, &at)?;
    let default_authorizer = auth
        .and_then(|a| a.get("DefaultAuthorizer"))
        .and_then(Value::as_str)
        .map(str::to_owned);

    let cors = cors(props.get("CorsConfiguration"), &at)?;
    let out = settle_routes(routes, &logical_id, default_authorizer, &authorizers)?;
    Ok(Some(HttpApi {
        logical_id,
        routes: out,
        authorizers,
        cors,
    }))
}

/// `Auth.Authorizers`: JWT authorizers only, the token in a `$request.header.X`.
fn authorizers(
    auth: Option<&Value>,
    at: &str,
) -> Result<BTreeMap<String, JwtAuthorizer>, TemplateError> {
    let mut authorizers = BTreeMap::new();
    if let Some(list) = auth
        .and_then(|a| a.get("Authorizers"))
        .and_then(Value::as_object)
    {
        for (name, a) in list {
            let aat = format!("{at}.Auth.Authorizers.{name}");
            let Some(jwt) = a.get("JwtConfiguration") else {
                return Err(TemplateError::unsupported(
                    &aat,
                    "authorizers other than JWT (JwtConfiguration)",
                ));
            };
            let issuer = jwt.get("issuer").and_then(Value::as_str).ok_or_else(|| {
                TemplateError::invalid(&aat, "JwtConfiguration.issuer is missing")
            })?;
            let audience = str_list(jwt.get("audience"), &aat, "audience")?;
            let source = a
                .get("IdentitySource")
                .and_then(Value::as_str)
                .unwrap_or("$request.header.Authorization");
            let header = source
                .strip_prefix("$request.header.")
                .ok_or_else(|| {
                    TemplateError::unsupported(
                        &aat,
                        format!("IdentitySource {source:?} (only $request.header.X)"),
                    )
                })?
                .to_ascii_lowercase();
            authorizers.insert(
                name.clone(),
                JwtAuthorizer {
                    issuer: issuer.to_owned(),
                    audience,
                    header,
                },
            );
        }
    }
    Ok(authorizers)
}

/// `CorsConfiguration`: `true` allows every origin, method and header; header names lower-cased.
fn cors(configuration: Option<&Value>, at: &str) -> Result<Option<Cors>, TemplateError> {
    Ok(match configuration {
        None | Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some(Cors {
            allow_origins: vec!["*".into()],
            allow_methods: vec!["*".into()],
            allow_headers: vec!["*".into()],
            ..Cors::default()
        }),
        Some(c) => {
            let cat = format!("{at}.CorsConfiguration");
            Some(Cors {
                allow_origins: str_list(c.get("AllowOrigins"), &cat, "AllowOrigins")?,
                allow_methods: str_list(c.get("AllowMethods"), &cat, "AllowMethods")?,
                allow_headers: str_list(c.get("AllowHeaders"), &cat, "AllowHeaders")?
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
                expose_headers: str_list(c.get("ExposeHeaders"), &cat, "ExposeHeaders")?,
                max_age: c.get("MaxAge").and_then(|v| {
                    v.as_u64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                }),
                allow_credentials: c
                    .get("AllowCredentials")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            })
        }
    })
}

/// Each route's authorization, settled against the API's `DefaultAuthorizer`; a route of another
/// API, naming an undeclared authorizer, or declared twice is an error.
fn settle_routes(
    routes: Vec<RouteOf>,
    logical_id: &str,
    default_authorizer: Option<String>,
    authorizers: &BTreeMap<String, JwtAuthorizer>,
) -> Result<Vec<HttpRoute>, TemplateError> {
    let mut out = Vec::new();
    for (api, mut route, auth) in routes {
        let rat = format!("route {}", route.route_key());
        if let Some(api) = api {
            if api != logical_id {
                return Err(TemplateError::unsupported(
                    &rat,
                    format!("ApiId {api} (devstack serves the one HttpApi {logical_id})"),
                ));
            }
        }
        let (named, scopes) = match auth {
            Some((named, scopes)) => (named.or(default_authorizer.clone()), scopes),
            None => (default_authorizer.clone(), Vec::new()),
        };
        route.auth = match named.as_deref() {
            None | Some("NONE") => RouteAuth::None,
            Some(name) if authorizers.contains_key(name) => RouteAuth::Jwt {
                authorizer: name.to_owned(),
                scopes,
            },
            Some(name) => {
                return Err(TemplateError::invalid(
                    &rat,
                    format!("authorizer {name} is not declared in {logical_id}.Auth.Authorizers"),
                ))
            }
        };
        if out
            .iter()
            .any(|o: &HttpRoute| o.route_key() == route.route_key())
        {
            return Err(TemplateError::invalid(&rat, "is declared twice"));
        }
        out.push(route);
    }
    Ok(out)
}
