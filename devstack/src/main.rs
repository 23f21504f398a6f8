//! `devstack`: parse the command line, then serve (until Ctrl-C), print a token
//! ([`devstack::token`]), or list the template's functions. Everything else lives in the library.

use devstack::config::{Settings, USAGE};
use devstack::token::TokenCommand;
use std::collections::BTreeMap;

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

/// `devstack token --user ID [--scope S]... [--tenant T] [--ttl SECONDS] [--data-dir DIR]
/// [--issuer URL]` ([`TokenCommand`]): the token alone on stdout, what it is on stderr.
fn token(args: &[String], env: &BTreeMap<String, String>) -> anyhow::Result<()> {
    let (token, summary) = TokenCommand::parse(args, env)?.mint()?;
    eprintln!("{summary}");
    println!("{token}");
    Ok(())
}
