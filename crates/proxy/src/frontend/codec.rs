//! [`BytesCodec`]: a gRPC codec that passes message bytes through unchanged.
//!
//! The proxy serves services it only knows from descriptors found at run time, so it neither
//! decodes nor re-encodes client messages: their bytes become an `Any`'s value as they are.

use bytes::{Buf as _, BufMut as _, Bytes};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Messages are their serialized bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct BytesCodec;

/// The encoding half of [`BytesCodec`].
#[derive(Clone, Copy, Debug, Default)]
pub struct BytesEncoder;

/// The decoding half of [`BytesCodec`].
#[derive(Clone, Copy, Debug, Default)]
pub struct BytesDecoder;

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesEncoder;
    type Decoder = BytesDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        BytesDecoder
    }
}

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for BytesDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
