//! What crosses process boundaries: the Kafka topic table, the event envelope, the delivery
//! outcome event, a broadcast's chunk record and the WebSocket frames. Every producer, consumer, client, topic-creation step and deploy artefact takes these
//! from here.

pub mod broadcast;
pub mod envelope;
pub mod frames;
pub mod outcome;
pub mod topics;

pub use broadcast::BroadcastChunk;
pub use envelope::{Envelope, Event, ENVELOPE_VERSION, IDEMPOTENCY_KEY_HEADER};
pub use frames::{Action, Frame, FRAME_MAX_BYTES};
pub use outcome::DeliveryOutcome;
pub use topics::{Topic, TopicSpec};
