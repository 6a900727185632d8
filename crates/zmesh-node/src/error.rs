use std::path::PathBuf;

/// Errors of the node crate. `kind()` gives the coarse class the CLI and API report.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("config: {0}")]
    Config(String),
    #[error("identity file {path}: {reason}")]
    Identity { path: PathBuf, reason: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("network: {0}")]
    Network(String),
    #[error("the DHT is disabled on this node (dht.enabled = false)")]
    DhtDisabled,
    #[error("the node is shutting down")]
    ShuttingDown,
}

impl NodeError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        NodeError::Io { context: context.into(), source }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            NodeError::Config(_) => "config",
            NodeError::Identity { .. } => "identity",
            NodeError::Io { .. } => "io",
            NodeError::Network(_) => "network",
            NodeError::DhtDisabled => "unavailable",
            NodeError::ShuttingDown => "unavailable",
        }
    }
}
