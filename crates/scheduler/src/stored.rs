//! Columns whose domain type the `Any` driver cannot decode: a flag is a
//! BIGINT 0 or 1 on both backends, channels are a comma-separated list.
//! A field reads one with `#[sqlx(try_from = "Stored<i64>")]` (or
//! `Stored<String>`).

use sqlx::any::{AnyTypeInfo, AnyValueRef};
use sqlx::error::BoxDynError;
use sqlx::{Any, Decode, Type};

use crate::domain::{Channel, StopReason};

pub struct Stored<T>(T);

impl<T: Type<Any>> Type<Any> for Stored<T> {
    fn type_info() -> AnyTypeInfo {
        T::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        T::compatible(ty)
    }
}

impl<'r, T: Decode<'r, Any>> Decode<'r, Any> for Stored<T> {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        T::decode(value).map(Self)
    }
}

impl From<Stored<i64>> for bool {
    fn from(flag: Stored<i64>) -> Self {
        flag.0 != 0
    }
}

impl From<Stored<String>> for Vec<Channel> {
    fn from(list: Stored<String>) -> Self {
        Channel::parse_list(&list.0)
    }
}

impl From<String> for StopReason {
    fn from(stored: String) -> Self {
        Self::parse(&stored)
    }
}
