//! Reads [`AwsSettings`] (defined in [`crate::aws`], which reads nothing itself).

use super::{ConfigError, Env};
use crate::aws::AwsSettings;

/// Reads the function's AWS identity (what Lambda sets for the execution role).
impl AwsSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(AwsSettings {
            access_key_id: env.required("AWS_ACCESS_KEY_ID")?,
            secret_access_key: env.required("AWS_SECRET_ACCESS_KEY")?,
            session_token: env.optional("AWS_SESSION_TOKEN"),
            region: env.required("AWS_REGION")?,
        })
    }
}
