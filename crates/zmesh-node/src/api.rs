//! The node's local HTTP API. JSON everywhere; errors are `{"error": "..."}` with a fitting
//! status code.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use zmesh_types::Key256;

use crate::NodeError;
use crate::node::NodeHandle;

/// An API error: a status and a one-line message.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let status = match e.kind() {
            "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            "config" => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

pub fn router(handle: NodeHandle) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/v1/dht/closest/{key}", get(closest))
        .route("/v1/storage", get(storage))
        .route("/v1/storage/keys/{key}", get(storage_key))
        .route("/v1/repair", get(repair))
        .route("/v1/messaging", get(messaging))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .with_state(handle)
}

pub async fn serve(listener: tokio::net::TcpListener, handle: NodeHandle) {
    if let Err(e) = axum::serve(listener, router(handle)).await {
        tracing::error!("API server stopped: {e}");
    }
}

async fn status(State(node): State<NodeHandle>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(node.status().await?))
}

async fn peers(State(node): State<NodeHandle>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(node.peers().await?))
}

async fn closest(
    State(node): State<NodeHandle>,
    Path(key): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let key: Key256 = key.parse().map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("{e}")))?;
    Ok(Json(node.closest(key).await?))
}

async fn storage(State(node): State<NodeHandle>) -> Result<impl IntoResponse, ApiError> {
    let Some(holder) = node.storage.clone() else {
        return Err(ApiError(StatusCode::NOT_FOUND, "storage is disabled on this node".into()));
    };
    let report = tokio::task::spawn_blocking(move || holder.report())
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(report))
}

/// Which shard indices this node holds under a storage key: for operators and tests.
async fn storage_key(
    State(node): State<NodeHandle>,
    Path(key): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let key: Key256 = key.parse().map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("{e}")))?;
    let Some(holder) = node.storage.clone() else {
        return Err(ApiError(StatusCode::NOT_FOUND, "storage is disabled on this node".into()));
    };
    let indices = tokio::task::spawn_blocking(move || holder.held(&key))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(json!({ "storage_key": key, "indices": indices })))
}

async fn repair(State(node): State<NodeHandle>) -> Result<impl IntoResponse, ApiError> {
    match node.repair {
        Some(service) => Ok(Json(service.report())),
        None => Err(ApiError(StatusCode::NOT_FOUND, "repair is disabled on this node".into())),
    }
}

async fn messaging(State(node): State<NodeHandle>) -> Result<impl IntoResponse, ApiError> {
    let Some(relay) = node.messaging.clone() else {
        return Err(ApiError(StatusCode::NOT_FOUND, "messaging is disabled on this node".into()));
    };
    let report = tokio::task::spawn_blocking(move || relay.report())
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(report))
}

async fn metrics(State(node): State<NodeHandle>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        crate::metrics::render(&node.registry),
    )
}
