//! What running unchanged on Redis Cluster rests on (`DESIGN.md` §4): every key of one user lives
//! in the user's hash slot, so each per-user script runs on one node, atomically; and TLS and AUTH
//! come from `REDIS_URL` in both connection modes.
//!
//! These run in every tier. On a single Redis they check what the cluster client would route; the
//! cluster tier of `scripts/test` (`REDIS_CLUSTER=true`, three masters, a password, TLS ports)
//! checks the same against the servers themselves.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::join_all;
use herald_tests::{new_notification, TestEnv};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::Value;
use shared::config::RedisSettings;
use shared::model::{FlagsPatch, Preferences};
use shared::store::inbox::IdempotencyClaim;
use shared::store::{
    CreateOutcome, InboxStore, ListQuery, NewNotification, RedisConn, UpdateOutcome,
};

fn note(user: &str, i: usize) -> NewNotification {
    NewNotification {
        kind: if i.is_multiple_of(2) { "even" } else { "odd" }.to_owned(),
        title: format!("n{i}"),
        ..new_notification(user)
    }
}

async fn create(
    store: &InboxStore,
    user: &str,
    i: usize,
    claim: Option<&IdempotencyClaim>,
) -> String {
    match store.create("svc", note(user, i), claim).await {
        Ok(CreateOutcome::Created { notification, .. }) => notification.id,
        other => panic!("create {user}/{i}: {other:?}"),
    }
}

async fn query<T: redis::FromRedisValue>(conn: &RedisConn, cmd: &redis::Cmd) -> T {
    cmd.query_async(&mut conn.clone())
        .await
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// A command sent to the master that serves `slot` (cluster only).
async fn on_slot_owner(conn: &RedisConn, slot: u16, cmd: redis::Cmd) -> Value {
    let RedisConn::Cluster(cluster) = conn else {
        panic!("not a cluster connection")
    };
    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
        slot,
        SlotAddr::Master,
    )));
    cluster
        .clone()
        .route_command(cmd, routing)
        .await
        .unwrap_or_else(|e| panic!("routed to slot {slot}: {e}"))
}

fn strings(v: Value) -> BTreeSet<String> {
    redis::from_redis_value(v).unwrap_or_else(|e| panic!("expected strings: {e}"))
}

#[tokio::test]
async fn every_key_of_a_user_lives_in_the_users_slot_on_one_node() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let store = env.store(TestEnv::unlimited());
    let users: Vec<String> = (0..12).map(|i| format!("slot-user-{i}")).collect();
    let user = &users[0];

    // Write every kind of per-user key: inbox, change log, unpublished marks, idempotency
    // record, preferences, recipient rate limit.
    let claim = IdempotencyClaim {
        key: "order-1".into(),
        body_hash: "h1".into(),
    };
    let id = create(&store, user, 0, Some(&claim)).await;
    create(&store, user, 1, None).await;
    let read = FlagsPatch {
        read: Some(true),
        ..FlagsPatch::default()
    };
    assert!(matches!(
        store.update(user, &id, read).await,
        Ok(UpdateOutcome::Updated { .. })
    ));
    store
        .set_preferences(user, &Preferences::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let limit = store.settings().per_recipient;
    let marked = store
        .mark_for_create(note(user, 2))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    match store.create_within(marked, "svc", None, Some(limit)).await {
        Ok(CreateOutcome::Created { .. }) => {}
        other => panic!("create within the recipient limit: {other:?}"),
    }
    for other in &users[1..] {
        create(&store, other, 0, None).await;
    }

    let tag = format!("{{u:{user}}}");
    let mine: BTreeSet<String> = env
        .keys()
        .await
        .into_iter()
        .filter(|k| k.contains(&tag))
        .collect();
    let expected = [
        "meta", "docs", "flags", "all", "unread", "log", "unpub", "prefs", "rate",
    ];
    for suffix in expected {
        assert!(
            mine.iter().any(|k| k.ends_with(&format!(":{suffix}"))),
            "no :{suffix} in {mine:?}"
        );
    }
    assert!(mine.iter().any(|k| k.contains(":idem:")), "{mine:?}");

    // As the cluster client routes them: one slot for the user, several across users.
    let slots: BTreeSet<_> = mine
        .iter()
        .map(Slot::for_key)
        .map(|s| format!("{s:?}"))
        .collect();
    assert_eq!(slots.len(), 1, "{mine:?} routes to {slots:?}");
    let user_slots: BTreeSet<_> = users
        .iter()
        .map(|u| format!("{:?}", Slot::for_key(env.keys.user(u).meta())))
        .collect();
    assert!(user_slots.len() > 1, "12 users in one slot: {user_slots:?}");

    if !env.redis.cluster {
        return;
    }
    // As the servers see them: one slot, and that slot's master holds every one of the user's keys.
    let mut server_slots = BTreeSet::new();
    for key in &mine {
        let slot: u16 = query(&env.conn, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key)).await;
        server_slots.insert(slot);
    }
    let [slot] = server_slots.iter().copied().collect::<Vec<_>>()[..] else {
        panic!("{mine:?} are in slots {server_slots:?}")
    };
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("GETKEYSINSLOT").arg(slot).arg(10_000);
    let held: BTreeSet<String> = strings(on_slot_owner(&env.conn, slot, cmd).await)
        .into_iter()
        .filter(|k| k.starts_with(&env.redis.key_prefix))
        .collect();
    assert_eq!(
        held, mine,
        "the master of slot {slot} holds exactly the user's keys"
    );

    // And the users really are spread over the masters, so the tier exercises all of them.
    let mut nodes = BTreeMap::new();
    for u in &users {
        let slot: u16 = query(
            &env.conn,
            redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(env.keys.user(u).meta()),
        )
        .await;
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("MYID");
        let node: String = redis::from_redis_value(on_slot_owner(&env.conn, slot, cmd).await)
            .unwrap_or_else(|e| panic!("{e}"));
        nodes.entry(node).or_insert_with(Vec::new).push(u.clone());
    }
    assert!(nodes.len() > 1, "every user on one master: {nodes:?}");
}

#[tokio::test]
async fn concurrent_writers_on_separate_connections_keep_one_users_counts_exact() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 50;
    const CREATES: u64 = (WRITERS * PER_WRITER) as u64;
    let user = "busy";
    // One connection per writer, as separate Lambda instances would have.
    let mut stores = Vec::new();
    for _ in 0..WRITERS {
        let conn = RedisConn::connect(&env.redis)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        stores.push(InboxStore::new(
            conn,
            env.keys.clone(),
            TestEnv::unlimited(),
        ));
    }
    let stores = &stores;

    // Phase 1: concurrent creates, read concurrently. Only creates happen, so any consistent
    // snapshot has total == unread == unseen == version; a torn write would break that.
    let snapshots = || async move {
        let mut seen = Vec::new();
        for _ in 0..40 {
            let c = stores[0]
                .counts(user)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            seen.push(c);
            tokio::task::yield_now().await;
        }
        seen
    };
    let writers = join_all((0..WRITERS).map(|w| async move {
        let mut ids = Vec::new();
        for i in 0..PER_WRITER {
            ids.push(create(&stores[w], user, w * PER_WRITER + i, None).await);
        }
        ids
    }));
    let (ids, seen) = tokio::join!(writers, snapshots());
    let ids: Vec<String> = ids.into_iter().flatten().collect();
    for c in &seen {
        assert!(
            c.total == c.version && c.unread == c.version && c.unseen == c.version,
            "torn: {c:?}"
        );
    }
    let c = stores[1]
        .counts(user)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (c.total, c.unread, c.unseen, c.version),
        (CREATES, CREATES, CREATES, CREATES)
    );
    assert_eq!(c.by_type.values().sum::<u64>(), CREATES);

    // Phase 2: every writer marks every even-numbered notification read at once. Each one
    // changes once (the others find it unchanged), and every snapshot has
    // unread + version == 2 × creates, since each change takes one unread and adds one seq.
    let to_read: Vec<&String> = ids.iter().step_by(2).collect();
    let marks = join_all((0..WRITERS).map(|w| {
        let to_read = &to_read;
        async move {
            let mut changed = 0u64;
            for id in to_read.iter() {
                let patch = FlagsPatch {
                    read: Some(true),
                    ..FlagsPatch::default()
                };
                match stores[w].update(user, id, patch).await {
                    Ok(UpdateOutcome::Updated { .. }) => changed += 1,
                    Ok(UpdateOutcome::Unchanged(_)) => {}
                    other => panic!("mark {id}: {other:?}"),
                }
            }
            changed
        }
    }));
    let (changed, seen) = tokio::join!(marks, snapshots());
    let changed: u64 = changed.into_iter().sum();
    assert_eq!(
        changed,
        to_read.len() as u64,
        "each notification changed exactly once"
    );
    for c in &seen {
        assert_eq!(c.unread + c.version, 2 * CREATES, "torn: {c:?}");
    }
    let c = stores[2]
        .counts(user)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let reads = to_read.len() as u64;
    assert_eq!(
        (c.total, c.unread, c.version),
        (CREATES, CREATES - reads, CREATES + reads)
    );

    // Every seq was assigned once: the change log holds 1..=version, each once, and all of them
    // are still unpublished (nothing was sent to Kafka here).
    let (_, pending) = stores[3]
        .pending(user, 1_000)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let seqs: Vec<u64> = pending.iter().map(|p| p.seq()).collect();
    assert_eq!(seqs, (1..=c.version).collect::<Vec<_>>());

    // And the inbox itself agrees with the counts.
    let page = stores[0]
        .list(
            user,
            &ListQuery {
                limit: 1_000,
                archived: None,
                ..ListQuery::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.items.len() as u64, c.total);
    assert_eq!(
        page.items.iter().filter(|n| !n.read).count() as u64,
        c.unread
    );
}

/// `REDIS_URL`, and `HERALD_REDIS_TLS_URL` when set: the same servers over TLS (the cluster tier
/// sets it; devstack's function processes cannot be given its test CA, so the rest of the suite
/// uses the plain ports).
#[tokio::test]
async fn both_connection_modes_take_tls_and_the_password_from_the_url() {
    let Some(env) = TestEnv::new().await else {
        return;
    };
    let mut urls = vec![env.redis.url.clone()];
    match std::env::var("HERALD_REDIS_TLS_URL") {
        Ok(tls) => urls.push(tls),
        Err(_) => eprintln!("HERALD_REDIS_TLS_URL is not set: TLS is not exercised here"),
    }
    for url in urls {
        let all = RedisSettings {
            url,
            ..env.redis.clone()
        };
        // The first node alone, in single mode (a cluster node answers PING like any Redis); on a
        // cluster also all of them, in cluster mode.
        let single = RedisSettings {
            url: all.nodes()[0].to_owned(),
            cluster: false,
            ..all.clone()
        };
        let modes = if all.cluster {
            vec![single, all]
        } else {
            vec![single]
        };
        for settings in modes {
            let info = redis::IntoConnectionInfo::into_connection_info(settings.nodes()[0])
                .unwrap_or_else(|e| panic!("{e}"));
            let conn = RedisConn::connect(&settings)
                .await
                .unwrap_or_else(|e| panic!("{settings:?}: {e}"));
            let pong: String = query(&conn, &redis::cmd("PING")).await;
            assert_eq!(pong, "PONG", "{settings:?}");
            if settings.cluster {
                // Every master, reached through the nodes the client discovered: each user's
                // key goes to its own slot's master.
                for i in 0..12 {
                    let key = format!("{}{{u:tls-{i}}}:probe", env.redis.key_prefix);
                    let _: () =
                        query(&conn, redis::cmd("SET").arg(&key).arg(i).arg("EX").arg(60)).await;
                    let back: usize = query(&conn, redis::cmd("GET").arg(&key)).await;
                    assert_eq!(back, i, "{settings:?}");
                }
            }
            if info.redis_settings().password().is_some() {
                // The password is really sent: a wrong one is refused.
                let wrong = RedisSettings {
                    url: settings.redacted_url().replace("***", "wrong-password"),
                    ..settings.clone()
                };
                assert!(
                    RedisConn::connect(&wrong).await.is_err(),
                    "{wrong:?} was accepted"
                );
            }
            let tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
            eprintln!(
                "{} mode, {}: {settings:?}",
                if settings.cluster {
                    "cluster"
                } else {
                    "single"
                },
                if tls { "TLS" } else { "plain TCP" }
            );
        }
    }
}
