//! Where settings come from ([`Env`]: the process environment, or a fixed map) and what a bad
//! one is ([`ConfigError`], which always names the variable).

use std::collections::HashMap;
use std::str::FromStr;

/// A setting that is missing or unusable. The message always names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set; it has no default")]
    Missing(&'static str),
    #[error("{var}={value:?} is invalid: {reason}")]
    Invalid {
        var: &'static str,
        value: String,
        reason: String,
    },
}

/// Where settings come from: the process environment, or a fixed map (tests, devstack).
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn process() -> Self {
        Env {
            vars: std::env::vars().collect(),
        }
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Every variable, in no particular order (the secrets resolver scans them).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Sets `var` (the secrets resolver, with a resolved value).
    pub(crate) fn set(&mut self, var: String, value: String) {
        self.vars.insert(var, value);
    }

    fn get(&self, var: &str) -> Option<&str> {
        self.vars
            .get(var)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn required(&self, var: &'static str) -> Result<String, ConfigError> {
        self.get(var)
            .map(str::to_owned)
            .ok_or(ConfigError::Missing(var))
    }

    pub fn optional(&self, var: &'static str) -> Option<String> {
        self.get(var).map(str::to_owned)
    }

    pub fn string_or(&self, var: &'static str, default: &str) -> String {
        self.get(var).unwrap_or(default).to_owned()
    }

    pub fn parse_or<T>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(var) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid {
                var,
                value: v.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    /// `var`'s value, or its default from the configuration reference
    /// ([`super::reference::default_of`]), parsed alike. A variable without a default there is
    /// refused, naming it (a test reads every group from an empty environment).
    pub fn parse<T>(&self, var: &'static str) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        let value = self
            .get(var)
            .or_else(|| super::reference::default_of(var))
            .ok_or(ConfigError::Invalid {
                var,
                value: String::new(),
                reason: "has no default in shared/src/config/reference.rs".into(),
            })?;
        value.parse().map_err(|e: T::Err| ConfigError::Invalid {
            var,
            value: value.to_owned(),
            reason: e.to_string(),
        })
    }

    /// A boolean: `var`'s value, or its default from the configuration reference.
    pub fn bool(&self, var: &'static str) -> Result<bool, ConfigError> {
        let default = match super::reference::default_of(var) {
            Some("true") => true,
            Some("false") => false,
            _ => {
                return Err(ConfigError::Invalid {
                    var,
                    value: String::new(),
                    reason: "has no default in shared/src/config/reference.rs".into(),
                })
            }
        };
        self.bool_or(var, default)
    }

    pub fn bool_or(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(var).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(v) => Err(ConfigError::Invalid {
                var,
                value: v.to_owned(),
                reason: "expected true or false".into(),
            }),
        }
    }

    /// A number greater than 0: `var`'s value, or its default from the configuration reference.
    pub(super) fn positive<T: PartialOrd + Default + FromStr>(
        &self,
        var: &'static str,
    ) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        let v = self.parse::<T>(var)?;
        if v > T::default() {
            Ok(v)
        } else {
            Err(ConfigError::Invalid {
                var,
                value: self.get(var).unwrap_or_default().to_owned(),
                reason: "must be greater than 0".into(),
            })
        }
    }
}
