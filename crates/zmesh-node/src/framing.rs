//! Reading and writing zmesh frames on libp2p streams, and the request-response codec built on
//! them. Lengths are checked against the message type's limit before the body is allocated.

use std::io;
use std::marker::PhantomData;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use zmesh_wire::{LEN_PREFIX, Message, WireError, encode_frame, frame_body_len};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("stream closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("malformed frame: {0}")]
    Wire(#[from] WireError),
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
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
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
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<M> {
        read_frame(io).await.map_err(invalid)
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
