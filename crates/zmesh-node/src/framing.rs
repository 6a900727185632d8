//! Reading and writing zmesh frames on libp2p streams, and the request-response codec built on
//! them. Lengths are checked against the message type's limit before the body is allocated.

use std::io;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use zmesh_wire::{LEN_PREFIX, Message, WireError, encode_frame, frame_body_len};

/// The most a frame read allocates before its bytes arrive.
const PREALLOC_MAX: usize = 64 * 1024;

/// Malformed requests read by every [`FrameCodec`] of this process. The codec does not know
/// the peer (libp2p's request-response only closes the stream when a read fails), so it counts
/// and logs here; the node exports the count.
static MALFORMED_REQUESTS: AtomicU64 = AtomicU64::new(0);

/// How many malformed requests have been read so far.
pub fn malformed_requests() -> u64 {
    MALFORMED_REQUESTS.load(Ordering::Relaxed)
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("stream closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("malformed frame: {0}")]
    Wire(#[from] WireError),
    #[error("frame cut short: {got} of {len} bytes")]
    Truncated { got: usize, len: usize },
}

/// Reads one frame. A frame of unknown type is consumed whole and reported as
/// `Wire(UnknownType)`, so the caller may skip it and keep reading.
pub async fn read_frame<M: Message, R: AsyncRead + Unpin>(r: &mut R) -> Result<M, FrameError> {
    let mut prefix = [0u8; LEN_PREFIX];
    match r.read_exact(&mut prefix).await {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        other => other?,
    }
    let len = frame_body_len::<M>(prefix)?;
    // Grow with the bytes that actually arrive: a length prefix alone (a peer announcing a
    // large frame and sending nothing) must not make us allocate the whole frame.
    let mut body = Vec::with_capacity(len.min(PREALLOC_MAX));
    r.take(len as u64).read_to_end(&mut body).await?;
    if body.len() < len {
        return Err(FrameError::Truncated { got: body.len(), len });
    }
    Ok(M::decode_body(&body)?)
}

pub async fn write_frame<M: Message, W: AsyncWrite + Unpin>(w: &mut W, msg: &M) -> io::Result<()> {
    w.write_all(&encode_frame(msg)).await?;
    w.flush().await
}

/// A request-response codec for a message type whose enum holds both requests and responses.
#[derive(Debug)]
pub struct FrameCodec<M>(PhantomData<fn() -> M>);

impl<M> Default for FrameCodec<M> {
    fn default() -> Self {
        FrameCodec(PhantomData)
    }
}

impl<M> Clone for FrameCodec<M> {
    fn clone(&self) -> Self {
        FrameCodec(PhantomData)
    }
}

fn invalid(e: FrameError) -> io::Error {
    match e {
        FrameError::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

impl<M: Message + Send + Sync + 'static> libp2p::request_response::Codec for FrameCodec<M> {
    type Protocol = StreamProtocol;
    type Request = M;
    type Response = M;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<M> {
        read_frame(io).await.map_err(|e| {
            if matches!(e, FrameError::Wire(_) | FrameError::Truncated { .. }) {
                // Only this request's stream closes: the peer's other streams carry on.
                MALFORMED_REQUESTS.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%protocol, "malformed request, stream closed: {e}");
            }
            invalid(e)
        })
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<M> {
        read_frame(io).await.map_err(invalid)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: M,
    ) -> io::Result<()> {
        write_frame(io, &req).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: M,
    ) -> io::Result<()> {
        write_frame(io, &res).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zmesh_wire::msg::MsgMessage;

    fn read(bytes: &[u8]) -> Result<MsgMessage, FrameError> {
        futures::executor::block_on(read_frame::<MsgMessage, _>(&mut &bytes[..]))
    }

    #[test]
    fn a_frame_cut_short_is_an_error_not_a_hang() {
        let mut bytes = (1u32 << 20).to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0x63; 10]);
        match read(&bytes) {
            Err(e @ FrameError::Truncated { got: 10, len: 1_048_576 }) => {
                assert_eq!(invalid(e).kind(), io::ErrorKind::InvalidData, "counts as malformed");
            }
            other => panic!("expected a cut-short error, got {other:?}"),
        }
    }

    #[test]
    fn oversized_garbage_and_empty_frames_are_refused() {
        let too_big = (u32::MAX).to_be_bytes();
        assert!(matches!(read(&too_big), Err(FrameError::Wire(_))));
        assert!(matches!(read(&[0, 0, 0, 3, 0xEE, 1, 2]), Err(FrameError::Wire(_))));
        assert!(matches!(read(&[0, 0]), Err(FrameError::Closed)));
        let ping = encode_frame(&MsgMessage::Resume { session_token: [7; 32] });
        assert_eq!(read(&ping).unwrap(), MsgMessage::Resume { session_token: [7; 32] });
    }
}
