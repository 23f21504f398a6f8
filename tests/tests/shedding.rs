//! Redis never fills up: once `used_memory` reaches `REDIS_SHED_MEMORY_PERCENT` of `maxmemory`,
//! creates answer 503 problem+json with `Retry-After` and write nothing, other mutations still
//! work, and creates succeed again once memory is freed. On a Redis server of this test's own (the
//! shared test Redis must not be filled), started with `scripts/services/redis`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use api::shedding::MemoryGate;
use herald_tests::{Call, Reply, TestEnv};
use serde_json::json;
use shared::config::{RedisSettings, SheddingSettings};
use shared::store::{KeySpace, RedisConn};

/// A private redis-server, stopped when dropped.
struct PrivateRedis {
    dir: PathBuf,
    url: String,
}

const SERVICE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/services/redis");

impl PrivateRedis {
    /// Starts one, or says why not (then the test skips, or fails under HERALD_REQUIRE_SERVICES).
    fn start() -> Option<PrivateRedis> {
        let dir =
            std::env::temp_dir().join(format!("herald-shedding-{}", uuid::Uuid::new_v4().simple()));
        match Command::new(SERVICE).arg("start").arg(&dir).output() {
            Ok(out) if out.status.success() => Some(PrivateRedis {
                url: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
                dir,
            }),
            Ok(out) => {
                herald_tests::skip(&format!(
                    "scripts/services/redis could not start a private Redis: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
                None
            }
            Err(e) => {
                herald_tests::skip(&format!("scripts/services/redis: {e}"));
                None
            }
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = Command::new(SERVICE).arg("stop").arg(&self.dir).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn note(user: &str) -> serde_json::Value {
    json!({"userId": user, "type": "comment", "title": "t", "body": ""})
}

async fn keys(conn: &RedisConn) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn.clone())
        .await
        .unwrap_or_else(|e| panic!("KEYS: {e}"));
    keys.sort();
    keys
}

/// Sends the create until it answers `status`: the gate reads memory at most once a second, so
/// the first answers after a change may still follow the previous reading. Bounded by a count of
/// attempts, not by a clock.
async fn create_until(deps: &api::Deps, status: u16) -> Reply {
    for _ in 0..200 {
        let r = Call::post("/v1/notifications")
            .service("svc")
            .json(&note("erin"))
            .send(deps)
            .await;
        if r.status == status {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("creates never answered {status}");
}

#[tokio::test]
async fn creates_are_shed_with_503_while_redis_is_nearly_full_and_resume_when_memory_is_freed() {
    // TestEnv for the Kafka side (and to skip without services, as every test does).
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let Some(server) = PrivateRedis::start() else {
        return;
    };
    let settings = RedisSettings {
        url: server.url.clone(),
        cluster: false,
        key_prefix: String::new(),
    };
    let conn = RedisConn::connect(&settings)
        .await
        .unwrap_or_else(|e| panic!("private Redis at {}: {e}", server.url));
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(16 * 1024 * 1024)
        .query_async(&mut conn.clone())
        .await
        .unwrap_or_else(|e| panic!("CONFIG SET maxmemory: {e}"));
    let mut deps = api::Deps::new(
        conn.clone(),
        KeySpace::new(String::new()),
        TestEnv::unlimited(),
        env.bus(),
    );
    // Shed at half of maxmemory: an empty server uses about 1 MB, the filler below 10 MB.
    deps.memory = MemoryGate::new(conn.clone(), SheddingSettings { memory_percent: 50 });

    let first = create_until(&deps, 201).await;
    let id = first.body["id"].as_str().unwrap_or_default().to_owned();

    let _: i64 = redis::cmd("SETRANGE")
        .arg("filler")
        .arg(10 * 1024 * 1024 - 1)
        .arg("x")
        .query_async(&mut conn.clone())
        .await
        .unwrap_or_else(|e| panic!("SETRANGE: {e}"));
    let _ = create_until(&deps, 503).await;

    let before = keys(&conn).await;
    let shed = Call::post("/v1/notifications")
        .service("svc")
        .json(&note("erin"))
        .send(&deps)
        .await;
    assert_eq!(shed.status, 503, "{}", shed.body);
    assert_eq!(shed.content_type(), "application/problem+json");
    assert_eq!(
        shed.body["type"].as_str(),
        Some("https://herald.dev/problems/unavailable")
    );
    assert!(
        shed.header("retry-after")
            .is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s > 0)),
        "{:?}",
        shed.headers
    );
    let batch = Call::post("/v1/notifications/batch")
        .service("svc")
        .json(&json!({"userIds": ["erin", "fred"], "type": "comment", "title": "t", "body": ""}))
        .send(&deps)
        .await;
    assert_eq!(batch.status, 503, "{}", batch.body);
    assert_eq!(keys(&conn).await, before, "a shed create writes nothing");

    // Mutations that do not add notifications still run.
    let read = Call::patch(&format!("/v1/notifications/{id}"))
        .user("erin")
        .json(&json!({"read": true}))
        .send(&deps)
        .await;
    assert_eq!(read.status, 200, "{}", read.body);
    let deleted = Call::delete(&format!("/v1/notifications/{id}"))
        .user("erin")
        .send(&deps)
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);

    let _: i64 = redis::cmd("DEL")
        .arg("filler")
        .query_async(&mut conn.clone())
        .await
        .unwrap_or_else(|e| panic!("DEL: {e}"));
    let resumed = create_until(&deps, 201).await;
    let id = resumed.body["id"].as_str().unwrap_or_default();
    let stored = Call::get(&format!("/v1/notifications/{id}"))
        .user("erin")
        .send(&deps)
        .await;
    assert_eq!(stored.status, 200, "{}", stored.body);
}
