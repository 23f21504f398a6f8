//! `GET /v1/changes?since=SEQ`: the caller's change feed over HTTP, for polling and for
//! resynchronising after a WebSocket gap.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use shared::error::{ApiError, Problem};
use shared::limits;
use shared::protocol::Envelope;
use shared::store::ChangesPage;
use utoipa::ToSchema;

use crate::http::{self, store_error};
use crate::Deps;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangesResponse {
    /// Changes after `since`, in seq order.
    pub changes: Vec<Envelope>,
    /// The seq of the last change returned (or `since`); pass it as the next `since`.
    pub up_to: u64,
    /// True when more changes follow `upTo`.
    pub has_more: bool,
}

/// Changes after `since`. `410` (problem type `resync-required`) when the retained log no longer
/// reaches back that far: refetch the inbox, then continue from its counts' `version`.
#[utoipa::path(get, path = "/v1/changes", tag = "inbox",
    params(("since" = u64, Query, description = "Last seq the client applied (0 for everything retained)"),
           ("limit" = Option<usize>, Query, description = "1–1000, default 100")),
    responses((status = 200, body = ChangesResponse),
              (status = 400, body = Problem, content_type = "application/problem+json"),
              (status = 410, body = Problem, content_type = "application/problem+json")),
    security(("jwt" = [])))]
pub async fn changes(deps: &Deps, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = http::claims(req)?;
    let since = http::query_number::<u64>(req, "since")?.unwrap_or(0);
    let limit = http::query_limit(
        req,
        limits::CHANGES_DEFAULT_LIMIT,
        limits::CHANGES_MAX_LIMIT,
    )?;
    match deps
        .store
        .changes(&claims.sub, since, limit)
        .await
        .map_err(store_error)?
    {
        ChangesPage::Resync { head } => Err(ApiError::ResyncRequired(format!(
            "changes after {since} are no longer retained (current seq {head}); refetch the inbox"
        ))),
        ChangesPage::Changes {
            changes,
            up_to,
            head,
        } => Ok(http::json(
            StatusCode::OK,
            &ChangesResponse {
                changes,
                up_to,
                has_more: up_to < head,
            },
        )),
    }
}
