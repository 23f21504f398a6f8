//! What crosses process boundaries: the Kafka topic table and the event envelope. Every producer,
//! consumer, topic-creation step and deploy artefact takes these from here.

pub mod envelope;
pub mod topics;

pub use envelope::{Envelope, Event, ENVELOPE_VERSION, IDEMPOTENCY_KEY_HEADER};
pub use topics::{Topic, TopicSpec};
