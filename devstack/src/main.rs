//! `devstack`: parse the command line, then serve (until Ctrl-C), print a token, or list the
//! template's functions. Everything else lives in the library.

use std::collections::BTreeMap;
use std::time::Duration;

use devstack::config::{Settings, USAGE};
use devstack::jwt::Issuer;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let (command, rest) = match args.first().map(String::as_str) {
        Some("serve") => ("serve", &args[1..]),
        Some("token") => ("token", &args[1..]),
        Some("functions") => ("functions", &args[1..]),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            return Ok(());
        }
        _ => ("serve", &args[..]),
    };
    match command {
        "token" => token(rest, &env),
        "functions" => {
            let settings = Settings::from_args_and_env(rest, &env)?;
            let stack = devstack::stack::read_template(
                &settings,
                "http://127.0.0.1:3000",
                "ws://127.0.0.1:3001",
            )?;
            for f in &stack.functions {
                println!("{}", f.binary);
            }
            Ok(())
        }
        _ => serve(rest, env).await,
    }
}

async fn serve(args: &[String], env: BTreeMap<String, String>) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DEVSTACK_LOG")
                .unwrap_or_else(|_| "info,rdkafka=warn".into()),
        )
        .with_target(false)
        .init();
    let settings = Settings::from_args_and_env(args, &env)?;
    let running = devstack::stack::start(settings, env).await?;
    println!("devstack is up\n{}", running.summary());
    tokio::signal::ctrl_c().await?;
    println!("stopping devstack");
    running.shutdown().await;
    Ok(())
}

/// `devstack token --user ID [--scope S]... [--ttl SECONDS] [--data-dir DIR] [--issuer URL]`.
fn token(args: &[String], env: &BTreeMap<String, String>) -> anyhow::Result<()> {
    let (mut user, mut scopes, mut ttl) = (None, Vec::new(), 3600u64);
    let mut data_dir = env
        .get("DEVSTACK_DATA_DIR")
        .cloned()
        .unwrap_or_else(|| ".herald".into());
    let mut issuer = format!(
        "http://{}",
        env.get("DEVSTACK_HTTP_ADDR")
            .cloned()
            .unwrap_or_else(|| "127.0.0.1:3000".into())
    );
    let mut audience = "herald".to_owned();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--user" | "--sub" => user = Some(value()?),
            "--scope" => scopes.push(value()?),
            "--ttl" => {
                ttl = value()?
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--ttl expects seconds"))?
            }
            "--data-dir" => data_dir = value()?,
            "--issuer" => issuer = value()?,
            "--audience" => audience = value()?,
            other => anyhow::bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let user = user.ok_or_else(|| anyhow::anyhow!("--user is required"))?;
    let issuer = Issuer::load_or_create(std::path::Path::new(&data_dir), &issuer, &audience)?;
    let token = issuer.token(&user, &scopes, Duration::from_secs(ttl))?;
    eprintln!(
        "token for {user} (scopes: {}), valid {ttl}s, issuer {}",
        if scopes.is_empty() {
            "none".into()
        } else {
            scopes.join(" ")
        },
        issuer.issuer
    );
    println!("{token}");
    Ok(())
}
