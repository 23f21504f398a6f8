//! The Kafka topic table (`DESIGN.md` §3), defined exactly once. Topic creation (devstack, tests,
//! the compose init service) and `template.yaml` take names, partitions and retention from here.

/// One of Herald's Kafka topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Inbox changes, keyed by userId so one user's changes stay in order. api/ws/outbox-relay → delivery.
    NotificationEvents,
    /// Delivery outcomes, keyed by notificationId. delivery/push → analytics.
    NotificationDelivery,
    /// Engagement (read/seen/click), keyed by userId. api/ws → analytics.
    NotificationAnalytics,
    /// Off-app sends (PUSH/EMAIL/SMS) and the changes that move a user's unread count (for the
    /// phones' badge), keyed by userId. delivery → push.
    PushNotifications,
    /// A broadcast's fan-out chunks ([`super::BroadcastChunk`]), keyed by `<broadcastId>:<chunk>` so
    /// a broadcast's chunks spread over the partitions. api (and scheduler, for a scheduled
    /// broadcast) → broadcast.
    BroadcastChunks,
}

/// A topic's fixed properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    pub topic: Topic,
    pub name: &'static str,
    pub partitions: i32,
    pub retention_ms: i64,
    /// What the record key is.
    pub key: &'static str,
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The table. Order is stable; tools that print it keep this order.
pub const TOPICS: [TopicSpec; 5] = [
    TopicSpec {
        topic: Topic::NotificationEvents,
        name: "notification-events",
        partitions: 5,
        retention_ms: 7 * DAY_MS,
        key: "userId",
    },
    TopicSpec {
        topic: Topic::NotificationDelivery,
        name: "notification-delivery",
        partitions: 3,
        retention_ms: 3 * DAY_MS,
        key: "notificationId",
    },
    TopicSpec {
        topic: Topic::NotificationAnalytics,
        name: "notification-analytics",
        partitions: 2,
        retention_ms: 30 * DAY_MS,
        key: "userId",
    },
    TopicSpec {
        topic: Topic::PushNotifications,
        name: "push-notifications",
        partitions: 3,
        retention_ms: DAY_MS,
        key: "userId",
    },
    TopicSpec {
        topic: Topic::BroadcastChunks,
        name: "broadcast-chunks",
        partitions: 4,
        retention_ms: DAY_MS,
        key: "broadcastId:chunk",
    },
];

impl Topic {
    pub fn spec(self) -> &'static TopicSpec {
        match self {
            Topic::NotificationEvents => &TOPICS[0],
            Topic::NotificationDelivery => &TOPICS[1],
            Topic::NotificationAnalytics => &TOPICS[2],
            Topic::PushNotifications => &TOPICS[3],
            Topic::BroadcastChunks => &TOPICS[4],
        }
    }

    /// The topic's base name (without any test suffix).
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The topic's name with a deployment suffix (empty in production; unique per test run so
    /// parallel tests never share a topic).
    pub fn name_with(self, suffix: &str) -> String {
        format!("{}{}", self.name(), suffix)
    }

    /// Looks a topic up by its full name, given the suffix in force.
    pub fn from_name(name: &str, suffix: &str) -> Option<Topic> {
        let base = name.strip_suffix(suffix)?;
        TOPICS.iter().find(|s| s.name == base).map(|s| s.topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_matches_the_seed() {
        let rows: Vec<_> = TOPICS
            .iter()
            .map(|s| (s.name, s.partitions, s.retention_ms / HOUR_MS))
            .collect();
        assert_eq!(
            rows,
            [
                ("notification-events", 5, 168),
                ("notification-delivery", 3, 72),
                ("notification-analytics", 2, 720),
                ("push-notifications", 3, 24),
                ("broadcast-chunks", 4, 24)
            ]
        );
        for s in TOPICS {
            assert_eq!(s.topic.spec().name, s.name);
            assert_eq!(
                Topic::from_name(&s.topic.name_with(".t1"), ".t1"),
                Some(s.topic)
            );
        }
    }
}
