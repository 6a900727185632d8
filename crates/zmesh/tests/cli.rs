//! The CLI for a node operator: init, run, status, and the errors they see.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::BIN;

fn zmesh(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run zmesh")
}

#[test]
fn init_writes_a_private_identity_and_a_documented_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("n");
    let d = d.to_str().unwrap();
    let out = zmesh(&["node", "init", "--dir", d, "--set", "limits.max_total=50"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("peer id  12D3Koo") && stdout.contains("node id  "), "{stdout}");
    let mode = std::fs::metadata(format!("{d}/identity.key")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let config = std::fs::read_to_string(format!("{d}/zmesh.toml")).unwrap();
    assert!(config.contains("# Connections allowed per remote peer"), "keys are documented");
    assert!(config.contains("max_total = 50"));

    let again = zmesh(&["node", "init", "--dir", d]);
    assert!(!again.status.success(), "must not overwrite an identity");
    assert!(String::from_utf8_lossy(&again.stderr).contains("identity.key"));
}

#[test]
fn clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = zmesh(&["node", "run", "--dir", d]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("zmesh node init --dir"));

    let out = zmesh(&["node", "init", "--dir", d, "--set", "keepalive.ping_every=1s"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `ping_every`"), "{err}");
    assert_eq!(err.lines().count(), 1, "one-line error: {err}");

    let out = zmesh(&["status", "--api", "127.0.0.1:9"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach the node API at 127.0.0.1:9")
    );
}

#[test]
fn status_prints_a_summary() {
    let node = common::Node::start(&["node.name=alpha"]);
    let out = zmesh(&["status", "--api", node.api()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("node          alpha"), "{text}");
    assert!(text.contains(&node.info.peer_id));
    assert!(text.contains("capabilities  PEX, DHT, STORAGE"), "{text}");
}
