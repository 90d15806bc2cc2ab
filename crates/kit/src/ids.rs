//! Ids. Every id agentshare hands out is a UUID (v7, so ids sort by
//! creation), and every id a client sends back is read by the one parser
//! here, so each service answers a malformed id the same way: before any
//! lookup, INVALID_ARGUMENT naming the field, never NOT_FOUND, and never
//! repeating what was sent.

use crate::Error;

/// A new id: a UUID v7 in its hyphenated lower-case form.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The id a client sent in `field`, in the form agentshare stores
/// (hyphenated, lower case), or INVALID_ARGUMENT naming the field. The
/// message never repeats the input: an id that is not one may be anything.
pub fn parse(field: &str, value: &str) -> Result<String, Error> {
    if value.is_empty() {
        return Err(Error::invalid(field, "is required: pass the id (a UUID)"));
    }
    parse_optional(field, value)
}

/// Like [`parse`] for a field that may be left empty; empty stays empty.
pub fn parse_optional(field: &str, value: &str) -> Result<String, Error> {
    if value.is_empty() {
        return Ok(String::new());
    }
    uuid::Uuid::try_parse(value)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| {
            Error::invalid(
                field,
                "must be a UUID such as 0190f3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b: \
                 pass the id exactly as agentshare returned it",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FieldViolation;

    fn violation(result: Result<String, Error>) -> FieldViolation {
        match result {
            Err(Error::InvalidArgument(mut violations)) if violations.len() == 1 => {
                violations.remove(0)
            }
            other => panic!("expected one field violation, got {other:?}"),
        }
    }

    #[test]
    fn ids_come_back_in_the_stored_form() {
        let id = new_id();
        assert_eq!(parse("agent_id", &id), Ok(id.clone()));
        assert_eq!(parse("agent_id", &id.to_uppercase()), Ok(id.clone()));
        assert_eq!(parse("agent_id", &id.replace('-', "")), Ok(id.clone()));
        assert_eq!(parse_optional("session_id", ""), Ok(String::new()));
    }

    #[test]
    fn a_bad_id_names_its_field_and_never_echoes_the_input() {
        let hostile = "not-a-uuid'; DROP TABLE agents;--";
        for (value, needle) in [
            (hostile, "must be a UUID"),
            (" 0190f3c4-0000-7f80-9a1b-2c3d4e5f6a7b", "must be a UUID"),
            ("", "is required"),
        ] {
            let bad = violation(parse("agent_id", value));
            assert_eq!(bad.field, "agent_id");
            assert!(bad.description.contains(needle), "{}", bad.description);
            if !value.trim().is_empty() {
                assert!(!bad.description.contains(value.trim()));
            }
        }
        let bad = violation(parse_optional("project_id", hostile));
        assert_eq!(bad.field, "project_id");
        assert!(!bad.description.contains("DROP"));
    }
}
