//! `zmesh send`, `inbox`, `safety-number`: end-to-end-encrypted messages through a relay.
//! Messages are encrypted and sealed here; relays see the recipient's address and opaque
//! bytes, never the sender or the text.

use std::io::{IsTerminal, Read, Write};
use std::pin::Pin;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::json;
use zmesh_client::mail::{FollowOptions, Rejoined, Tally, fetch_identity_key, parse_address};
use zmesh_client::messenger::default_dir;
use zmesh_client::reconnect::DEFAULT_GIVE_UP;
use zmesh_client::{
    ClientError, Inbox, Incoming, Mailer, Messenger, Multiaddr, ReconnectingRelay, Via,
};
use zmesh_node::config::ConfigDuration;

use crate::client::{IdentityArgs, OptionalRelayArgs, RelayArgs};

#[derive(Args, Debug)]
pub struct SendArgs {
    /// The recipient's address: 64 hex characters, as `zmesh id show` prints it.
    address: String,
    /// The message. Read from stdin when omitted or `-` (one trailing newline is dropped).
    text: Option<String>,
    /// Print one JSON document: {"id", "status", "to"}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    relay: RelayArgs,
    #[command(flatten)]
    identity: IdentityArgs,
}

#[derive(Args, Debug)]
pub struct InboxArgs {
    /// Print one JSON object per line and message: {"id", "from", "text", "sent_at", "via"}
    /// (`sent_at` in Unix milliseconds, `via` "live" or "mailbox").
    #[arg(long)]
    json: bool,
    /// Keep running and print messages as they arrive, until SIGINT (Ctrl-C) or SIGTERM.
    #[arg(long)]
    follow: bool,
    /// With --follow: how often to check the mailbox again (e.g. 500ms, 5s, 1m).
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    resync: ConfigDuration,
    #[command(flatten)]
    relay: RelayArgs,
    #[command(flatten)]
    identity: IdentityArgs,
}

#[derive(Args, Debug)]
pub struct SafetyNumberArgs {
    /// The contact's address: 64 hex characters.
    address: String,
    /// Print one JSON document: {"address", "identity_key", "safety_number"}.
    #[arg(long)]
    json: bool,
    /// Needed only for someone you have not exchanged messages with: their key is then taken
    /// from the prekey bundle they published.
    #[command(flatten)]
    relay: OptionalRelayArgs,
    #[command(flatten)]
    identity: IdentityArgs,
}

/// How long `send` waits for a lost relay to come back (or another to answer).
const SEND_GIVE_UP: Duration = Duration::from_secs(60);

pub async fn send(args: SendArgs) -> anyhow::Result<()> {
    let recipient = parse_address(&args.address)?;
    let text = match args.text.as_deref() {
        None | Some("-") => read_stdin()?,
        Some(text) => text.to_owned(),
    };
    if text.is_empty() {
        anyhow::bail!("nothing to send: the message is empty");
    }
    let path = args.identity.path()?;
    let identity = args.identity.load()?;
    // A connection lost before the answer is replaced and the message sent again: the relay
    // may have taken it already, and the same id makes a second copy harmless.
    let relay = args.relay.connect_reconnecting(SEND_GIVE_UP).await?;
    let mut mailer = Mailer::open(relay, identity, &default_dir(&path))?;
    let report = mailer.send(&recipient, &text).await?;
    let id = hex(&report.id);
    if args.json {
        let doc = json!({"id": id, "status": report.status.as_str(), "to": args.address});
        println!("{doc}");
    } else {
        println!("{} {id}", report.status.as_str());
    }
    Ok(())
}

/// All of stdin as text, less one trailing newline (what `echo` adds).
fn read_stdin() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        eprintln!("reading the message from stdin; end it with Ctrl-D");
    }
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).context("reading the message from stdin")?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

pub async fn inbox(args: InboxArgs) -> anyhow::Result<()> {
    let resync = args.resync.0;
    if resync.is_zero() {
        anyhow::bail!("--resync must be longer than 0");
    }
    // Installed before anything else, so a signal during start-up is not lost; only when
    // following, so that otherwise Ctrl-C keeps its default effect.
    let mut shutdown: Pin<Box<dyn Future<Output = ()> + Send>> =
        if args.follow { Box::pin(shutdown_signal()?) } else { Box::pin(std::future::pending()) };
    let path = args.identity.path()?;
    let identity = args.identity.load()?;
    let relay = args.relay.connect_reconnecting(DEFAULT_GIVE_UP).await?;
    // Subscribed before the login, so no live message is turned away in between. Without
    // --follow, live messages are turned away and stay in the mailbox for the next time.
    let subscription = if args.follow { Some(relay.subscribe().await?) } else { None };
    let mut mailer = Mailer::open(relay, identity, &default_dir(&path))?;
    let mut out = Printer { json: args.json, tally: Tally::default() };
    start(&mut mailer, &mut out).await?;
    let Some(subscription) = subscription else {
        eprintln!("{}", summary(&out.tally));
        return Ok(());
    };
    eprintln!(
        "{} from the mailbox; following {} at {} (Ctrl-C to stop)",
        summary(&out.tally),
        hex(&mailer.address()),
        mailer.relay().link().addr()
    );
    let options = FollowOptions { resync, ..FollowOptions::default() };
    // A lost relay is replaced (with backoff, trying the other relays given in turn) and the
    // session taken up again there; every attempt is printed.
    mailer.follow_reconnecting(subscription, &mut out, options, shutdown.as_mut()).await?;
    eprintln!("{}", summary(&out.tally));
    Ok(())
}

/// Logs in, publishes the bundle and presence, and drains the mailbox.
async fn start(mailer: &mut Mailer<ReconnectingRelay>, out: &mut Printer) -> anyhow::Result<()> {
    mailer.login().await?;
    mailer.publish_bundle().await?;
    mailer.publish_presence().await?;
    let report = mailer.sync(out).await?;
    if report.stalled {
        eprintln!("warning: the relay stopped making progress through the mailbox; try again");
    }
    Ok(())
}

fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("watching SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("watching SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

fn summary(tally: &Tally) -> String {
    let mut line = match tally.messages {
        1 => "1 message".to_owned(),
        n => format!("{n} messages"),
    };
    if tally.rejected > 0 {
        line.push_str(&format!(" ({} skipped: could not be decrypted)", tally.rejected));
    }
    line
}

/// Writes messages to stdout, flushed one by one: a message is acknowledged to the relay only
/// after it was written. Counts what it printed and skipped, across reconnections.
struct Printer {
    json: bool,
    tally: Tally,
}

impl Inbox for Printer {
    fn message(&mut self, message: &Incoming, via: Via) -> zmesh_client::Result<()> {
        let line = if self.json {
            json!({
                "id": hex(&message.id),
                "from": hex(&message.from),
                "text": message.text,
                "sent_at": message.sent_at_ms,
                "via": via.as_str(),
            })
            .to_string()
        } else {
            format!(
                "{}  {}  {}",
                utc_time(message.sent_at_ms),
                hex(&message.from),
                printable(&message.text)
            )
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|error| ClientError::Io { context: "writing to stdout".into(), error })?;
        self.tally.messages += 1;
        Ok(())
    }

    fn rejected(&mut self, id: &[u8; 16], via: Via, error: &ClientError) {
        self.tally.rejected += 1;
        eprintln!("warning: skipped message {} ({}): {error}", hex(id), via.as_str());
    }

    fn warning(&mut self, error: &ClientError) {
        eprintln!("warning: {error}");
    }

    fn reconnected(&mut self, relay: &Multiaddr, how: Rejoined) {
        eprintln!("following again at {relay} ({})", how.as_str());
    }
}

pub async fn safety_number(args: SafetyNumberArgs) -> anyhow::Result<()> {
    let address = parse_address(&args.address)?;
    let path = args.identity.path()?;
    let identity = args.identity.load()?;
    if address == identity.address().0 {
        anyhow::bail!("that is your own address; a safety number is between you and a contact");
    }
    let messenger = Messenger::open(&identity, &default_dir(&path))?;
    let key = match messenger.contact_identity(&address) {
        Some(key) => key,
        None => match args.relay.connect().await? {
            Some(relay) => {
                fetch_identity_key(&relay, &address, zmesh_node::clock::unix_ms()).await?
            }
            None => anyhow::bail!(
                "{} is not a contact yet: give --relay MULTIADDR or --devnet FILE to fetch the \
                 key it published",
                args.address
            ),
        },
    };
    let number = messenger.safety_number(&key)?;
    if args.json {
        let doc =
            json!({"address": hex(&address), "identity_key": hex(&key), "safety_number": number});
        println!("{doc}");
    } else {
        println!("{number}");
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Control characters escaped, so a message cannot move the cursor, recolour the terminal or
/// fake another line of output.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix milliseconds.
fn utc_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (mut days, rest) = (secs / 86_400, secs % 86_400);
    let mut year = 1970;
    loop {
        let len = if is_leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let feb = if is_leap(year) { 29 } else { 28 };
    let mut month = 1;
    for len in [31, feb, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] {
        if days < len {
            break;
        }
        days -= len;
        month += 1;
    }
    let (h, m, s) = (rest / 3600, rest / 60 % 60, rest % 60);
    format!("{year:04}-{month:02}-{:02}T{h:02}:{m:02}:{s:02}Z", days + 1)
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(utc_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_time(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc_time(1_709_251_199_999), "2024-02-29T23:59:59Z");
        assert_eq!(utc_time(1_735_689_600_000), "2025-01-01T00:00:00Z");
        assert_eq!(utc_time(4_107_542_400_000), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("two\nlines\u{1b}[31m ✓"), "two\\nlines\\u{1b}[31m ✓");
    }

    #[test]
    fn summaries_count_messages_and_skips() {
        let one = Tally { messages: 1, ..Tally::default() };
        assert_eq!(summary(&one), "1 message");
        let some = Tally { messages: 3, duplicates: 1, rejected: 2 };
        assert_eq!(summary(&some), "3 messages (2 skipped: could not be decrypted)");
    }
}
