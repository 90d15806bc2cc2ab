//! What a draft may hold: its edits through a field mask, and every rule a
//! design must meet, each violation naming its field.

use std::collections::HashSet;

use agentshare_kit::Error;
use agentshare_kit::error::FieldViolation;
use agentshare_proto::registry::v1 as pb;

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_INSTRUCTIONS_BYTES: usize = 100 * 1024;
pub const MAX_TOOLS: usize = 128;
pub const MAX_KEY_CHARS: usize = 64;
pub const MAX_LABEL_CHARS: usize = 200;
pub const MAX_FILE_NAME_CHARS: usize = 255;
pub const MAX_TASK_BYTES: usize = 100 * 1024;
pub const MAX_NOTES_CHARS: usize = 2000;

/// A draft edit: the fields named in `paths` are taken from `update`.
pub fn apply_mask(
    draft: &mut pb::AgentDraft,
    update: &pb::AgentDraft,
    paths: &[String],
) -> Result<(), Error> {
    if paths.is_empty() {
        return Err(Error::invalid(
            "update_mask",
            "name the fields to change, for example `name` or `tools`; `*` replaces the whole draft",
        ));
    }
    let mut violations = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        match path.as_str() {
            "*" => *draft = update.clone(),
            "name" => draft.name.clone_from(&update.name),
            "description" => draft.description.clone_from(&update.description),
            "instructions" => draft.instructions.clone_from(&update.instructions),
            "model" => draft.model.clone_from(&update.model),
            "model.provider" | "model.model" | "model.parameters" => {
                let from = update.model.clone().unwrap_or_default();
                let model = draft.model.get_or_insert_with(Default::default);
                match path.as_str() {
                    "model.provider" => model.provider = from.provider,
                    "model.model" => model.model = from.model,
                    _ => model.parameters = from.parameters,
                }
            }
            "tools" => draft.tools.clone_from(&update.tools),
            "files" => draft.files.clone_from(&update.files),
            "automations" => draft.automations.clone_from(&update.automations),
            _ => violations.push(FieldViolation::new(
                format!("update_mask.paths[{i}]"),
                "is not a field of the draft: use name, description, instructions, model, \
                 model.provider, model.model, model.parameters, tools, files, automations or *",
            )),
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(violations))
    }
}

/// Checks every rule of a draft and reports all violations at once, each
/// naming its field under `prefix` (`draft`, or `name` for a bare name).
/// Returns the draft as stored: the name trimmed.
pub fn validate_draft(prefix: &str, mut draft: pb::AgentDraft) -> Result<pb::AgentDraft, Error> {
    let mut v = Vec::new();
    let field = |name: &str| format!("{prefix}.{name}");
    draft.name = draft.name.trim().to_string();
    if let Err(why) = check_name(&draft.name) {
        v.push(FieldViolation::new(field("name"), why));
    }
    if draft.instructions.len() > MAX_INSTRUCTIONS_BYTES {
        v.push(FieldViolation::new(
            field("instructions"),
            "must be at most 100 KiB",
        ));
    }
    check_tools(&draft.tools, &field("tools"), &mut v);
    check_files(&draft.files, &field("files"), &mut v);
    check_automations(&draft.automations, &field("automations"), &mut v);
    if v.is_empty() {
        Ok(draft)
    } else {
        Err(Error::InvalidArgument(v))
    }
}

/// A display name: not blank, at most 200 characters.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("must be at most {MAX_NAME_CHARS} characters"));
    }
    Ok(())
}

/// Integration and automation keys: `a-z`, `0-9`, `_` and `-`, starting with
/// a letter, 1 to 64 characters. Stable keys outlive versions, so they stay
/// plain.
fn check_key(key: &str) -> Result<(), String> {
    let starts_with_letter = key.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    let plain = key
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !starts_with_letter || !plain || key.len() > MAX_KEY_CHARS {
        return Err(format!(
            "must be 1 to {MAX_KEY_CHARS} characters of a-z, 0-9, _ and -, starting with a letter"
        ));
    }
    Ok(())
}

/// A stable key of one entry of a list (a tool's integration key, an
/// automation's key): well formed, and taken by no earlier entry. `kind` and
/// `holder` name the key and the entry in the message.
fn check_unique_key<'d>(
    key: &'d str,
    taken: &mut HashSet<&'d str>,
    (kind, holder): (&str, &str),
    field: String,
    v: &mut Vec<FieldViolation>,
) {
    if let Err(why) = check_key(key) {
        v.push(FieldViolation::new(field, why));
    } else if !taken.insert(key) {
        v.push(FieldViolation::new(
            field,
            format!("duplicate {kind} key {key:?}; each {holder} needs its own"),
        ));
    }
}

fn check_label(label: &str, field: String, v: &mut Vec<FieldViolation>) {
    if label.chars().count() > MAX_LABEL_CHARS {
        v.push(FieldViolation::new(
            field,
            format!("must be at most {MAX_LABEL_CHARS} characters"),
        ));
    }
}

fn check_tools(tools: &[pb::Tool], field: &str, v: &mut Vec<FieldViolation>) {
    if tools.len() > MAX_TOOLS {
        v.push(FieldViolation::new(
            field,
            format!("at most {MAX_TOOLS} tools; remove some"),
        ));
    }
    let mut keys = HashSet::new();
    for (i, tool) in tools.iter().enumerate() {
        let at = |name: &str| format!("{field}[{i}].{name}");
        let key = &tool.integration_key;
        check_unique_key(
            key,
            &mut keys,
            ("integration", "tool"),
            at("integration_key"),
            v,
        );
        if tool.provider.trim().is_empty() {
            v.push(FieldViolation::new(at("provider"), "must not be empty"));
        }
        match pb::IntegrationScope::try_from(tool.scope) {
            Ok(pb::IntegrationScope::Shared) => {}
            Ok(pb::IntegrationScope::UserConfigured) => {
                if !tool.connection_id.is_empty() {
                    v.push(FieldViolation::new(
                        at("connection_id"),
                        "must be empty for a USER_CONFIGURED tool: each user binds their own",
                    ));
                }
            }
            _ => v.push(FieldViolation::new(
                at("scope"),
                "must be INTEGRATION_SCOPE_SHARED or INTEGRATION_SCOPE_USER_CONFIGURED",
            )),
        }
        check_label(&tool.display_name, at("display_name"), v);
    }
}

fn check_files(files: &[pb::LinkedFile], field: &str, v: &mut Vec<FieldViolation>) {
    let mut names = HashSet::new();
    for (i, file) in files.iter().enumerate() {
        let at = |name: &str| format!("{field}[{i}].{name}");
        if file.name.trim().is_empty() || file.name.chars().count() > MAX_FILE_NAME_CHARS {
            v.push(FieldViolation::new(
                at("name"),
                format!("must be 1 to {MAX_FILE_NAME_CHARS} characters"),
            ));
        } else if !names.insert(file.name.as_str()) {
            v.push(FieldViolation::new(
                at("name"),
                format!("duplicate file name {:?}", file.name),
            ));
        }
        let hash_ok = file.content_hash.split_once(':').is_some_and(|(alg, hex)| {
            !alg.is_empty()
                && alg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && !hex.is_empty()
                && hex
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        });
        if !hash_ok {
            v.push(FieldViolation::new(
                at("content_hash"),
                "must be `<algorithm>:<lowercase hex>`, for example `sha256:9f86d0…`",
            ));
        }
        if file.size_bytes < 0 {
            v.push(FieldViolation::new(
                at("size_bytes"),
                "must not be negative",
            ));
        }
        if file.uri.trim().is_empty() {
            v.push(FieldViolation::new(at("uri"), "must not be empty"));
        }
    }
}

fn check_automations(automations: &[pb::Automation], field: &str, v: &mut Vec<FieldViolation>) {
    let mut keys = HashSet::new();
    for (i, automation) in automations.iter().enumerate() {
        let at = |name: &str| format!("{field}[{i}].{name}");
        let key = &automation.key;
        check_unique_key(key, &mut keys, ("automation", "automation"), at("key"), v);
        check_label(&automation.display_name, at("display_name"), v);
        if let Err((name, why)) = check_schedule(automation.schedule.as_ref()) {
            v.push(FieldViolation::new(at(&format!("schedule{name}")), why));
        }
        if automation.time_zone.parse::<chrono_tz::Tz>().is_err() {
            v.push(FieldViolation::new(
                at("time_zone"),
                "is not an IANA time zone; use a name such as `Europe/Berlin` or `UTC`",
            ));
        }
        if automation.task.trim().is_empty() {
            v.push(FieldViolation::new(at("task"), "must not be empty"));
        } else if automation.task.len() > MAX_TASK_BYTES {
            v.push(FieldViolation::new(at("task"), "must be at most 100 KiB"));
        }
        for (j, channel) in automation.suggested_channels.iter().enumerate() {
            let known = pb::NotificationChannel::try_from(*channel)
                .is_ok_and(|c| c != pb::NotificationChannel::Unspecified);
            if !known {
                v.push(FieldViolation::new(
                    at(&format!("suggested_channels[{j}]")),
                    "must be WEB, EMAIL or PUSH",
                ));
            }
        }
        if pb::CatchUpPolicy::try_from(automation.catch_up_policy).is_err() {
            v.push(FieldViolation::new(
                at("catch_up_policy"),
                "unknown catch-up policy",
            ));
        }
    }
}

/// A schedule that can fire; the error names the sub-field (`.cron.expression`).
fn check_schedule(schedule: Option<&pb::Schedule>) -> Result<(), (&'static str, String)> {
    use pb::schedule::Kind;
    let time = |time: Option<&pb::TimeOfDay>, name: &'static str| match time {
        Some(t) if (0..24).contains(&t.hours) && (0..60).contains(&t.minutes) => Ok(()),
        _ => Err((name, "needs hours 0 to 23 and minutes 0 to 59".to_string())),
    };
    match schedule.and_then(|s| s.kind.as_ref()) {
        None => Err((
            "",
            "set exactly one of cron, hourly, daily or weekly".to_string(),
        )),
        Some(Kind::Cron(cron)) => parse_cron(&cron.expression).map(drop).map_err(|why| {
            (
                ".cron.expression",
                format!(
                    "does not parse as a five-field cron expression ({why}); for example `0 8 * * 1-5`"
                ),
            )
        }),
        Some(Kind::Hourly(hourly)) if (0..60).contains(&hourly.minute) => Ok(()),
        Some(Kind::Hourly(_)) => Err((".hourly.minute", "must be 0 to 59".to_string())),
        Some(Kind::Daily(daily)) => time(daily.time_of_day.as_ref(), ".daily.time_of_day"),
        Some(Kind::Weekly(weekly)) => {
            let day = pb::DayOfWeek::try_from(weekly.day_of_week)
                .is_ok_and(|d| d != pb::DayOfWeek::Unspecified);
            if !day {
                return Err((".weekly.day_of_week", "must be a day of the week".to_string()));
            }
            time(weekly.time_of_day.as_ref(), ".weekly.time_of_day")
        }
    }
}

/// Classic cron: minute, hour, day of month, month, day of week, read as
/// the scheduler reads it, and refused if it never fires.
pub fn parse_cron(expression: &str) -> Result<croner::Cron, String> {
    agentshare_kit::cron::parse(expression)
}

/// The SHARED tools that name no builder connection: a version may not have
/// them.
pub fn tools_without_connection(draft: &pb::AgentDraft) -> Vec<String> {
    draft
        .tools
        .iter()
        .filter(|t| t.scope == pb::IntegrationScope::Shared as i32 && t.connection_id.is_empty())
        .map(|t| t.integration_key.clone())
        .collect()
}

/// The notes stored with a version.
pub fn check_notes(notes: &str) -> Result<(), Error> {
    if notes.chars().count() > MAX_NOTES_CHARS {
        return Err(Error::invalid(
            "notes",
            format!("must be at most {MAX_NOTES_CHARS} characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn fields(error: Error) -> Vec<String> {
        let Error::InvalidArgument(violations) = error else {
            panic!("expected INVALID_ARGUMENT, got {error:?}");
        };
        violations.into_iter().map(|v| v.field).collect()
    }

    pub(crate) fn tool(key: &str, scope: pb::IntegrationScope, connection: &str) -> pb::Tool {
        pb::Tool {
            integration_key: key.into(),
            provider: "brave".into(),
            scope: scope as i32,
            connection_id: connection.into(),
            display_name: String::new(),
        }
    }

    fn automation(key: &str, schedule: pb::schedule::Kind, zone: &str) -> pb::Automation {
        pb::Automation {
            key: key.into(),
            schedule: Some(pb::Schedule {
                kind: Some(schedule),
            }),
            time_zone: zone.into(),
            task: "Summarise".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_draft_needs_a_name_and_bounded_instructions() {
        let error = validate_draft(
            "draft",
            pb::AgentDraft {
                name: " ".into(),
                instructions: "x".repeat(MAX_INSTRUCTIONS_BYTES + 1),
                ..Default::default()
            },
        )
        .expect_err("invalid");
        assert_eq!(fields(error), ["draft.name", "draft.instructions"]);
    }

    #[test]
    fn keys_are_unique_and_schedules_parse_in_known_zones() {
        use pb::schedule::Kind;
        let cron = |e: &str| {
            Kind::Cron(pb::CronSchedule {
                expression: e.into(),
            })
        };
        let error = validate_draft(
            "draft",
            pb::AgentDraft {
                name: "A".into(),
                tools: vec![
                    tool("crm", pb::IntegrationScope::Shared, ""),
                    tool("crm", pb::IntegrationScope::UserConfigured, ""),
                ],
                automations: vec![
                    automation("daily", cron("0 8 * * 1-5"), "Europe/Berlin"),
                    automation("daily", cron("0 8 * *"), "Mars/Olympus"),
                ],
                ..Default::default()
            },
        )
        .expect_err("invalid");
        assert_eq!(
            fields(error),
            [
                "draft.tools[1].integration_key",
                "draft.automations[1].key",
                "draft.automations[1].schedule.cron.expression",
                "draft.automations[1].time_zone",
            ]
        );
        assert!(parse_cron("*/5 * * * *").is_ok());
        assert!(
            parse_cron("0 0 8 * * *").is_err(),
            "six fields are not classic cron"
        );
        assert!(parse_cron("61 * * * *").is_err());
    }

    #[test]
    fn at_most_128_tools() {
        let tools = (0..=MAX_TOOLS)
            .map(|i| tool(&format!("t{i}"), pb::IntegrationScope::UserConfigured, ""))
            .collect();
        let error = validate_draft(
            "draft",
            pb::AgentDraft {
                name: "A".into(),
                tools,
                ..Default::default()
            },
        )
        .expect_err("too many");
        assert_eq!(fields(error), ["draft.tools"]);
    }
}
