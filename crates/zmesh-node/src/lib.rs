//! The zmesh Full Node: the libp2p swarm (TCP + QUIC, Noise, Yamux, Kademlia, identify), the
//! drivers of zmesh's own protocols, and the local HTTP API. This is the only crate that owns
//! sockets, timers and tasks; protocol decisions are made by `zmesh-core`.

pub mod api;
pub mod clock;
pub mod config;
pub mod control;
mod error;
pub mod framing;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod limits;
pub mod messaging;
pub mod metrics;
pub mod node;
pub mod peers;
pub mod storage;

/// Locks a mutex, carrying on past a poisoned one: every value the node keeps behind a mutex
/// (caches, schedules, counters) stays usable after a panic elsewhere, and stopping the node
/// for it would lose more than it protects.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub use config::NodeConfig;
pub use error::NodeError;
pub use node::{NodeHandle, RUNTIME_FILE, RuntimeInfo, run};

/// The config file inside a node's directory.
pub const CONFIG_FILE: &str = "zmesh.toml";

/// Creates a node directory: a fresh identity and the documented config file, with `overrides`
/// (`KEY=VALUE`) applied. Refuses to touch a directory that already has an identity.
pub fn init_dir(dir: &std::path::Path, overrides: &[String]) -> Result<libp2p::PeerId, NodeError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| NodeError::io(format!("creating {}", dir.display()), e))?;
    let mut text = config::DEFAULT_CONFIG.to_string();
    for assignment in overrides {
        let (key, value) = config::split_assignment(assignment)?;
        text = config::set_key(&text, key, value)?;
    }
    let keypair = identity::create(&dir.join(identity::IDENTITY_FILE))?;
    fsutil::write_atomic(&dir.join(CONFIG_FILE), text.as_bytes())?;
    Ok(keypair.public().to_peer_id())
}

/// Reads `DIR/zmesh.toml` (missing file: defaults) and applies `overrides` on top.
pub fn load_config(dir: &std::path::Path, overrides: &[String]) -> Result<NodeConfig, NodeError> {
    let path = dir.join(CONFIG_FILE);
    let mut text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(NodeError::io(format!("reading {}", path.display()), e)),
    };
    for assignment in overrides {
        let (key, value) = config::split_assignment(assignment)?;
        text = config::set_key(&text, key, value)?;
    }
    NodeConfig::parse(&text).map_err(|e| match e {
        NodeError::Config(m) => NodeError::Config(format!("{}: {m}", path.display())),
        other => other,
    })
}
