//! CloudFormation intrinsics, as far as devstack honours them.
//!
//! YAML short forms (`!Ref`, `!Sub`, `!GetAtt`, `!If`, ...) are first rewritten into their long
//! JSON forms (`{"Ref": ..}`, `{"Fn::Sub": ..}`), so the resolver sees one shape. The resolver then
//! evaluates `Ref` (parameters, pseudo parameters, resources), `Fn::Sub`, `Fn::GetAtt` of the
//! template's own resources, `Fn::If` / `Fn::Equals` / `Fn::Not` / `Fn::And` / `Fn::Or` with the
//! template's Conditions, `Fn::Join`, `Fn::Select` and `Fn::Split`. Anything else fails with
//! [`TemplateError::Unsupported`] naming where it was found: devstack never guesses a value.
//!
//! Only the fields devstack reads are resolved, so an unsupported intrinsic in, say, an IAM policy
//! does not stop devstack.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::TemplateError;

/// Rewrites a YAML document into JSON, turning tagged short forms into long-form intrinsics.
pub fn yaml_to_json(v: serde_yaml::Value, at: &str) -> Result<Value, TemplateError> {
    use serde_yaml::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| yaml_to_json(v, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => {
                        return Err(TemplateError::invalid(
                            at,
                            format!("unsupported mapping key {other:?}"),
                        ))
                    }
                };
                let child = format!("{at}.{key}");
                out.insert(key, yaml_to_json(v, &child)?);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => {
            let tag = t.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = yaml_to_json(t.value, at)?;
            let (key, value) = match name {
                "Ref" => ("Ref".to_owned(), inner),
                "Condition" => ("Condition".to_owned(), inner),
                "GetAtt" => {
                    // `!GetAtt Res.Attr` is a string; the long form is a two-element list.
                    let value = match inner {
                        Value::String(s) => match s.split_once('.') {
                            Some((res, attr)) => Value::Array(vec![res.into(), attr.into()]),
                            None => {
                                return Err(TemplateError::invalid(
                                    at,
                                    format!("!GetAtt {s:?} is not Resource.Attribute"),
                                ))
                            }
                        },
                        other => other,
                    };
                    ("Fn::GetAtt".to_owned(), value)
                }
                other => (format!("Fn::{other}"), inner),
            };
            let mut m = Map::new();
            m.insert(key, value);
            Value::Object(m)
        }
    })
}

/// Values every template can `!Ref` without declaring them.
#[derive(Debug, Clone)]
pub struct Pseudo {
    pub region: String,
    pub account_id: String,
    pub stack_name: String,
}

impl Default for Pseudo {
    fn default() -> Self {
        Pseudo {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            stack_name: "herald".into(),
        }
    }
}

/// What `!Ref` and `!GetAtt` of a resource give locally. Built by the template reader, which knows
/// the resources' types.
pub trait ResourceValues {
    /// `!Ref Logical` of a resource; `None` if there is no such resource.
    fn reference(&self, logical_id: &str) -> Option<Result<String, TemplateError>>;
    /// `!GetAtt Logical.Attribute`; `None` if there is no such resource.
    fn attribute(
        &self,
        logical_id: &str,
        attribute: &str,
        at: &str,
    ) -> Option<Result<String, TemplateError>>;
}

/// Evaluates intrinsics against parameters, pseudo parameters, conditions and resources.
pub struct Resolver<'a> {
    pub parameters: &'a BTreeMap<String, Value>,
    pub conditions: &'a Map<String, Value>,
    pub pseudo: &'a Pseudo,
    pub resources: &'a dyn ResourceValues,
}

const MAX_DEPTH: usize = 64;

impl Resolver<'_> {
    /// Resolves `v`. `Ok(None)` means `AWS::NoValue`: the property is absent.
    pub fn resolve(&self, v: &Value, at: &str) -> Result<Option<Value>, TemplateError> {
        self.resolve_depth(v, at, 0)
    }

    /// Resolves `v` and requires a scalar, rendered as a string (numbers and booleans included).
    pub fn string(&self, v: &Value, at: &str) -> Result<String, TemplateError> {
        match self.resolve(v, at)? {
            Some(Value::String(s)) => Ok(s),
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(Value::Bool(b)) => Ok(b.to_string()),
            other => Err(TemplateError::invalid(
                at,
                format!("expected a string, found {}", describe(other.as_ref())),
            )),
        }
    }

    /// Evaluates a named condition.
    pub fn condition(&self, name: &str, at: &str) -> Result<bool, TemplateError> {
        self.condition_depth(name, at, 0)
    }

    fn condition_depth(&self, name: &str, at: &str, depth: usize) -> Result<bool, TemplateError> {
        if depth > MAX_DEPTH {
            return Err(TemplateError::invalid(
                at,
                format!("condition {name} refers to itself"),
            ));
        }
        let expr = self
            .conditions
            .get(name)
            .ok_or_else(|| TemplateError::invalid(at, format!("no condition named {name}")))?;
        match self.resolve_depth(expr, &format!("Conditions.{name}"), depth + 1)? {
            Some(Value::Bool(b)) => Ok(b),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
            other => Err(TemplateError::invalid(
                at,
                format!(
                    "condition {name} is not a boolean: {}",
                    describe(other.as_ref())
                ),
            )),
        }
    }

    fn resolve_depth(
        &self,
        v: &Value,
        at: &str,
        depth: usize,
    ) -> Result<Option<Value>, TemplateError> {
        if depth > MAX_DEPTH {
            return Err(TemplateError::invalid(at, "intrinsics nested too deeply"));
        }
        match v {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    if let Some(r) = self.resolve_depth(item, &format!("{at}[{i}]"), depth + 1)? {
                        out.push(r);
                    }
                }
                Ok(Some(Value::Array(out)))
            }
            Value::Object(m) if m.len() == 1 => {
                let Some((key, arg)) = m.iter().next() else {
                    return Ok(Some(v.clone()));
                };
                if key == "Ref" || key == "Condition" || key.starts_with("Fn::") {
                    self.intrinsic(key, arg, at, depth)
                } else {
                    self.object(m, at, depth)
                }
            }
            Value::Object(m) => self.object(m, at, depth),
            other => Ok(Some(other.clone())),
        }
    }

    fn object(
        &self,
        m: &Map<String, Value>,
        at: &str,
        depth: usize,
    ) -> Result<Option<Value>, TemplateError> {
        let mut out = Map::new();
        for (k, v) in m {
            if let Some(r) = self.resolve_depth(v, &format!("{at}.{k}"), depth + 1)? {
                out.insert(k.clone(), r);
            }
        }
        Ok(Some(Value::Object(out)))
    }

    fn list(
        &self,
        arg: &Value,
        at: &str,
        depth: usize,
        name: &str,
        len: Option<usize>,
    ) -> Result<Vec<Value>, TemplateError> {
        match self.resolve_depth(arg, at, depth + 1)? {
            Some(Value::Array(items)) if len.is_none_or(|n| items.len() == n) => Ok(items),
            other => Err(TemplateError::invalid(
                at,
                format!(
                    "{name} expects a list{}, found {}",
                    len.map(|n| format!(" of {n}")).unwrap_or_default(),
                    describe(other.as_ref())
                ),
            )),
        }
    }

    fn scalar_string(v: &Value, at: &str, name: &str) -> Result<String, TemplateError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(TemplateError::invalid(
                at,
                format!("{name}: expected a string, found {}", describe(Some(other))),
            )),
        }
    }

    /// The value of one intrinsic function `key` applied to `arg`.
    // Over 100 lines on purpose: one arm per intrinsic function, so the table of what devstack
    // supports reads in one place; each arm is short.
    fn intrinsic(
        &self,
        key: &str,
        arg: &Value,
        at: &str,
        depth: usize,
    ) -> Result<Option<Value>, TemplateError> {
        match key {
            "Ref" => {
                let name = Self::scalar_string(arg, at, "Ref")?;
                self.reference(&name, at)
                    .map(|v| v.map(|v| v.clone_value()))
            }
            "Condition" => {
                let name = Self::scalar_string(arg, at, "Condition")?;
                Ok(Some(Value::Bool(self.condition_depth(
                    &name,
                    at,
                    depth + 1,
                )?)))
            }
            "Fn::GetAtt" => {
                let (res, attr) = match arg {
                    Value::String(s) => {
                        s.split_once('.').map(|(a, b)| (a.to_owned(), b.to_owned()))
                    }
                    Value::Array(items) if items.len() == 2 => {
                        let parts = self.list(arg, at, depth, "Fn::GetAtt", Some(2))?;
                        match (&parts[0], &parts[1]) {
                            (Value::String(a), Value::String(b)) => Some((a.clone(), b.clone())),
                            _ => None,
                        }
                        .or_else(|| {
                            items
                                .first()
                                .and_then(Value::as_str)
                                .map(|a| (a.to_owned(), String::new()))
                        })
                    }
                    _ => None,
                }
                .ok_or_else(|| {
                    TemplateError::invalid(at, "Fn::GetAtt expects Resource.Attribute")
                })?;
                match self.resources.attribute(&res, &attr, at) {
                    Some(r) => r.map(|s| Some(Value::String(s))),
                    None => Err(TemplateError::invalid(
                        at,
                        format!("!GetAtt {res}.{attr}: no resource named {res}"),
                    )),
                }
            }
            "Fn::Sub" => {
                let (text, vars) = match arg {
                    Value::String(s) => (s.clone(), Map::new()),
                    Value::Array(items) if items.len() == 2 => {
                        let text = Self::scalar_string(&items[0], at, "Fn::Sub")?;
                        let vars = match self.resolve_depth(&items[1], at, depth + 1)? {
                            Some(Value::Object(m)) => m,
                            _ => {
                                return Err(TemplateError::invalid(
                                    at,
                                    "Fn::Sub's second element must be a map",
                                ))
                            }
                        };
                        (text, vars)
                    }
                    _ => {
                        return Err(TemplateError::invalid(
                            at,
                            "Fn::Sub expects a string or [string, map]",
                        ))
                    }
                };
                self.sub(&text, &vars, at).map(|s| Some(Value::String(s)))
            }
            "Fn::If" => {
                let Value::Array(items) = arg else {
                    return Err(TemplateError::invalid(
                        at,
                        "Fn::If expects [condition, then, else]",
                    ));
                };
                if items.len() != 3 {
                    return Err(TemplateError::invalid(
                        at,
                        "Fn::If expects [condition, then, else]",
                    ));
                }
                let name = Self::scalar_string(&items[0], at, "Fn::If")?;
                let branch = if self.condition_depth(&name, at, depth + 1)? {
                    &items[1]
                } else {
                    &items[2]
                };
                self.resolve_depth(branch, at, depth + 1)
            }
            "Fn::Equals" => {
                let items = self.list(arg, at, depth, "Fn::Equals", Some(2))?;
                let norm = |v: &Value| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                Ok(Some(Value::Bool(norm(&items[0]) == norm(&items[1]))))
            }
            "Fn::Not" | "Fn::And" | "Fn::Or" => {
                let items = self.list(arg, at, depth, key, None)?;
                let mut bools = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::Bool(b) => bools.push(b),
                        other => {
                            return Err(TemplateError::invalid(
                                at,
                                format!(
                                    "{key} expects conditions, found {}",
                                    describe(Some(&other))
                                ),
                            ))
                        }
                    }
                }
                let result = match key {
                    "Fn::Not" if bools.len() == 1 => !bools[0],
                    "Fn::Not" => {
                        return Err(TemplateError::invalid(at, "Fn::Not expects one condition"))
                    }
                    "Fn::And" => bools.iter().all(|b| *b),
                    _ => bools.iter().any(|b| *b),
                };
                Ok(Some(Value::Bool(result)))
            }
            "Fn::Join" => {
                let items = self.list(arg, at, depth, "Fn::Join", Some(2))?;
                let delim = Self::scalar_string(&items[0], at, "Fn::Join")?;
                let Value::Array(parts) = &items[1] else {
                    return Err(TemplateError::invalid(
                        at,
                        "Fn::Join expects [delimiter, list]",
                    ));
                };
                let parts = parts
                    .iter()
                    .map(|p| Self::scalar_string(p, at, "Fn::Join"))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some(Value::String(parts.join(&delim))))
            }
            "Fn::Select" => {
                let items = self.list(arg, at, depth, "Fn::Select", Some(2))?;
                let index: usize = Self::scalar_string(&items[0], at, "Fn::Select")?
                    .parse()
                    .map_err(|_| {
                        TemplateError::invalid(at, "Fn::Select's index is not a number")
                    })?;
                let Value::Array(list) = &items[1] else {
                    return Err(TemplateError::invalid(
                        at,
                        "Fn::Select expects [index, list]",
                    ));
                };
                list.get(index).cloned().map(Some).ok_or_else(|| {
                    TemplateError::invalid(at, format!("Fn::Select index {index} is out of range"))
                })
            }
            "Fn::Split" => {
                let items = self.list(arg, at, depth, "Fn::Split", Some(2))?;
                let delim = Self::scalar_string(&items[0], at, "Fn::Split")?;
                let text = Self::scalar_string(&items[1], at, "Fn::Split")?;
                Ok(Some(Value::Array(
                    text.split(delim.as_str())
                        .map(|s| Value::String(s.to_owned()))
                        .collect(),
                )))
            }
            other => Err(TemplateError::Unsupported {
                at: at.to_owned(),
                what: format!("the intrinsic {other}"),
            }),
        }
    }

    fn reference(&self, name: &str, at: &str) -> Result<Option<Referenced>, TemplateError> {
        if let Some(v) = self.parameters.get(name) {
            return Ok(Some(Referenced::Value(v.clone())));
        }
        let pseudo = match name {
            "AWS::Region" => Some(self.pseudo.region.clone()),
            "AWS::AccountId" => Some(self.pseudo.account_id.clone()),
            "AWS::StackName" => Some(self.pseudo.stack_name.clone()),
            "AWS::StackId" => Some(format!(
                "arn:aws:cloudformation:{}:{}:stack/{}/local",
                self.pseudo.region, self.pseudo.account_id, self.pseudo.stack_name
            )),
            "AWS::Partition" => Some("aws".to_owned()),
            "AWS::URLSuffix" => Some("amazonaws.com".to_owned()),
            "AWS::NoValue" => return Ok(None),
            _ => None,
        };
        if let Some(p) = pseudo {
            return Ok(Some(Referenced::Value(Value::String(p))));
        }
        if name.starts_with("AWS::") {
            return Err(TemplateError::Unsupported {
                at: at.to_owned(),
                what: format!("the pseudo parameter {name}"),
            });
        }
        match self.resources.reference(name) {
            Some(r) => r.map(|s| Some(Referenced::Value(Value::String(s)))),
            None => Err(TemplateError::invalid(
                at,
                format!("!Ref {name}: no parameter or resource named {name}"),
            )),
        }
    }

    /// `${Name}`, `${Res.Attr}` and `${!Literal}` substitution.
    fn sub(
        &self,
        text: &str,
        vars: &Map<String, Value>,
        at: &str,
    ) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| {
                TemplateError::invalid(at, format!("unterminated ${{ in Fn::Sub {text:?}"))
            })?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(v) = vars.get(name) {
                out.push_str(&Self::scalar_string(v, at, "Fn::Sub")?);
            } else if let Some((res, attr)) =
                name.split_once('.').filter(|_| !name.starts_with("AWS::"))
            {
                match self.resources.attribute(res, attr, at) {
                    Some(r) => out.push_str(&r?),
                    None => {
                        return Err(TemplateError::invalid(
                            at,
                            format!("${{{name}}}: no resource named {res}"),
                        ))
                    }
                }
            } else {
                match self.reference(name, at)? {
                    Some(Referenced::Value(v)) => {
                        out.push_str(&Self::scalar_string(&v, at, "Fn::Sub")?)
                    }
                    None => {
                        return Err(TemplateError::invalid(
                            at,
                            format!("${{{name}}} is AWS::NoValue"),
                        ))
                    }
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

enum Referenced {
    Value(Value),
}

impl Referenced {
    fn clone_value(self) -> Value {
        match self {
            Referenced::Value(v) => v,
        }
    }
}

fn describe(v: Option<&Value>) -> String {
    match v {
        None => "nothing (AWS::NoValue)".to_owned(),
        Some(Value::Null) => "null".to_owned(),
        Some(Value::Bool(_)) => "a boolean".to_owned(),
        Some(Value::Number(_)) => "a number".to_owned(),
        Some(Value::String(_)) => "a string".to_owned(),
        Some(Value::Array(_)) => "a list".to_owned(),
        Some(Value::Object(m)) => match m.keys().next() {
            Some(k) if m.len() == 1 && (k == "Ref" || k.starts_with("Fn::")) => {
                format!("the intrinsic {k}")
            }
            _ => "a map".to_owned(),
        },
    }
}
