//! Domain values stored by name decode through their `parse`.

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
