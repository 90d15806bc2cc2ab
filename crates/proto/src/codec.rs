//! The protobuf codec of every generated service: prost's, except that a
//! message that does not decode is INVALID_ARGUMENT rather than INTERNAL.
//! A server meets such a message only from a client that sent bad bytes,
//! which the client can fix, and INTERNAL must mean a bug of ours.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

/// Encodes `T` and decodes `U` as prost does.
#[derive(Debug, Clone)]
pub struct Codec<T, U> {
    _messages: PhantomData<(T, U)>,
}

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Self {
            _messages: PhantomData,
        }
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = CheckedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder {
            _message: PhantomData,
        }
    }
}

/// Decodes `U`, answering INVALID_ARGUMENT for bytes that are not one.
#[derive(Debug, Clone)]
pub struct CheckedDecoder<U> {
    _message: PhantomData<U>,
}

impl<U: Message + Default> Decoder for CheckedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| {
            Status::invalid_argument(format!(
                "the message is not a valid protobuf encoding of its type ({e}); send one your generated client encodes"
            ))
        })
    }
}
