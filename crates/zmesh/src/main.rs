//! `zmesh`: one binary for every role — Full Node daemon, local devnet, and client tools.

mod bench;
mod client;
mod devnet;
mod http;
mod msg;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "zmesh",
    version,
    about = "A privacy-first peer-to-peer mesh: end-to-end-encrypted messages and storage on independently run Full Nodes."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create or run one Full Node.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Start a local mesh of N nodes on loopback, each its own process, until Ctrl-C.
    Devnet(devnet::DevnetArgs),
    /// Show a running node's status.
    Status(status::StatusArgs),
    /// Show a running node's peers with RTT and quality.
    Peers(status::StatusArgs),
    /// Ask a running node for the 20 nodes closest to a 256-bit key (64 hex characters).
    Closest(status::ClosestArgs),
    /// Measure the mesh: lookup latency and rounds on a fresh local devnet.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Create or show your identity: the key that owns and encrypts your stored data.
    #[command(subcommand)]
    Id(client::IdCommand),
    /// Encrypt a file and store it on the mesh; prints its id as the last word.
    Put(client::PutArgs),
    /// Fetch a stored file by id and decrypt it.
    Get(client::GetArgs),
    /// Delete a stored file from the mesh.
    Rm(client::RmArgs),
    /// Send an end-to-end-encrypted message to an address; prints `delivered ID` (the
    /// recipient is online) or `queued ID` (kept in its offline mailbox).
    Send(msg::SendArgs),
    /// Receive your messages: log in at a relay, publish your keys and presence, and print
    /// what is in your mailbox (and, with --follow, what arrives after).
    Inbox(msg::InboxArgs),
    /// Show the safety number with a contact: compare it with theirs (in person or over a call)
    /// to be sure no one is in between.
    SafetyNumber(msg::SafetyNumberArgs),
}

#[derive(Subcommand, Debug)]
enum NodeCommand {
    /// Write a new identity (mode 0600) and a documented zmesh.toml into DIR.
    Init(NodeDirArgs),
    /// Run the node in DIR until SIGINT or SIGTERM.
    Run(NodeDirArgs),
}

#[derive(Args, Debug)]
struct NodeDirArgs {
    /// The node's directory: identity.key, zmesh.toml, node.json while running.
    #[arg(long, default_value = "./zmesh-node")]
    dir: PathBuf,
    /// Override a config key, e.g. `--set keepalive.ping_interval=1s` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Node(NodeCommand::Init(args)) => {
            let peer = zmesh_node::init_dir(&args.dir, &args.overrides)?;
            let node_id = zmesh_node::identity::node_id(&peer);
            println!("initialized node in {}", args.dir.display());
            println!("peer id  {peer}");
            println!("node id  {node_id}");
            println!("config   {}", args.dir.join(zmesh_node::CONFIG_FILE).display());
            Ok(())
        }
        Command::Node(NodeCommand::Run(args)) => run_node(args).await,
        Command::Devnet(args) => devnet::run(args).await,
        Command::Status(args) => status::status(args).await,
        Command::Peers(args) => status::peers(args).await,
        Command::Closest(args) => status::closest(args).await,
        Command::Bench(command) => bench::run(command).await,
        Command::Id(command) => client::id(command),
        Command::Put(args) => client::put(args).await,
        Command::Get(args) => client::get(args).await,
        Command::Rm(args) => client::rm(args).await,
        Command::Send(args) => msg::send(args).await,
        Command::Inbox(args) => msg::inbox(args).await,
        Command::SafetyNumber(args) => msg::safety_number(args).await,
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run_node(args: NodeDirArgs) -> anyhow::Result<()> {
    let identity = args.dir.join(zmesh_node::identity::IDENTITY_FILE);
    if !identity.exists() {
        anyhow::bail!(
            "{} has no identity; create one with `zmesh node init --dir {}`",
            args.dir.display(),
            args.dir.display()
        );
    }
    let config = zmesh_node::load_config(&args.dir, &args.overrides)?;
    init_logging(&config.log.level);
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("cannot watch SIGTERM: {e}");
                    return std::future::pending().await;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    };
    zmesh_node::run(&args.dir, config, shutdown).await.context("node stopped with an error")
}
