//! What a template and an agent started from one are called: the caller's
//! name when they give one, else the name the design already carries.

use agentshare_kit::Error;

use super::check_name;

/// A published template's name: the one asked for, trimmed, or the
/// version's own name.
pub fn template_name(requested: &str, version_name: &str) -> Result<String, Error> {
    let name = match requested.trim() {
        "" => version_name,
        name => name,
    };
    check_name(name).map_err(|why| Error::invalid("name", why))?;
    Ok(name.to_string())
}

/// A published template's description: the one asked for, or the version's
/// own.
pub fn template_description(requested: &str, version_description: &str) -> String {
    match requested {
        "" => version_description,
        text => text,
    }
    .to_string()
}

/// The name of an agent made from a template: the one asked for, trimmed,
/// or the template's.
pub fn agent_name_from_template(requested: &str, template_name: &str) -> Result<String, Error> {
    match requested.trim() {
        "" => Ok(template_name.to_string()),
        name => {
            check_name(name).map_err(|why| Error::invalid("name", why))?;
            Ok(name.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_takes_the_name_asked_for_or_the_versions() {
        assert_eq!(template_name("  Sales ", "Helper").expect("named"), "Sales");
        assert_eq!(template_name(" ", "Helper").expect("default"), "Helper");
        assert!(matches!(
            template_name(&"x".repeat(201), "Helper"),
            Err(Error::InvalidArgument(_))
        ));
        assert!(
            template_name("", "").is_err(),
            "a nameless version needs a name"
        );
        assert_eq!(template_description("", "Finds leads"), "Finds leads");
        assert_eq!(template_description(" mine", "Finds leads"), " mine");
    }

    #[test]
    fn an_agent_from_a_template_takes_the_name_asked_for_or_the_templates() {
        assert_eq!(
            agent_name_from_template(" Mine ", "Sales").expect("named"),
            "Mine"
        );
        assert_eq!(
            agent_name_from_template("", "Sales").expect("default"),
            "Sales"
        );
        assert!(agent_name_from_template(&"x".repeat(201), "Sales").is_err());
    }
}
