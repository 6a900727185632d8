//! `zmesh bench messaging`: how many messages a relay carries and how fast, beside plain TCP on
//! the same machine, measured in one run.
//!
//! Method:
//!
//! - **Baseline**: an in-process TCP echo server on loopback. The client sends length-prefixed
//!   frames of `--size` bytes with `--window` in flight (throughput), then one at a time
//!   (unloaded latency). The server notes when each frame arrives.
//! - **One relay**: on a fresh 3-node devnet, receiver B connects to node 0, subscribes and
//!   logs in; sender A (not logged in: senders are anonymous) connects to node 0 and sends
//!   `--messages` messages to B's address with `--window` `Send`s in flight, then
//!   `--latency-samples` one at a time. B answers every `Deliver` batch and notes when each
//!   message arrived. The window is shared by enough sender connections that none has more
//!   than the client's limit of open requests per connection (`--connections` overrides);
//!   more would only wait in the client's own queue.
//! - **Federated**: a fresh receiver connects to node 1, logs in there and publishes its
//!   presence; A still sends through node 0, which looks the presence up and forwards to node 1.
//!
//! Every payload carries its run, sequence number and send time (nanoseconds on this process's
//! monotonic clock), so one-way latency is arrival − send on one clock, and duplicates, losses
//! and reordering are counted exactly. Throughput is messages arrived / (last arrival − first
//! send). Each path is warmed up first (connections, the relay's presence cache) with messages
//! that are not counted.
//!
//! Payloads are opaque random bytes: relays never open a sealed message, so end-to-end
//! encryption is left out here and measured by `cargo bench -p zmesh-crypto --bench messaging`.
//! Every `Sent` answer is checked: anything but `Delivered` means the live path failed, and
//! `Queued` means the receiver fell behind and the relay used the offline mailbox.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use zmesh_client::{Deliveries, MsgRelay, Multiaddr, Relay};
use zmesh_crypto::sign::SigningIdentity;
use zmesh_node::clock::unix_ms;
use zmesh_node::messaging::auth::sign_user_auth;
use zmesh_node::messaging::records::{PRESENCE_MAX_LIFETIME_MS, PresenceValue, sign_record};
use zmesh_types::Key256;
use zmesh_wire::WirePeer;
use zmesh_wire::msg::{AuthPurpose, MAX_SEALED_LEN, MsgMessage, MsgStatus, RecordKind};

use super::{quantile, with_devnet};
use crate::devnet::Devnet;

const NODES: usize = 3;
const ONE_RELAY_GOAL: f64 = 50_000.0;
const FEDERATED_GOAL: f64 = 25_000.0;
const P50_GOAL_MS: f64 = 1.0;
/// The relays' per-connection limits for this benchmark: a user's default allowance (100
/// messages a minute) would measure the limit, not the relay.
const BENCH_RATE_LIMITS: [&str; 3] = [
    "rate_limits.client_messages=100000000/1m",
    "rate_limits.client_messages_burst=1000000",
    "rate_limits.window=10000",
];
/// Requests one client connection has open at most; more wait in its local queue.
const CLIENT_STREAMS: usize = zmesh_client::relay::MAX_OPEN_REQUESTS;
/// `/proc/PID/stat` counts CPU time in USER_HZ ticks, which Linux fixes at 100 for user space.
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Args, Debug)]
pub struct MessagingArgs {
    /// Messages in each throughput run.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Payload bytes per message (opaque to relays).
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Sends in flight at once in the throughput runs.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Messages sent one at a time for the unloaded latency.
    #[arg(long, default_value_t = 2000)]
    latency_samples: usize,
    /// Sender connections to the relay, sharing the window [default: enough for at most
    /// 256 requests in flight on each, the client's limit per connection].
    #[arg(long)]
    connections: Option<usize>,
    /// Devnet directory [default: a fresh temporary directory].
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// What every payload starts with: run id, sequence number, send time.
const STAMP_LEN: usize = 4 + 8 + 8;

fn stamp(payload: &mut [u8], run: u32, seq: u64, sent_ns: u64) {
    payload[..4].copy_from_slice(&run.to_be_bytes());
    payload[4..12].copy_from_slice(&seq.to_be_bytes());
    payload[12..20].copy_from_slice(&sent_ns.to_be_bytes());
}

/// One message as the receiving end saw it.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    run: u32,
    seq: u64,
    sent_ns: u64,
    at_ns: u64,
}

fn read_stamp(payload: &[u8], at_ns: u64) -> Option<Arrival> {
    let word = |r: std::ops::Range<usize>| payload.get(r);
    Some(Arrival {
        run: u32::from_be_bytes(word(0..4)?.try_into().ok()?),
        seq: u64::from_be_bytes(word(4..12)?.try_into().ok()?),
        sent_ns: u64::from_be_bytes(word(12..20)?.try_into().ok()?),
        at_ns,
    })
}

fn nanos(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

fn random_payload(size: usize) -> Vec<u8> {
    let mut payload = vec![0; size];
    rand::thread_rng().fill_bytes(&mut payload);
    payload
}

/// What one run's arrivals show.
#[derive(Debug, Default)]
struct RunStats {
    sent: usize,
    arrived: usize,
    duplicates: usize,
    out_of_order: usize,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl RunStats {
    fn missing(&self) -> usize {
        self.sent - self.arrived
    }

    /// Counts and latencies of `sent` messages (sequence numbers `0..sent`) from their arrivals,
    /// in arrival order.
    fn of(sent: usize, arrivals: &[Arrival]) -> RunStats {
        let mut seen = vec![false; sent];
        let mut stats = RunStats { sent, ..RunStats::default() };
        let mut highest: Option<u64> = None;
        let mut latencies = Vec::with_capacity(arrivals.len());
        let (mut first, mut last) = (u64::MAX, 0);
        for a in arrivals {
            let Some(slot) = seen.get_mut(a.seq as usize) else { continue };
            if *slot {
                stats.duplicates += 1;
                continue;
            }
            *slot = true;
            stats.arrived += 1;
            if highest.is_some_and(|h| a.seq < h) {
                stats.out_of_order += 1;
            }
            highest = highest.max(Some(a.seq));
            latencies.push(a.at_ns.saturating_sub(a.sent_ns) as f64 / 1e6);
            first = first.min(a.sent_ns);
            last = last.max(a.at_ns);
        }
        latencies.sort_by(|a, b| a.total_cmp(b));
        stats.p50_ms = quantile(&latencies, 0.5);
        stats.p99_ms = quantile(&latencies, 0.99);
        let secs = last.saturating_sub(first) as f64 / 1e9;
        stats.rate = if secs > 0.0 { stats.arrived as f64 / secs } else { f64::NAN };
        stats
    }
}

/// How the relay answered the `Send`s of one run.
#[derive(Debug, Default)]
struct Tally {
    delivered: usize,
    queued: usize,
    refused: usize,
    errors: usize,
    first_problem: Option<String>,
}

impl Tally {
    fn count(&mut self, answer: anyhow::Result<MsgMessage>) {
        let problem = match answer {
            Ok(MsgMessage::Sent { outcome, .. }) => match outcome.status {
                MsgStatus::Delivered => {
                    self.delivered += 1;
                    return;
                }
                MsgStatus::Queued => {
                    self.queued += 1;
                    format!("Queued: {}", outcome.detail)
                }
                status => {
                    self.refused += 1;
                    format!("{status:?}: {}", outcome.detail)
                }
            },
            Ok(other) => {
                self.refused += 1;
                format!("unexpected answer to Send: {other:?}")
            }
            Err(e) => {
                self.errors += 1;
                format!("{e:#}")
            }
        };
        self.first_problem.get_or_insert(problem);
    }
}

/// One measured run: what was sent, how it was answered, what arrived.
#[derive(Debug)]
struct Run {
    stats: RunStats,
    tally: Tally,
}

/// A receiver's live deliveries, stamped on arrival and answered as taken.
fn spawn_receiver(
    mut deliveries: Deliveries,
    epoch: Instant,
) -> mpsc::UnboundedReceiver<Vec<Arrival>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(delivery) = deliveries.recv().await {
            let at_ns = nanos(epoch);
            let arrivals =
                delivery.messages.iter().filter_map(|e| read_stamp(&e.sealed, at_ns)).collect();
            let upto = delivery.messages.last().map(|e| e.cursor());
            let count = delivery.messages.len() as u16;
            // Recorded before answering: the relay answers the sender's `Send` only after
            // this answer, so every `Delivered` message is recorded by the time it is counted.
            let _ = tx.send(arrivals);
            delivery.answer(upto, count);
        }
    });
    rx
}

/// The sending side of a path: A's connections and B's address and arrivals.
struct Path {
    senders: Vec<Relay>,
    recipient: [u8; 32],
    arrivals: mpsc::UnboundedReceiver<Vec<Arrival>>,
    template: Vec<u8>,
    epoch: Instant,
    next_run: u32,
}

impl Path {
    /// Sends `n` messages with `window` in flight, in turn over the sender connections, and
    /// collects what arrived.
    async fn run(&mut self, n: usize, window: usize) -> Run {
        self.next_run += 1;
        let run = self.next_run;
        let conns = self.senders.len().min(window);
        // Each connection gets its own share of the window: a slow one must not collect more
        // requests than the client lets one connection carry.
        let share: Vec<usize> =
            (0..conns).map(|c| window / conns + usize::from(c < window % conns)).collect();
        let mut in_flight = vec![0; conns];
        let mut tally = Tally::default();
        let mut tasks = JoinSet::new();
        let mut finish = |done: Result<(usize, anyhow::Result<MsgMessage>), _>,
                          in_flight: &mut [usize]| {
            match done {
                Ok((c, answer)) => {
                    in_flight[c] -= 1;
                    tally.count(answer);
                }
                // A panicked task: its slot stays taken, which only narrows the window.
                Err(e) => tally.count(Err(anyhow::Error::new(e).context("send task"))),
            }
        };
        for seq in 0..n {
            let c = seq % conns;
            while in_flight[c] >= share[c] {
                let Some(done) = tasks.join_next().await else { break };
                finish(done, &mut in_flight);
            }
            let mut sealed = self.template.clone();
            stamp(&mut sealed, run, seq as u64, nanos(self.epoch));
            let relay = self.senders[c].clone();
            let request =
                MsgMessage::Send { recipient: self.recipient, id: rand::random(), sealed };
            in_flight[c] += 1;
            tasks.spawn(async move { (c, relay.request(request).await.map_err(Into::into)) });
        }
        while let Some(done) = tasks.join_next().await {
            finish(done, &mut in_flight);
        }
        let mut arrivals = Vec::with_capacity(n);
        // Delivered messages are recorded already; a little grace for stragglers of a send
        // that failed on the sender's side but still reached the relay.
        let grace = Instant::now() + Duration::from_millis(200);
        while arrivals.len() < n {
            let batch = match self.arrivals.try_recv() {
                Ok(batch) => batch,
                Err(_)
                    if Instant::now() < grace
                        && arrivals.len() < tally.delivered + tally.errors =>
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Err(_) => break,
            };
            arrivals.extend(batch.into_iter().filter(|a| a.run == run));
        }
        Run { stats: RunStats::of(n, &arrivals), tally }
    }
}

/// CPU seconds a process has used so far.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: count fields after its closing parenthesis, where
    // utime and stime (fields 14 and 15 of the line) are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / TICKS_PER_SEC)
}

/// CPU use of the nodes and of this process while `f` sends `n` messages: % of one core, and
/// CPU time per message.
async fn with_cpu<T>(pids: &[(String, u32)], n: usize, f: impl Future<Output = T>) -> (T, String) {
    let before: Vec<Option<f64>> = pids.iter().map(|(_, p)| cpu_secs(*p)).collect();
    let started = Instant::now();
    let out = f.await;
    let secs = started.elapsed().as_secs_f64();
    let usage: Vec<String> = pids
        .iter()
        .zip(before)
        .map(|((name, pid), b)| match (b, cpu_secs(*pid)) {
            (Some(b), Some(a)) => {
                let used = a - b;
                format!("{name} {:.0}% {:.0} µs", used / secs * 100.0, used / n as f64 * 1e6)
            }
            _ => format!("{name} ?"),
        })
        .collect();
    (out, usage.join(", "))
}

pub async fn messaging(args: MessagingArgs) -> anyhow::Result<()> {
    if args.size < STAMP_LEN || args.size > MAX_SEALED_LEN {
        bail!("--size must be {STAMP_LEN} to {MAX_SEALED_LEN} bytes");
    }
    if args.messages == 0
        || args.window == 0
        || args.latency_samples == 0
        || args.connections == Some(0)
    {
        bail!("--messages, --window, --latency-samples and --connections must be at least 1");
    }
    let mut args = args;
    args.connections = Some(args.connections.unwrap_or(args.window.div_ceil(CLIENT_STREAMS)));
    let dir = args.dir.clone();
    // The devnet allows each IP only what the mesh itself needs; the sender and receiver
    // connections come from loopback too.
    let per_ip = NODES + 5 + args.connections.unwrap_or(1) + 2;
    let mut overrides = vec![format!("limits.max_per_ip={per_ip}")];
    overrides.extend(BENCH_RATE_LIMITS.iter().map(|o| o.to_string()));
    with_devnet(NODES, dir, overrides, move |devnet| async move {
        let result = measure(&devnet, &args).await;
        (devnet, result)
    })
    .await
}

/// A node's TCP multiaddr, with its peer id (for dialling) as the devnet lists it.
fn tcp_addr(devnet: &Devnet, i: usize) -> anyhow::Result<&str> {
    devnet.nodes[i]
        .multiaddrs
        .iter()
        .find(|a| a.contains("/tcp/"))
        .map(String::as_str)
        .with_context(|| format!("node {i} has no TCP address"))
}

async fn login(relay: &Relay, user: &SigningIdentity) -> anyhow::Result<()> {
    // Bound to this relay, as the relay requires.
    let target = Key256::hash(&relay.peer_id().to_bytes()).0;
    let auth = sign_user_auth(user, AuthPurpose::Login, &target, unix_ms(), rand::random());
    match relay.request(MsgMessage::Login { auth }).await? {
        MsgMessage::LoggedIn { outcome, .. } if outcome.status == MsgStatus::Ok => Ok(()),
        other => bail!("login refused: {other:?}"),
    }
}

async fn publish_presence(relay: &Relay, user: &SigningIdentity, addr: &str) -> anyhow::Result<()> {
    // The record names the relay's peer id separately; the address goes without it.
    let addr: Multiaddr = addr.split("/p2p/").next().unwrap_or(addr).parse()?;
    let relay_peer = WirePeer { peer_id: relay.peer_id().to_bytes(), addrs: vec![addr.to_vec()] };
    let now = unix_ms();
    let record = sign_record(
        user,
        RecordKind::Presence,
        PresenceValue { relay: relay_peer }.to_bytes(),
        now,
        now + PRESENCE_MAX_LIFETIME_MS,
    );
    match relay.request(MsgMessage::PublishRecord { record }).await? {
        MsgMessage::Result { outcome } if outcome.status == MsgStatus::Ok => Ok(()),
        other => bail!("publishing presence refused: {other:?}"),
    }
}

/// A receiver logged in at node `i` (publishing its presence there when `federated`).
async fn receiver(
    devnet: &Devnet,
    i: usize,
    federated: bool,
    epoch: Instant,
) -> anyhow::Result<(Relay, [u8; 32], mpsc::UnboundedReceiver<Vec<Arrival>>)> {
    let addr = tcp_addr(devnet, i)?;
    let relay = Relay::connect(addr.parse()?).await?;
    let user = SigningIdentity::generate();
    // Subscribed before the login, so no push is refused.
    let arrivals = spawn_receiver(relay.subscribe().await?, epoch);
    login(&relay, &user).await?;
    if federated {
        publish_presence(&relay, &user, addr).await?;
    }
    Ok((relay, user.public().address(), arrivals))
}

/// Results of one path: throughput run, latency run, CPU during the throughput run.
struct PathResult {
    loaded: Run,
    unloaded: Run,
    cpu: String,
}

async fn measure_path(
    devnet: &Devnet,
    args: &MessagingArgs,
    receiver_node: usize,
    epoch: Instant,
) -> anyhow::Result<PathResult> {
    let federated = receiver_node != 0;
    let (_receiver, recipient, arrivals) =
        receiver(devnet, receiver_node, federated, epoch).await?;
    let sender_addr: Multiaddr = tcp_addr(devnet, 0)?.parse()?;
    let connections = args.connections.unwrap_or(1);
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(Relay::connect(sender_addr.clone()).await?);
    }
    let template = random_payload(args.size);
    let mut path = Path { senders, recipient, arrivals, template, epoch, next_run: 0 };
    // Warm-up: one message alone fills the relay's presence cache, then a full window.
    let warm = path.run(1, 1).await;
    if warm.tally.delivered != 1 {
        bail!("the first message was not delivered live: {:?}", warm.tally.first_problem);
    }
    path.run(args.window.min(args.messages), args.window).await;
    let mut pids: Vec<(String, u32)> =
        devnet.nodes.iter().enumerate().map(|(i, n)| (format!("node {i}"), n.pid)).collect();
    pids.push(("bench".into(), std::process::id()));
    let (loaded, cpu) = with_cpu(&pids, args.messages, path.run(args.messages, args.window)).await;
    let unloaded = path.run(args.latency_samples, 1).await;
    Ok(PathResult { loaded, unloaded, cpu })
}

/// An in-process echo server's side of one connection: echoes frames until end of stream and
/// returns when each arrived.
async fn echo(stream: TcpStream, epoch: Instant) -> anyhow::Result<Vec<Arrival>> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut arrivals = Vec::new();
    let mut frame = Vec::new();
    loop {
        let len = match read.read_u32().await {
            Ok(len) => len as usize,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        };
        if len > MAX_SEALED_LEN {
            bail!("echo: a {len}-byte frame");
        }
        frame.resize(4 + len, 0);
        frame[..4].copy_from_slice(&(len as u32).to_be_bytes());
        read.read_exact(&mut frame[4..]).await?;
        arrivals.extend(read_stamp(&frame[4..], nanos(epoch)));
        write.write_all(&frame).await?;
    }
    Ok(arrivals)
}

/// `n` frames over loopback TCP with `window` in flight, echoed back.
async fn tcp_run(n: usize, window: usize, size: usize, epoch: Instant) -> anyhow::Result<RunStats> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        echo(stream, epoch).await
    });
    let stream = TcpStream::connect(addr).await?;
    // As libp2p's TCP transport is configured.
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let permits = Arc::new(Semaphore::new(window));
    let writer_permits = permits.clone();
    let template = random_payload(size);
    let writer = tokio::spawn(async move {
        let mut frame = Vec::with_capacity(4 + size);
        for seq in 0..n {
            writer_permits.acquire().await?.forget();
            frame.clear();
            frame.extend_from_slice(&(size as u32).to_be_bytes());
            frame.extend_from_slice(&template);
            stamp(&mut frame[4..], 0, seq as u64, nanos(epoch));
            write.write_all(&frame).await?;
        }
        write.shutdown().await?;
        anyhow::Ok(())
    });
    let mut read = BufReader::new(read);
    let mut echoed = vec![0; 4 + size];
    for _ in 0..n {
        read.read_exact(&mut echoed).await.context("reading an echo")?;
        permits.add_permits(1);
    }
    writer.await??;
    let arrivals = server.await??;
    Ok(RunStats::of(n, &arrivals))
}

fn ms(v: f64) -> String {
    format!("{v:.3} ms")
}

fn verdict(met: bool) -> &'static str {
    if met { "MET" } else { "NOT MET" }
}

/// The machine's cores and 1-minute load average: other work skews every figure here.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?").to_owned();
    format!("{cores} cores, load average {load} before the run")
}

async fn measure(devnet: &Devnet, args: &MessagingArgs) -> anyhow::Result<()> {
    let machine = machine();
    let epoch = Instant::now();
    let n = args.messages;
    eprintln!("TCP baseline");
    let tcp_loaded = tcp_run(n, args.window, args.size, epoch).await?;
    let tcp_unloaded = tcp_run(args.latency_samples, 1, args.size, epoch).await?;
    eprintln!("one relay");
    let direct = measure_path(devnet, args, 0, epoch).await.context("one relay")?;
    eprintln!("federated");
    let federated = measure_path(devnet, args, 1, epoch).await.context("federated")?;

    let command: Vec<String> = std::env::args().collect();
    let connections = args.connections.unwrap_or(1);
    println!(
        "zmesh bench messaging: {NODES}-node devnet on loopback, {n} × {}-byte payloads, window {} \
         over {connections} sender connection(s), {} unloaded samples; {machine}",
        args.size, args.window, args.latency_samples
    );
    println!(
        "command: {}  (in full: zmesh bench messaging --messages {n} --size {} --window {} \
         --latency-samples {} --connections {connections})",
        command.join(" "),
        args.size,
        args.window,
        args.latency_samples
    );
    println!(
        "payloads are opaque random bytes: end-to-end encryption is not included \
         (measured separately: cargo bench -p zmesh-crypto --bench messaging)"
    );
    println!(
        "per-connection rate limits are raised for this load ({}); a client connection \
         carries at most {CLIENT_STREAMS} requests at once",
        BENCH_RATE_LIMITS.join(" ")
    );
    println!();
    println!(
        "{:<22} {:>10} {:>11} {:>11} {:>11} {:>11}",
        "path", "msg/s", "p50 1-way", "p99 1-way", "p50 loaded", "p99 loaded"
    );
    let row = |name: &str, loaded: &RunStats, unloaded: &RunStats| {
        println!(
            "{name:<22} {:>10.0} {:>11} {:>11} {:>11} {:>11}",
            loaded.rate,
            ms(unloaded.p50_ms),
            ms(unloaded.p99_ms),
            ms(loaded.p50_ms),
            ms(loaded.p99_ms)
        );
    };
    row("TCP echo (baseline)", &tcp_loaded, &tcp_unloaded);
    row("one relay", &direct.loaded.stats, &direct.unloaded.stats);
    row("federated (2 relays)", &federated.loaded.stats, &federated.unloaded.stats);
    println!(
        "(msg/s: arrived / (last arrival − first send) at window {}; 1-way: window 1; \
         loaded: in the window run)",
        args.window
    );
    println!();
    println!(
        "{:<22} {:>6} {:>9} {:>6} {:>7} {:>6} {:>7} {:>4} {:>7} {:>12}",
        "run",
        "sent",
        "delivered",
        "queued",
        "refused",
        "errors",
        "arrived",
        "dup",
        "missing",
        "out of order"
    );
    let mut problems = Vec::new();
    for (name, run) in [
        ("one relay, window", &direct.loaded),
        ("one relay, 1 by 1", &direct.unloaded),
        ("federated, window", &federated.loaded),
        ("federated, 1 by 1", &federated.unloaded),
    ] {
        let (s, t) = (&run.stats, &run.tally);
        println!(
            "{name:<22} {:>6} {:>9} {:>6} {:>7} {:>6} {:>7} {:>4} {:>7} {:>12}",
            s.sent,
            t.delivered,
            t.queued,
            t.refused,
            t.errors,
            s.arrived,
            s.duplicates,
            s.missing(),
            s.out_of_order
        );
        if let Some(p) = &t.first_problem {
            problems.push(format!("{name}: first problem: {p}"));
        }
        if t.queued > 0 {
            problems.push(format!(
                "{name}: {} messages queued in the mailbox: the receiver fell behind",
                t.queued
            ));
        }
    }
    let exact = [&direct.loaded, &direct.unloaded, &federated.loaded, &federated.unloaded]
        .iter()
        .all(|r| r.stats.arrived == r.stats.sent && r.stats.duplicates == 0);
    let in_order = [&direct.loaded, &direct.unloaded, &federated.loaded, &federated.unloaded]
        .iter()
        .all(|r| r.stats.out_of_order == 0);
    println!(
        "every message arrived exactly once: {}; in send order: {}",
        if exact { "yes" } else { "NO" },
        if in_order { "yes" } else { "no (concurrent sends pass each other)" }
    );
    println!("(out of order: arrived after a message sent later)");
    for p in &problems {
        println!("{p}");
    }
    println!("CPU in the window run (% of one core, per message): one relay: {}", direct.cpu);
    println!("{:>52} {}", "federated:", federated.cpu);
    println!();
    let (d, f) = (&direct, &federated);
    println!(
        "goal one relay ≥ {ONE_RELAY_GOAL:.0} msg/s: {} ({:.0})",
        verdict(d.loaded.stats.rate >= ONE_RELAY_GOAL),
        d.loaded.stats.rate
    );
    println!(
        "goal federated ≥ {FEDERATED_GOAL:.0} msg/s: {} ({:.0})",
        verdict(f.loaded.stats.rate >= FEDERATED_GOAL),
        f.loaded.stats.rate
    );
    println!(
        "goal p50 ≤ {P50_GOAL_MS} ms unloaded: one relay {} ({}), federated {} ({})",
        verdict(d.unloaded.stats.p50_ms <= P50_GOAL_MS),
        ms(d.unloaded.stats.p50_ms),
        verdict(f.unloaded.stats.p50_ms <= P50_GOAL_MS),
        ms(f.unloaded.stats.p50_ms)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrival(seq: u64, sent_ns: u64, at_ns: u64) -> Arrival {
        Arrival { run: 1, seq, sent_ns, at_ns }
    }

    #[test]
    fn a_stamp_reads_back() {
        let mut payload = random_payload(64);
        stamp(&mut payload, 7, 42, 123_456);
        let a = read_stamp(&payload, 999).unwrap();
        assert_eq!((a.run, a.seq, a.sent_ns, a.at_ns), (7, 42, 123_456, 999));
        assert!(read_stamp(&payload[..10], 0).is_none());
    }

    #[test]
    fn run_stats_count_duplicates_losses_and_reordering() {
        // Seq 2 passes 1, 0 comes twice, 3 never arrives.
        let arrivals = [
            arrival(0, 0, 1_000_000),
            arrival(2, 2_000_000, 3_000_000),
            arrival(1, 1_000_000, 3_000_000),
            arrival(0, 0, 4_000_000),
        ];
        let s = RunStats::of(4, &arrivals);
        assert_eq!((s.arrived, s.duplicates, s.missing(), s.out_of_order), (3, 1, 1, 1));
        // Three messages from the first send (0 ns) to the last arrival (3 ms).
        assert!((s.rate - 1000.0).abs() < 1e-6, "{}", s.rate);
        assert_eq!(s.p50_ms, 1.0);
    }

    #[test]
    fn tallies_sort_answers() {
        use zmesh_wire::msg::MsgOutcome;
        let sent = |status| MsgMessage::Sent { id: [0; 16], outcome: MsgOutcome::new(status, "") };
        let mut t = Tally::default();
        t.count(Ok(sent(MsgStatus::Delivered)));
        t.count(Ok(sent(MsgStatus::Queued)));
        t.count(Ok(sent(MsgStatus::NoRoute)));
        t.count(Err(anyhow::anyhow!("gone")));
        assert_eq!((t.delivered, t.queued, t.refused, t.errors), (1, 1, 1, 1));
        assert!(t.first_problem.unwrap().starts_with("Queued"));
    }
}
