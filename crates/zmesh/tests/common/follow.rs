//! A `zmesh inbox --follow --json` process and what it prints: messages as JSON documents, in
//! order, and its stderr for diagnostics.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

use super::{signal, wait_for};

pub struct Follower {
    child: Child,
    lines: mpsc::Receiver<Value>,
    stderr: Arc<Mutex<String>>,
}

impl Follower {
    /// Spawns `inbox` (a command with its identity, relay and `--follow --json` set) and waits
    /// until it says it is following.
    pub fn spawn(mut inbox: Command) -> Follower {
        let mut child = inbox
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn inbox");
        let (tx, lines) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                let doc = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
                if tx.send(doc).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let collected = stderr.clone();
        let mut pipe = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            let mut buf = [0; 1024];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]);
                collected.lock().unwrap_or_else(|p| p.into_inner()).push_str(&text);
            }
        });
        let mut follower = Follower { child, lines, stderr };
        wait_for("the inbox to follow", Duration::from_secs(60), || {
            if let Ok(Some(status)) = follower.child.try_wait() {
                panic!("inbox exited ({status}): {}", follower.stderr());
            }
            follower.stderr().contains("following").then_some(())
        });
        follower
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The next `n` messages printed, waiting up to `timeout` in all.
    pub fn take(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        (0..n)
            .map(|i| {
                let left = deadline.saturating_duration_since(Instant::now());
                self.lines.recv_timeout(left).unwrap_or_else(|_| {
                    panic!("only {i} of {n} messages arrived; inbox said: {}", self.stderr())
                })
            })
            .collect()
    }

    /// Stops it as Ctrl-C would: it exits cleanly, having printed nothing more.
    pub fn stop(mut self) {
        signal(self.child.id(), Signal::SIGINT);
        let status = wait_for("the inbox to exit", Duration::from_secs(20), || {
            self.child.try_wait().ok().flatten()
        });
        assert!(status.success(), "inbox exited with {status}: {}", self.stderr());
        // Give the output thread a moment to pass on anything printed late.
        std::thread::sleep(Duration::from_millis(200));
        let extra: Vec<Value> = self.lines.try_iter().collect();
        assert!(extra.is_empty(), "printed more than was sent: {extra:?}");
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
