//! The names a fieldless enum is stored, configured and logged by.

/// Gives a fieldless enum its names from one list: `as_str`, `parse` (its
/// inverse; `None` for a name not listed) and `ALL`, every variant in the
/// order listed. With the one list, a variant cannot get a name that does
/// not parse back.
#[macro_export]
macro_rules! enum_names {
    ($type:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $type {
            pub const ALL: [Self; [$($name),+].len()] = [$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }

            pub fn parse(name: &str) -> Option<Self> {
                Self::ALL.into_iter().find(|v| v.as_str() == name)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Phase {
        Waxing,
        Full,
    }

    crate::enum_names!(Phase {
        Waxing => "waxing",
        Full => "full",
    });

    #[test]
    fn every_name_parses_back_to_its_variant() {
        assert_eq!(Phase::ALL, [Phase::Waxing, Phase::Full]);
        for phase in Phase::ALL {
            assert_eq!(Phase::parse(phase.as_str()), Some(phase));
        }
        assert_eq!(Phase::parse("new"), None);
    }
}
