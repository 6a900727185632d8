//! A small JSON client for the node API, with errors that say what went wrong.

use std::time::Duration;

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// GETs `http://{api}{path}` and decodes the JSON answer; an API error becomes its message.
pub async fn get_json<T: DeserializeOwned>(
    client: &reqwest::Client,
    api: &str,
    path: &str,
) -> anyhow::Result<T> {
    let url = format!("http://{api}{path}");
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach the node API at {api}"))?;
    let status = response.status();
    let body = response.bytes().await.with_context(|| format!("reading the answer from {url}"))?;
    if !status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        bail!("{url}: {status}: {message}");
    }
    serde_json::from_slice(&body).with_context(|| format!("unexpected answer from {url}"))
}
