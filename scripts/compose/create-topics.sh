#!/bin/sh
#
# scripts/compose/create-topics.sh — the kafka-init service of docker-compose.yml: creates
# Herald's topics on the compose Kafka, each once (--if-not-exists: a topic that exists is left as
# it is).
#
# Environment: KAFKA_BOOTSTRAP (default kafka:19092), KAFKA_TOPIC_SUFFIX (appended to every name,
# as for the functions; default none), KAFKA_TOPICS_CMD (default the image's kafka-topics.sh;
# scripts/test.d/20-compose runs this script against the test broker with its own).
#
# The lines between BEGIN and END are generated from the topic table,
# shared::protocol::topics::TOPICS. `cargo test -p shared --test compose` fails when they differ
# from it; `HERALD_BLESS=1 cargo test -p shared --test compose` rewrites them.
set -eu
bootstrap="${KAFKA_BOOTSTRAP:-kafka:19092}"
suffix="${KAFKA_TOPIC_SUFFIX:-}"
kafka_topics="${KAFKA_TOPICS_CMD:-/opt/kafka/bin/kafka-topics.sh}"

# topic NAME PARTITIONS RETENTION_MS
topic() {
    "$kafka_topics" --bootstrap-server "$bootstrap" --create --if-not-exists \
        --topic "$1$suffix" --partitions "$2" --replication-factor 1 --config "retention.ms=$3"
}

# BEGIN topics, generated from shared::protocol::topics::TOPICS
topic notification-events 5 604800000  # key: userId
topic notification-delivery 3 259200000  # key: notificationId
topic notification-analytics 2 2592000000  # key: userId
topic push-notifications 3 86400000  # key: userId
topic broadcast-chunks 4 86400000  # key: broadcastId:chunk
# END topics
