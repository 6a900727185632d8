//! `zmesh id`, `put`, `get`, `rm`: the user's side of storage. Files are encrypted here, before
//! anything leaves the machine; relays and holders only ever see sealed chunks. The identity
//! and relay options are shared with the messaging commands (`msg.rs`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use zmesh_client::identity::{default_path, passphrase};
use zmesh_client::reconnect::{ReconnectPolicy, ReconnectingRelay, RelayDial};
use zmesh_client::relay::devnet_addrs;
use zmesh_client::{BlobId, ClientError, Identity, Multiaddr, Progress, ReconnectAttempt, Relay};
use zmesh_types::DataType;

#[derive(Args, Debug)]
pub struct IdentityArgs {
    /// The identity keystore [default: ~/.zmesh/identity].
    #[arg(long, value_name = "FILE")]
    pub(crate) identity: Option<PathBuf>,
    /// Read the keystore passphrase from the first line of FILE (else from ZMESH_PASSPHRASE).
    #[arg(long, value_name = "FILE")]
    pub(crate) passphrase_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct RelayArgs {
    /// The relay to use, e.g. /ip4/127.0.0.1/tcp/4001/p2p/12D3…; repeat it to name alternates,
    /// tried in order (and in turn when a lost connection is replaced).
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) relay: Vec<Multiaddr>,
    /// Use the first node of this devnet.json that answers (and the others in turn when a lost
    /// connection is replaced).
    #[arg(long, value_name = "FILE")]
    pub(crate) devnet: Option<PathBuf>,
}

/// [`RelayArgs`] for commands that need a relay only sometimes.
#[derive(Args, Debug)]
#[group(required = false, multiple = false)]
pub struct OptionalRelayArgs {
    /// The relay to ask when needed, e.g. /ip4/127.0.0.1/tcp/4001/p2p/12D3…; repeat it to name
    /// alternates, tried in order.
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) relay: Vec<Multiaddr>,
    /// Ask the first node of this devnet.json that answers.
    #[arg(long, value_name = "FILE")]
    pub(crate) devnet: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum IdCommand {
    /// Create a new identity (refuses to overwrite one) and print its address.
    New(IdentityArgs),
    /// Show the identity's address and public key (the key safety numbers are computed from).
    Show(IdShowArgs),
}

#[derive(Args, Debug)]
pub struct IdShowArgs {
    #[command(flatten)]
    identity: IdentityArgs,
    /// Print one JSON document: {"address", "public_key"}.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct PutArgs {
    /// The file to store.
    file: PathBuf,
    /// What the data is; fixes how long the mesh keeps it.
    #[arg(long = "type", default_value = "media", value_name = "message-backup|key-backup|media")]
    data_type: DataType,
    #[command(flatten)]
    relay: RelayArgs,
    #[command(flatten)]
    identity: IdentityArgs,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// The blob id `zmesh put` printed (32 hex characters).
    id: BlobId,
    /// Where to write the file (replaced atomically if it exists).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
    #[command(flatten)]
    relay: RelayArgs,
    #[command(flatten)]
    identity: IdentityArgs,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// The blob id `zmesh put` printed (32 hex characters).
    id: BlobId,
    #[command(flatten)]
    relay: RelayArgs,
    #[command(flatten)]
    identity: IdentityArgs,
}

impl IdentityArgs {
    pub(crate) fn path(&self) -> anyhow::Result<PathBuf> {
        Ok(match &self.identity {
            Some(p) => p.clone(),
            None => default_path()?,
        })
    }

    pub(crate) fn load(&self) -> anyhow::Result<Identity> {
        let pass = passphrase(self.passphrase_file.as_deref())?;
        Ok(Identity::load(&self.path()?, &pass)?)
    }
}

impl RelayArgs {
    /// A connection to the first relay that answers.
    pub(crate) async fn connect(&self) -> anyhow::Result<Relay> {
        Ok(self.connect_with_endpoints().await?.0)
    }

    /// A connection to the first relay that answers, replaced by the next that answers (with
    /// backoff, see [`ReconnectingRelay`]) whenever it is lost. Each attempt is printed on
    /// stderr. A request gives up after waiting `give_up` for a new connection.
    pub(crate) async fn connect_reconnecting(
        &self,
        give_up: Duration,
    ) -> anyhow::Result<ReconnectingRelay> {
        let (relay, endpoints, index) = self.connect_with_endpoints().await?;
        let policy = ReconnectPolicy { give_up, ..ReconnectPolicy::default() };
        Ok(ReconnectingRelay::new(RelayDial, relay, endpoints, index, policy)
            .with_observer(print_attempt))
    }

    /// The connection, every relay to try, and which of them answered.
    async fn connect_with_endpoints(&self) -> anyhow::Result<(Relay, Vec<Multiaddr>, usize)> {
        connect(&self.relay, self.devnet.as_deref())
            .await?
            .ok_or_else(|| anyhow::anyhow!("give --relay MULTIADDR or --devnet FILE"))
    }
}

impl OptionalRelayArgs {
    /// A connection, or `None` when neither option was given.
    pub(crate) async fn connect(&self) -> anyhow::Result<Option<Relay>> {
        Ok(connect(&self.relay, self.devnet.as_deref()).await?.map(|(relay, ..)| relay))
    }
}

fn print_attempt(attempt: &ReconnectAttempt) {
    eprintln!(
        "reconnecting to {} in {:.1} s (attempt {})",
        attempt.addr,
        attempt.delay.as_secs_f64(),
        attempt.number
    );
}

/// Connects to the first of the relays given that answers: the `--relay` addresses in order,
/// or the nodes of the `--devnet` file.
async fn connect(
    relays: &[Multiaddr],
    devnet: Option<&Path>,
) -> anyhow::Result<Option<(Relay, Vec<Multiaddr>, usize)>> {
    let endpoints = match (relays, devnet) {
        ([], None) => return Ok(None),
        ([], Some(file)) => devnet_addrs(file)?,
        (relays, _) => relays.to_vec(),
    };
    match Relay::connect_first(&endpoints).await {
        Ok((relay, index)) => Ok(Some((relay, endpoints, index))),
        Err((tried, last)) => match (relays, devnet) {
            // One relay: its own error says it all.
            ([_], _) => anyhow::bail!("{last}"),
            ([], Some(path)) => {
                Err(ClientError::NoRelay { path: path.to_owned(), tried, last }.into())
            }
            _ => anyhow::bail!("none of the {tried} relays answered; last error: {last}"),
        },
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Prints progress on stderr, for blobs of more than one chunk only.
fn report(verb: &'static str) -> impl FnMut(&Progress) {
    move |p| {
        if let Some(total) = p.chunks_total.filter(|&t| t > 1) {
            eprintln!("{verb} chunk {}/{total} ({})", p.chunks_done, mib(p.bytes_done));
        }
    }
}

pub fn id(command: IdCommand) -> anyhow::Result<()> {
    match command {
        IdCommand::New(args) => {
            let path = args.path()?;
            let pass = passphrase(args.passphrase_file.as_deref())?;
            let identity = Identity::create(&path, &pass)?;
            println!("address   {}", identity.address());
            println!("identity  {}", path.display());
        }
        IdCommand::Show(args) => {
            let identity = args.identity.load()?;
            if args.json {
                let doc = serde_json::json!({
                    "address": identity.address().to_hex(),
                    "public_key": identity.public_key_hex(),
                });
                println!("{doc}");
            } else {
                println!("address     {}", identity.address());
                println!("public key  {}", identity.public_key_hex());
                println!(
                    "(safety numbers are computed from the public keys: compare the output of \
                     `zmesh safety-number ADDRESS` with your contact's)"
                );
            }
        }
    }
    Ok(())
}

pub async fn put(args: PutArgs) -> anyhow::Result<()> {
    let identity = args.identity.load()?;
    check_readable(&args.file)?;
    let relay = args.relay.connect().await?;
    let stored =
        zmesh_client::put_file(&relay, &identity, &args.file, args.data_type, report("stored"))
            .await?;
    let m = &stored.manifest;
    let chunks = if m.chunks == 1 { "chunk" } else { "chunks" };
    println!("stored {} bytes in {} {chunks} as {}", m.size, m.chunks, stored.id);
    Ok(())
}

pub async fn get(args: GetArgs) -> anyhow::Result<()> {
    let identity = args.identity.load()?;
    let relay = args.relay.connect().await?;
    let m = zmesh_client::get(&relay, &identity, args.id, &args.output, report("fetched")).await?;
    println!("wrote {} bytes to {}", m.size, args.output.display());
    Ok(())
}

pub async fn rm(args: RmArgs) -> anyhow::Result<()> {
    let identity = args.identity.load()?;
    let relay = args.relay.connect().await?;
    let shards = zmesh_client::rm(&relay, &identity, args.id).await?;
    println!("deleted blob {} ({shards} shards)", args.id);
    Ok(())
}

/// Fails before connecting if the file cannot be read, so the error is about the file.
fn check_readable(path: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => anyhow::bail!("{} is not a regular file", path.display()),
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    }
}
