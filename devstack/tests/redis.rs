//! The Redis launcher: a real `redis-server` with AOF in the data folder, stopped cleanly.

use std::time::Duration;

use devstack::redis::{RedisError, RedisService};

#[tokio::test]
async fn launches_redis_with_aof_in_the_data_folder() -> Result<(), RedisError> {
    let has_server = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok();
    if !has_server {
        if std::env::var("HERALD_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("redis-server is required (HERALD_REQUIRE_SERVICES=1) but not installed");
        }
        println!("SKIPPED: redis-server is not installed (run scripts/install-deps)");
        return Ok(());
    }
    let dir =
        std::env::temp_dir().join(format!("devstack-redis-{}", uuid::Uuid::new_v4().simple()));
    let redis = tokio::time::timeout(Duration::from_secs(30), RedisService::start(&dir, None))
        .await
        .unwrap_or_else(|_| panic!("redis did not start in 30 s"))?;
    let url = redis.url().to_owned();
    assert!(url.starts_with("redis://127.0.0.1:"), "{url}");
    let client = ::redis::Client::open(url.as_str()).unwrap_or_else(|e| panic!("{e}"));
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let aof: Vec<String> = ::redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    assert_eq!(aof.get(1).map(String::as_str), Some("yes"));
    let policy: Vec<String> = ::redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    assert_eq!(policy.get(1).map(String::as_str), Some("noeviction"));
    redis.stop().await;
    assert!(dir.join("redis").exists());
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

#[tokio::test]
async fn an_external_redis_url_is_used_as_is() -> Result<(), RedisError> {
    let redis = RedisService::start(
        std::path::Path::new("/nonexistent"),
        Some("redis://example:6379".into()),
    )
    .await?;
    assert_eq!(redis.url(), "redis://example:6379");
    Ok(())
}
