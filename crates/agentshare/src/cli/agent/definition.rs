//! An agent's definition file: its design (`AgentDraft`) in the proto3
//! JSON mapping, as YAML or JSON, read for `agent create|update -f` and
//! printed back by `agent show --definition`.

use agentshare_proto::registry::v1 as pb;

use crate::cli::failure::{Failure, Outcome};
use crate::cli::output::{Format, Output, from_json, to_json};
use crate::cli::read_input;

/// A definition file read as an agent design.
#[derive(Debug)]
pub struct Definition {
    pub draft: pb::AgentDraft,
    /// The top-level fields the file names, as update-mask paths.
    pub fields: Vec<String>,
    /// The file, for messages.
    pub source: String,
}

impl Definition {
    pub fn read(file: &str) -> Outcome<Self> {
        let source = if file == "-" {
            "stdin".to_string()
        } else {
            file.to_string()
        };
        let text = read_input(file)?;
        Self::parse(&text, &source)
    }

    pub fn parse(text: &str, source: &str) -> Outcome<Self> {
        // JSON is read as JSON, so tabs and the like never trip the YAML
        // reader; everything else is YAML.
        let document: serde_json::Value = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| Failure::usage(format!("{source}: {e}")))?
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| Failure::usage(format!("{source}: {e}")))?
        };
        let Some(object) = document.as_object() else {
            return Err(Failure::usage(format!(
                "{source}: an agent definition is a mapping of its fields (name, description, \
                 instructions, model, tools, files, automations)"
            )));
        };
        let fields = object.keys().map(|key| mask_path(key)).collect();
        let draft = from_json::<pb::AgentDraft>(&document, source)?;
        Ok(Self {
            draft,
            fields,
            source: source.to_string(),
        })
    }
}

/// A top-level field as the update mask names it: the proto field name,
/// whichever spelling (`camelCase` JSON or `snake_case`) the file used.
fn mask_path(key: &str) -> String {
    let mut path = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            path.push('_');
            path.push(c.to_ascii_lowercase());
        } else {
            path.push(c);
        }
    }
    path
}

pub fn print_definition(draft: Option<&pb::AgentDraft>, out: Output) -> Outcome {
    let json = to_json(&draft.cloned().unwrap_or_default())?;
    let text = if out.format == Format::Json {
        let mut text = serde_json::to_string_pretty(&json)
            .map_err(|e| Failure::local(format!("cannot print JSON: {e}")))?;
        text.push('\n');
        text
    } else {
        serde_yaml_ng::to_string(&in_design_order(json)?)
            .map_err(|e| Failure::local(format!("cannot print YAML: {e}")))?
    };
    out.write(&text)
}

/// A design's fields in the order people write them (name first, as in
/// the proto), not alphabetically; fields added later come last.
fn in_design_order(json: serde_json::Value) -> Outcome<serde_yaml_ng::Value> {
    const ORDER: [&str; 7] = [
        "name",
        "description",
        "instructions",
        "model",
        "tools",
        "files",
        "automations",
    ];
    let serde_json::Value::Object(mut fields) = json else {
        return serde_yaml_ng::to_value(json)
            .map_err(|e| Failure::local(format!("cannot print YAML: {e}")));
    };
    let mut ordered = serde_yaml_ng::Mapping::new();
    let known: Vec<_> = ORDER
        .iter()
        .filter_map(|key| fields.remove_entry(*key))
        .collect();
    for (key, value) in known.into_iter().chain(fields) {
        let value = serde_yaml_ng::to_value(value)
            .map_err(|e| Failure::local(format!("cannot print YAML: {e}")))?;
        ordered.insert(serde_yaml_ng::Value::String(key), value);
    }
    Ok(serde_yaml_ng::Value::Mapping(ordered))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_definition_reads_as_a_draft_and_names_its_fields_for_the_mask() {
        let yaml = "name: Research agent\nmodel:\n  provider: anthropic\n  model: claude-sonnet-4\n\
                    tools:\n  - integrationKey: crm\n    provider: crm\n    scope: INTEGRATION_SCOPE_USER_CONFIGURED\n";
        let definition = Definition::parse(yaml, "agent.yaml").unwrap();
        assert_eq!(definition.draft.name, "Research agent");
        assert_eq!(
            definition.draft.tools[0].scope,
            pb::IntegrationScope::UserConfigured as i32
        );
        let mut fields = definition.fields;
        fields.sort();
        assert_eq!(fields, ["model", "name", "tools"]);

        let json = r#"{"name": "From JSON", "instructions": "Be brief."}"#;
        let definition = Definition::parse(json, "agent.json").unwrap();
        assert_eq!(definition.draft.instructions, "Be brief.");
    }

    #[test]
    fn a_field_that_does_not_fit_is_a_usage_error_naming_the_file_and_field() {
        for (text, field) in [
            ("name: A\ncolour: red\n", "colour"),
            ("- name: A\n", "mapping"),
            (
                "name: A\ntools:\n  - scope: INTEGRATION_SCOPE_SHARED\n  - scope: SHARD\n",
                "tools[1].scope: unrecognized enum value 'SHARD'",
            ),
            (
                "name: A\nautomations:\n  - key: k\n    cadence: daily\n",
                "automations[0].cadence",
            ),
            ("name: A\nmodel:\n  parameters: 3\n", "model.parameters"),
            (
                "name: A\nautomations:\n  - suggestedChannels: [NOTIFICATION_CHANNEL_WEB, SMS]\n",
                "automations[0].suggestedChannels[1]",
            ),
            ("name: [unclosed\n", "agent.yaml"),
        ] {
            let refused = Definition::parse(text, "agent.yaml");
            let Err(Failure::Usage(why)) = refused else {
                panic!("{text}: {refused:?}");
            };
            assert!(
                why.contains("agent.yaml") && why.contains(field),
                "{text}: {why}"
            );
        }
    }

    #[test]
    fn mask_paths_are_proto_field_names() {
        assert_eq!(mask_path("instructions"), "instructions");
        assert_eq!(mask_path("someField"), "some_field");
    }
}
