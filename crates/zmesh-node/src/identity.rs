//! The node's Ed25519 identity: `DIR/identity.key`, libp2p's protobuf key encoding, mode 0600.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use libp2p::PeerId;
use libp2p::identity::Keypair;
use zeroize::Zeroizing;
use zmesh_types::{Key256, NodeId};

use crate::NodeError;

pub const IDENTITY_FILE: &str = "identity.key";

/// The node id of a peer: SHA-256 of its PeerId bytes, the key Kademlia ranks it by.
pub fn node_id(peer: &PeerId) -> NodeId {
    Key256::from_peer_id_bytes(&peer.to_bytes())
}

/// Writes a fresh identity to `path`; refuses to overwrite one. The file is fsynced (and its
/// directory too) before this returns, so a crash cannot leave a node without its key.
pub fn create(path: &Path) -> Result<Keypair, NodeError> {
    let keypair = Keypair::generate_ed25519();
    let encoded = Zeroizing::new(
        keypair
            .to_protobuf_encoding()
            .map_err(|e| NodeError::Identity { path: path.into(), reason: e.to_string() })?,
    );
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| NodeError::io(format!("creating {}", path.display()), e))?;
    file.write_all(&encoded)
        .and_then(|()| file.sync_all())
        .map_err(|e| NodeError::io(format!("writing {}", path.display()), e))?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| NodeError::io(format!("syncing {}", dir.display()), e))?;
    }
    Ok(keypair)
}

/// Reads the identity at `path`. Refuses a file others can read, like ssh does.
pub fn load(path: &Path) -> Result<Keypair, NodeError> {
    let meta =
        fs::metadata(path).map_err(|e| NodeError::io(format!("reading {}", path.display()), e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(NodeError::Identity {
            path: path.into(),
            reason: format!("mode is {mode:o}; it holds a secret key and must be 600 (chmod 600)"),
        });
    }
    let bytes = Zeroizing::new(
        fs::read(path).map_err(|e| NodeError::io(format!("reading {}", path.display()), e))?,
    );
    let keypair = Keypair::from_protobuf_encoding(&bytes)
        .map_err(|e| NodeError::Identity { path: path.into(), reason: e.to_string() })?;
    if keypair.key_type() != libp2p::identity::KeyType::Ed25519 {
        return Err(NodeError::Identity { path: path.into(), reason: "not an Ed25519 key".into() });
    }
    Ok(keypair)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_load_with_strict_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        let k = create(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load(&path).unwrap().public(), k.public());
        assert!(create(&path).is_err(), "must not overwrite an identity");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("must be 600"), "{err}");
    }

    #[test]
    fn node_id_is_the_kademlia_key() {
        let peer = Keypair::generate_ed25519().public().to_peer_id();
        let kad_key = libp2p::kad::KBucketKey::from(peer);
        assert_eq!(node_id(&peer).0.as_slice(), kad_key.hashed_bytes());
    }
}
