//! The daemon's routes for `scale` and `rollout`, thin over [`crate::rollout`]:
//! - `POST /scale/{resource}/{namespace}/{name}?replicas=&currentReplicas=`;
//! - `GET /rollout/{resource}/{namespace}/{name}/status`: one look, `{"message", "done",
//!   "waiting"}` (the pod a timed-out client names);
//! - `GET /rollout/{resource}/{namespace}/{name}/history`: `{"object", "revisions": [...]}`;
//! - `POST /rollout/{resource}/{namespace}/{name}/undo?toRevision=`;
//! - `POST /rollout/{resource}/{namespace}/{name}/restart`.
//!
//! Verbs that change an object answer `{"object": "statefulset.apps/web", "result": "scaled"}`,
//! what kubectl prints. (`wait` needs no route: it reads objects and their watch.)

use super::{ApiError, ApiState, kind_of};
use crate::rollout::{self, RolloutError, Undo};
use crate::store::{ObjectKey, now_string};
use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

/// The routes, merged into the daemon's router.
pub(super) fn routes() -> axum::Router<ApiState> {
    axum::Router::new()
        .route("/scale/{resource}/{namespace}/{name}", post(scale))
        .route("/rollout/{resource}/{namespace}/{name}/status", get(status))
        .route("/rollout/{resource}/{namespace}/{name}/history", get(history))
        .route("/rollout/{resource}/{namespace}/{name}/undo", post(undo))
        .route("/rollout/{resource}/{namespace}/{name}/restart", post(restart))
}

impl From<RolloutError> for ApiError {
    fn from(e: RolloutError) -> ApiError {
        match e {
            RolloutError::Store(e) => e.into(),
            RolloutError::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, "NotFound", e.to_string()),
            RolloutError::Precondition { .. } => {
                ApiError::new(StatusCode::CONFLICT, "Conflict", e.to_string())
            }
            RolloutError::RevisionData { .. } => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string())
            }
            _ => ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()),
        }
    }
}

type Target = UrlPath<(String, String, String)>;

fn key_of(UrlPath((resource, namespace, name)): Target) -> Result<ObjectKey, ApiError> {
    Ok(ObjectKey::new(kind_of(&resource)?, namespace, name))
}

fn done(key: &ObjectKey, result: &str) -> Json<Value> {
    Json(json!({ "object": rollout::qualified(key.kind, &key.name), "result": result }))
}

#[derive(Debug, Default, Deserialize)]
pub struct ScaleQuery {
    replicas: Option<i64>,
    #[serde(rename = "currentReplicas")]
    current_replicas: Option<i64>,
}

async fn scale(
    State(s): State<ApiState>,
    target: Target,
    Query(q): Query<ScaleQuery>,
) -> Result<Json<Value>, ApiError> {
    let key = key_of(target)?;
    let replicas = q.replicas.ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", "the replicas parameter is required")
    })?;
    rollout::scale(&s.store, &key, replicas, q.current_replicas)?;
    Ok(done(&key, "scaled"))
}

async fn status(State(s): State<ApiState>, target: Target) -> Result<Json<Value>, ApiError> {
    let key = key_of(target)?;
    let st = rollout::status(&s.store, &key)?;
    // What a timed-out client names as the reason: a pod that cannot get Ready, else the first
    // pod still on its way.
    let readiness = crate::local::readiness(&s.store, std::slice::from_ref(&key));
    let waiting = readiness.blocked.or_else(|| {
        readiness.waiting.iter().find(|(o, _)| o.starts_with("pod/")).map(|(o, why)| format!("{o}: {why}"))
    });
    Ok(Json(json!({ "message": st.message, "done": st.done, "waiting": waiting })))
}

async fn history(State(s): State<ApiState>, target: Target) -> Result<Json<Value>, ApiError> {
    let key = key_of(target)?;
    let revisions: Vec<Value> = rollout::history(&s.store, &key)?.iter().map(|r| r.to_json()).collect();
    Ok(Json(json!({ "object": rollout::qualified(key.kind, &key.name), "revisions": revisions })))
}

#[derive(Debug, Default, Deserialize)]
pub struct UndoQuery {
    #[serde(rename = "toRevision")]
    to_revision: Option<i64>,
}

async fn undo(
    State(s): State<ApiState>,
    target: Target,
    Query(q): Query<UndoQuery>,
) -> Result<Json<Value>, ApiError> {
    let key = key_of(target)?;
    let result = match rollout::undo(&s.store, &key, q.to_revision.unwrap_or(0))? {
        Undo::RolledBack { .. } => "rolled back".to_string(),
        Undo::Skipped { revision } => {
            format!("skipped rollback (current template already matches revision {revision})")
        }
    };
    Ok(done(&key, &result))
}

async fn restart(State(s): State<ApiState>, target: Target) -> Result<Json<Value>, ApiError> {
    let key = key_of(target)?;
    rollout::restart(&s.store, &key, &now_string())?;
    Ok(done(&key, "restarted"))
}

#[cfg(test)]
mod tests;
