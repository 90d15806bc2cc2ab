//! A column as both backends store it, for the fields whose domain type is
//! not one the `Any` driver decodes: a flag is a BIGINT 0 or 1, a list is
//! JSON text. `#[sqlx(try_from = "Stored<i64>")]` on a `bool` field reads a
//! flag.

use sqlx::any::{AnyTypeInfo, AnyValueRef};
use sqlx::error::BoxDynError;
use sqlx::{Any, Decode, Type};

pub struct Stored<T>(pub T);

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

/// `TryFrom<String>` for the domain values stored by name, through their
/// `parse`, so a field of that type decodes with `#[sqlx(try_from =
/// "String")]`.
macro_rules! by_name {
    ($($ty:ty: $what:literal),+ $(,)?) => {$(
        impl TryFrom<String> for $ty {
            type Error = String;

            fn try_from(stored: String) -> Result<Self, String> {
                Self::parse(&stored).ok_or_else(|| format!("stored {} {stored:?}", $what))
            }
        }
    )+};
}
pub(crate) use by_name;
