//! # The notification HTTP API
//!
//! One Lambda function behind API Gateway's HTTP API (payload format 2.0). API Gateway's JWT
//! authorizer verifies the token and checks per-route scopes; this function reads the verified
//! claims ([`shared::auth::Claims`]), checks them again, routes on method and path, and answers
//! JSON, or `application/problem+json` on every error.
//!
//! - [`routes`]: one module per resource (notifications, changes, preferences, analytics, topics
//!   and broadcasts, health);
//! - [`http`]: request parsing and response building shared by the routes;
//! - [`validate`]: turning a create request into a [`shared::store::NewNotification`];
//! - [`openapi`]: the OpenAPI 3.1 document, generated from the route annotations and types;
//! - [`asyncapi`]: the AsyncAPI 3.0 document of the WebSocket API, generated from its frame types.
//!
//! Every committed change is published before the handler returns ([`shared::outbox::Publisher`]);
//! if Kafka does not acknowledge in time the request still succeeds, the change's frame is posted
//! straight to the user's open WebSocket connections (when `CONNECTIONS_URL` is configured), and
//! the outbox relay publishes the change later.

pub mod asyncapi;
pub mod http;
pub mod openapi;
pub mod routes;
pub mod shedding;
pub mod validate;

use lambda_http::{Body, Request, RequestExt, Response};
use shared::auth::Claims;
use shared::config::AnalyticsSettings;
use shared::config::SenderSettings;
use shared::config::SheddingSettings;
use shared::config::TenantClaim;
use shared::config::WebhookSettings;
use shared::config::{Env, InboxSettings, KafkaSettings, RealtimeSettings, RedisSettings};
use shared::error::{ApiError, StartupError};
use shared::outbox::Publisher;
use shared::realtime::{ConnectionsApi, Fanout};
use shared::store::TenantScoped;
use shared::store::TopicStore;
use shared::store::{AnalyticsStore, InboxStore, KeySpace, RateLimiter, RedisConn};
use shared::store::{
    ConnectionRegistry, ContactBook, DeviceBook, Eraser, EscalationBook, PushLedger, WebhookStore,
};
use shared::store::{EngagementStore, ScheduleStore};
use shared::tenant::Tenant;

/// Everything a request needs, built once per cold start.
#[derive(Debug, Clone)]
pub struct Deps {
    pub store: InboxStore,
    pub publisher: Publisher,
    pub limiter: RateLimiter,
    /// Reads the counters and outcome histories the `analytics` function writes.
    pub analytics: AnalyticsStore,
    /// Push subscriptions and contacts, and the one preference a one-click unsubscribe changes.
    pub contacts: ContactBook,
    /// The users' phones and which user holds each token.
    pub devices: DeviceBook,
    /// The escalation steps `push` decides, for a notification's deliveries.
    pub escalations: EscalationBook,
    /// Which push endpoints are acceptable, the VAPID public key, the unsubscribe secret.
    pub channels: SenderSettings,
    /// The webhook registry and each webhook's delivery state.
    pub webhooks: WebhookStore,
    /// Which webhook URLs are acceptable.
    pub webhook_settings: WebhookSettings,
    /// The last Kafka check of `GET /v1/health`, reused for a few seconds.
    pub kafka_check: routes::health::KafkaCheckCache,
    /// Refuses creates while Redis is nearly full.
    pub memory: shedding::MemoryGate,
    /// Erases users (`DELETE /v1/users/{id}`).
    pub eraser: Eraser,
    /// What `push` recorded and scheduled, for a user's export.
    pub ledger: PushLedger,
    /// The users' open connections, for a user's export.
    pub registry: ConnectionRegistry,
    /// `@connections`, to close an erased user's sockets (`None` without `CONNECTIONS_URL`).
    pub sockets: Option<ConnectionsApi>,
    /// Scheduled sends (`sendAt`) and the histograms that choose an optimal moment.
    pub schedules: ScheduleStore,
    pub engagement: EngagementStore,
    /// Topics, their members and broadcasts.
    pub topics: TopicStore,
    /// Which claim names the caller's tenant.
    pub tenant_claim: TenantClaim,
}

impl Deps {
    /// Reads the configuration and connects. Fails, naming the variable, on missing settings.
    pub async fn from_env(env: &Env) -> Result<Self, StartupError> {
        let redis = RedisSettings::from_env(env)?;
        let kafka = KafkaSettings::from_env(env)?;
        let inbox = InboxSettings::from_env(env)?;
        let conn = RedisConn::connect(&redis).await?;
        let keys = KeySpace::new(redis.key_prefix.clone());
        let bus = shared::bus::EventBus::connect(&kafka).await?;
        let mut deps = Self::new(conn.clone(), keys.clone(), inbox, bus);
        deps.channels = SenderSettings::from_env(env)?;
        deps.webhook_settings = WebhookSettings::from_env(env)?;
        deps.tenant_claim = TenantClaim::from_env(env)?;
        deps.memory = shedding::MemoryGate::new(conn.clone(), SheddingSettings::from_env(env)?);
        if RealtimeSettings::from_env(env)?.connections_url.is_some() {
            let fanout = Fanout::from_env(env, conn, keys)?;
            deps.sockets = Some(fanout.api().clone());
            deps.publisher = deps.publisher.with_fallback(fanout);
        } else {
            tracing::warn!(
                "CONNECTIONS_URL is not set: no direct WebSocket delivery when Kafka is down"
            );
        }
        Ok(deps)
    }

    pub fn new(
        conn: RedisConn,
        keys: KeySpace,
        inbox: InboxSettings,
        bus: shared::bus::EventBus,
    ) -> Self {
        let contacts = ContactBook::new(conn.clone(), keys.clone());
        let devices = DeviceBook::new(conn.clone(), keys.clone());
        let escalations = EscalationBook::new(conn.clone(), keys.clone());
        let webhooks = WebhookStore::new(conn.clone(), keys.clone());
        let topics = TopicStore::new(conn.clone(), keys.clone());
        let limiter = RateLimiter::new(conn.clone(), keys.clone(), &inbox);
        let schedules = ScheduleStore::new(conn.clone(), keys.clone());
        let engagement = EngagementStore::new(conn.clone(), keys.clone());
        let store = InboxStore::new(conn.clone(), keys.clone(), inbox);
        let publisher = Publisher::new(bus, store.clone());
        let memory = shedding::MemoryGate::new(conn.clone(), SheddingSettings::default());
        let analytics =
            AnalyticsStore::new(conn.clone(), keys.clone(), AnalyticsSettings::default());
        Deps {
            eraser: Eraser::new(conn.clone(), keys.clone(), analytics.clone()),
            ledger: PushLedger::new(conn.clone(), keys.clone()),
            registry: ConnectionRegistry::new(conn, keys),
            sockets: None,
            store,
            publisher,
            limiter,
            analytics,
            contacts,
            devices,
            escalations,
            channels: SenderSettings::default(),
            webhooks,
            webhook_settings: WebhookSettings::default(),
            kafka_check: routes::health::KafkaCheckCache::default(),
            memory,
            schedules,
            engagement,
            topics,
            tenant_claim: TenantClaim::default(),
        }
    }

    /// The same dependencies acting on `tenant`'s keys: what a request of a caller of `tenant`
    /// runs with, so every route stays inside its caller's tenant by construction (another
    /// tenant's topic, broadcast, user, job or webhook is simply not there: 404). The publisher
    /// needs no scope: it publishes and marks each change in the change's own tenant.
    pub fn for_tenant(&self, tenant: &Tenant) -> Deps {
        Deps {
            store: self.store.for_tenant(tenant),
            limiter: self.limiter.for_tenant(tenant),
            analytics: self.analytics.for_tenant(tenant),
            contacts: self.contacts.for_tenant(tenant),
            devices: self.devices.for_tenant(tenant),
            escalations: self.escalations.for_tenant(tenant),
            webhooks: self.webhooks.for_tenant(tenant),
            eraser: self.eraser.for_tenant(tenant),
            ledger: self.ledger.for_tenant(tenant),
            registry: self.registry.for_tenant(tenant),
            schedules: self.schedules.for_tenant(tenant),
            engagement: self.engagement.for_tenant(tenant),
            topics: self.topics.for_tenant(tenant),
            ..self.clone()
        }
    }
}

/// The Lambda handler: routes the request and turns every error into problem+json.
///
/// The caller's claims are read once here, with the deployment's `TENANT_CLAIM`, and put in the
/// request's extensions ([`http::claims`]); the routes run with [`Deps::for_tenant`] of the
/// caller's tenant.
pub async fn handle(
    deps: &Deps,
    mut req: Request,
) -> Result<Response<Body>, std::convert::Infallible> {
    let claims = Claims::from_request(&req, &deps.tenant_claim);
    let scoped: Option<Deps> = claims
        .as_ref()
        .filter(|c| !c.tenant.is_default())
        .map(|c| deps.for_tenant(&c.tenant));
    let deps = scoped.as_ref().unwrap_or(deps);
    if let Some(claims) = claims {
        req.extensions_mut().insert(claims);
    }
    let response = match routes::route(deps, &req).await {
        Ok(response) => response,
        Err(error) => {
            // The runtime opens no span per invocation (see main.rs): a failure names its request.
            let request_id = req
                .lambda_context_ref()
                .map_or("", |c| c.request_id.as_str());
            match &error {
                ApiError::Internal(cause) => {
                    tracing::error!(error = %cause, method = %req.method(), path = req.uri().path(), request_id, "request failed")
                }
                ApiError::Unavailable(detail) => {
                    tracing::warn!(detail, request_id, "dependency unavailable")
                }
                _ => tracing::debug!(%error, "request refused"),
            }
            http::problem(&error)
        }
    };
    Ok(response)
}
