//! devstack's own settings, read in one place: command-line flags first, then `DEVSTACK_*`
//! variables, then defaults ([`Settings`]); and the services it uses instead of launching its own
//! (`REDIS_URL`, `KAFKA_BROKERS`: [`ExternalServices`]). Every server binds to a loopback address;
//! anything else is refused.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A flag or variable devstack cannot use. The message names it.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{name}={value:?} is invalid: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
    #[error("{0} needs a value")]
    MissingValue(String),
    #[error("unknown argument {0:?} (see `devstack --help`)")]
    Unknown(String),
}

/// Everything `devstack serve` needs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub template: PathBuf,
    /// Keys, Redis data and logs: `.herald/` by default.
    pub data_dir: PathBuf,
    /// Where the function binaries are (`cargo build --profile local` puts them in `<target>/local`).
    pub bin_dir: PathBuf,
    pub http_addr: SocketAddr,
    pub ws_addr: SocketAddr,
    pub invoke_addr: SocketAddr,
    /// The WebSocket stage: `ws://<ws_addr>/<stage>`, `@connections` under `/<stage>/@connections`.
    pub ws_stage: String,
    /// `--param Name=value`: template parameter overrides.
    pub parameters: BTreeMap<String, String>,
    /// Most concurrent instances of one function.
    pub max_instances: usize,
    pub ws_idle_timeout: Duration,
    pub ws_max_lifetime: Duration,
    /// Overrides every Kafka mapping's MaximumBatchingWindowInSeconds (benchmarks).
    pub batch_window: Option<Duration>,
    /// Audience of the tokens devstack issues (and of its JWT authorizer).
    pub audience: String,
    pub region: String,
    /// The demo page's folder, served at `/` on the HTTP port (relative to the current folder).
    pub web_dir: PathBuf,
}

pub const USAGE: &str = "\
devstack: Herald's AWS on one machine (Lambda, API Gateway HTTP + WebSocket, Kafka, Redis)

USAGE:
  devstack [serve] [OPTIONS]      run everything the template wires
  devstack token --user ID [--scope S]... [--tenant T] [--ttl SECONDS] [--data-dir DIR] [--issuer URL]
                                  print a development token signed with devstack's key
  devstack functions [--template PATH]
                                  print the binary name of every function in the template

OPTIONS (and the variables that set them):
  --template PATH        DEVSTACK_TEMPLATE       template.yaml
  --data-dir DIR         DEVSTACK_DATA_DIR       .herald
  --bin-dir DIR          DEVSTACK_BIN_DIR        $CARGO_TARGET_DIR/local, else target/local
  --http-addr ADDR       DEVSTACK_HTTP_ADDR      127.0.0.1:3000
  --ws-addr ADDR         DEVSTACK_WS_ADDR        127.0.0.1:3001
  --invoke-addr ADDR     DEVSTACK_INVOKE_ADDR    127.0.0.1:9000
  --ws-stage NAME        DEVSTACK_WS_STAGE       local
  --param NAME=VALUE     (repeatable)            template parameter override
  --max-instances N      DEVSTACK_MAX_INSTANCES  4 per function
  --ws-idle-timeout S    DEVSTACK_WS_IDLE_TIMEOUT_SECS  600
  --ws-max-lifetime S    DEVSTACK_WS_MAX_LIFETIME_SECS  7200
  --web-dir DIR          DEVSTACK_WEB_DIR        web (the demo page, served at / on the HTTP port)
                         DEVSTACK_BATCH_WINDOW_MS  override every Kafka batching window
  REDIS_URL / KAFKA_BROKERS: use these instead of launching redis-server / the embedded broker.
";

impl Default for Settings {
    fn default() -> Self {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("target"));
        Settings {
            template: PathBuf::from("template.yaml"),
            data_dir: PathBuf::from(".herald"),
            bin_dir: target.join("local"),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
            ws_addr: SocketAddr::from(([127, 0, 0, 1], 3001)),
            invoke_addr: SocketAddr::from(([127, 0, 0, 1], 9000)),
            ws_stage: "local".into(),
            parameters: BTreeMap::new(),
            max_instances: 4,
            ws_idle_timeout: Duration::from_secs(600),
            ws_max_lifetime: Duration::from_secs(7200),
            batch_window: None,
            audience: "herald".into(),
            region: "us-east-1".into(),
            web_dir: PathBuf::from("web"),
        }
    }
}

/// The services devstack uses instead of launching its own, from its own environment: `REDIS_URL`
/// (else a `redis-server` in the data folder) and `KAFKA_BROKERS` (else the embedded broker). An
/// empty value counts as unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExternalServices {
    pub redis_url: Option<String>,
    pub kafka_brokers: Option<String>,
}

impl ExternalServices {
    pub fn from_env(env: &BTreeMap<String, String>) -> ExternalServices {
        let set = |name: &str| env.get(name).filter(|v| !v.is_empty()).cloned();
        ExternalServices {
            redis_url: set("REDIS_URL"),
            kafka_brokers: set("KAFKA_BROKERS"),
        }
    }
}

fn invalid(name: &str, value: &str, reason: &str) -> SettingsError {
    SettingsError::Invalid {
        name: name.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

fn addr(name: &str, value: &str) -> Result<SocketAddr, SettingsError> {
    let a: SocketAddr = value
        .parse()
        .map_err(|_| invalid(name, value, "expected 127.0.0.1:PORT"))?;
    if !a.ip().is_loopback() {
        return Err(invalid(
            name,
            value,
            "devstack binds to loopback addresses only",
        ));
    }
    Ok(a)
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, SettingsError> {
    value
        .parse()
        .map_err(|_| invalid(name, value, "expected a number"))
}

fn seconds(name: &str, value: &str) -> Result<Duration, SettingsError> {
    Duration::try_from_secs_f64(number(name, value)?)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| invalid(name, value, "expected a positive number of seconds"))
}

impl Settings {
    /// Applies `DEVSTACK_*` variables from `env`, then the flags in `args`.
    pub fn from_args_and_env(
        args: &[String],
        env: &BTreeMap<String, String>,
    ) -> Result<Settings, SettingsError> {
        let mut s = Settings::default();
        for (var, flag) in [
            ("DEVSTACK_TEMPLATE", "--template"),
            ("DEVSTACK_DATA_DIR", "--data-dir"),
            ("DEVSTACK_BIN_DIR", "--bin-dir"),
            ("DEVSTACK_HTTP_ADDR", "--http-addr"),
            ("DEVSTACK_WS_ADDR", "--ws-addr"),
            ("DEVSTACK_INVOKE_ADDR", "--invoke-addr"),
            ("DEVSTACK_WS_STAGE", "--ws-stage"),
            ("DEVSTACK_MAX_INSTANCES", "--max-instances"),
            ("DEVSTACK_WS_IDLE_TIMEOUT_SECS", "--ws-idle-timeout"),
            ("DEVSTACK_WS_MAX_LIFETIME_SECS", "--ws-max-lifetime"),
            ("DEVSTACK_WEB_DIR", "--web-dir"),
        ] {
            if let Some(v) = env.get(var).filter(|v| !v.is_empty()) {
                s.apply(flag, var, v)?;
            }
        }
        if let Some(v) = env
            .get("DEVSTACK_BATCH_WINDOW_MS")
            .filter(|v| !v.is_empty())
        {
            s.batch_window = Some(Duration::from_millis(number(
                "DEVSTACK_BATCH_WINDOW_MS",
                v,
            )?));
        }
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") && f != "--param" => {
                    (f.to_owned(), Some(v.to_owned()))
                }
                _ => (arg.clone(), None),
            };
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| SettingsError::MissingValue(flag.clone()))?,
            };
            s.apply(&flag, &flag, &value)?;
        }
        Ok(s)
    }

    fn apply(&mut self, flag: &str, name: &str, v: &str) -> Result<(), SettingsError> {
        match flag {
            "--template" => self.template = PathBuf::from(v),
            "--data-dir" => self.data_dir = PathBuf::from(v),
            "--bin-dir" => self.bin_dir = PathBuf::from(v),
            "--http-addr" => self.http_addr = addr(name, v)?,
            "--ws-addr" => self.ws_addr = addr(name, v)?,
            "--invoke-addr" => self.invoke_addr = addr(name, v)?,
            "--ws-stage" => {
                if v.is_empty()
                    || !v
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(invalid(name, v, "a stage name is letters, digits, - and _"));
                }
                self.ws_stage = v.to_owned();
            }
            "--param" => {
                let (k, val) = v
                    .split_once('=')
                    .ok_or_else(|| invalid(name, v, "expected NAME=VALUE"))?;
                self.parameters.insert(k.to_owned(), val.to_owned());
            }
            "--max-instances" => self.max_instances = number::<usize>(name, v)?.max(1),
            "--ws-idle-timeout" => self.ws_idle_timeout = seconds(name, v)?,
            "--ws-max-lifetime" => self.ws_max_lifetime = seconds(name, v)?,
            "--web-dir" => self.web_dir = PathBuf::from(v),
            other => return Err(SettingsError::Unknown(other.to_owned())),
        }
        Ok(())
    }
}
