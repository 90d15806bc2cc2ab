//! Field-level differences between two designs, as DiffVersions reports
//! them. List entries are matched by their key, not their position, so a
//! reordered list is no change and a renamed key is one entry removed and one
//! added.

use std::collections::BTreeMap;

use agentshare_proto::registry::v1 as pb;
use serde_json::{Value, json};

/// The changes from `base` to `target`, ordered by path.
pub fn diff(base: &pb::AgentDraft, target: &pb::AgentDraft) -> Vec<pb::FieldChange> {
    let (base, target) = (flatten(base), flatten(target));
    let mut changes = Vec::new();
    // A whole entry present on one side only is one change, not one per field.
    let whole = |path: &str, other: &BTreeMap<String, Value>| -> Option<String> {
        if !["tools[", "files[", "automations["]
            .iter()
            .any(|list| path.starts_with(list))
        {
            return None;
        }
        // Field names never hold `].`; file names may, so split at the last.
        let entry = path
            .rsplit_once("].")
            .map(|(entry, _)| format!("{entry}]"))?;
        let fields = format!("{entry}.");
        (!other.keys().any(|p| p.starts_with(&fields))).then_some(entry)
    };
    let mut whole_entries = BTreeMap::new();
    for (path, value) in &base {
        match target.get(path) {
            Some(other) if other == value => {}
            Some(other) => changes.push(change(path, Some(value), Some(other))),
            None => match whole(path, &target) {
                Some(entry) => {
                    whole_entries.insert(entry, pb::FieldChangeKind::Removed);
                }
                None => changes.push(change(path, Some(value), None)),
            },
        }
    }
    for (path, value) in &target {
        if base.contains_key(path) {
            continue;
        }
        match whole(path, &base) {
            Some(entry) => {
                whole_entries.insert(entry, pb::FieldChangeKind::Added);
            }
            None => changes.push(change(path, None, Some(value))),
        }
    }
    for (entry, kind) in whole_entries {
        let side = |map: &BTreeMap<String, Value>| entry_value(map, &entry);
        changes.push(match kind {
            pb::FieldChangeKind::Removed => change(&entry, Some(&side(&base)), None),
            _ => change(&entry, None, Some(&side(&target))),
        });
    }
    changes.sort_by(|a, b| a.field_path.cmp(&b.field_path));
    changes
}

fn change(path: &str, base: Option<&Value>, target: Option<&Value>) -> pb::FieldChange {
    let kind = match (base, target) {
        (None, _) => pb::FieldChangeKind::Added,
        (_, None) => pb::FieldChangeKind::Removed,
        _ => pb::FieldChangeKind::Modified,
    };
    pb::FieldChange {
        field_path: path.to_string(),
        kind: kind as i32,
        base_value: base.map(to_proto_value),
        target_value: target.map(to_proto_value),
    }
}

/// The fields of one list entry as a JSON object.
fn entry_value(map: &BTreeMap<String, Value>, entry: &str) -> Value {
    let prefix = format!("{entry}.");
    Value::Object(
        map.iter()
            .filter_map(|(path, value)| {
                path.strip_prefix(&prefix)
                    .map(|field| (field.to_string(), value.clone()))
            })
            .collect(),
    )
}

/// Every set field of a design under its path; empty fields are absent, as
/// proto3 has them.
fn flatten(draft: &pb::AgentDraft) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    put_text(&mut out, "name".into(), &draft.name);
    put_text(&mut out, "description".into(), &draft.description);
    put_text(&mut out, "instructions".into(), &draft.instructions);
    if let Some(model) = &draft.model {
        put_text(&mut out, "model.provider".into(), &model.provider);
        put_text(&mut out, "model.model".into(), &model.model);
        for (key, value) in model.parameters.iter().flat_map(|p| &p.fields) {
            out.insert(format!("model.parameters.{key}"), from_proto_value(value));
        }
    }
    for tool in &draft.tools {
        let at = |field: &str| format!("tools[{}].{field}", tool.integration_key);
        let scope = pb::IntegrationScope::try_from(tool.scope)
            .map_or("INTEGRATION_SCOPE_UNSPECIFIED", |s| s.as_str_name());
        put_text(&mut out, at("provider"), &tool.provider);
        put_text(&mut out, at("scope"), scope);
        put_text(&mut out, at("connection_id"), &tool.connection_id);
        put_text(&mut out, at("display_name"), &tool.display_name);
    }
    for file in &draft.files {
        let name = Value::String(file.name.clone()).to_string();
        let at = |field: &str| format!("files[{name}].{field}");
        put_text(&mut out, at("content_hash"), &file.content_hash);
        put_text(&mut out, at("uri"), &file.uri);
        out.insert(at("size_bytes"), json!(file.size_bytes));
    }
    for automation in &draft.automations {
        let at = |field: &str| format!("automations[{}].{field}", automation.key);
        let policy = pb::CatchUpPolicy::try_from(automation.catch_up_policy)
            .map_or("CATCH_UP_POLICY_UNSPECIFIED", |p| p.as_str_name());
        put_text(&mut out, at("display_name"), &automation.display_name);
        put_text(&mut out, at("time_zone"), &automation.time_zone);
        put_text(&mut out, at("task"), &automation.task);
        put_text(&mut out, at("catch_up_policy"), policy);
        if let Some(schedule) = schedule_json(automation.schedule.as_ref()) {
            out.insert(at("schedule"), schedule);
        }
        if !automation.suggested_channels.is_empty() {
            let channels: Vec<&str> = automation
                .suggested_channels
                .iter()
                .map(|c| {
                    pb::NotificationChannel::try_from(*c)
                        .map_or("NOTIFICATION_CHANNEL_UNSPECIFIED", |c| c.as_str_name())
                })
                .collect();
            out.insert(at("suggested_channels"), json!(channels));
        }
    }
    out
}

fn put_text(out: &mut BTreeMap<String, Value>, path: String, value: &str) {
    if !value.is_empty() {
        out.insert(path, json!(value));
    }
}

fn schedule_json(schedule: Option<&pb::Schedule>) -> Option<Value> {
    use pb::schedule::Kind;
    let time =
        |t: Option<&pb::TimeOfDay>| t.map(|t| json!({ "hours": t.hours, "minutes": t.minutes }));
    Some(match schedule?.kind.as_ref()? {
        Kind::Cron(cron) => json!({ "cron": { "expression": cron.expression } }),
        Kind::Hourly(hourly) => json!({ "hourly": { "minute": hourly.minute } }),
        Kind::Daily(daily) => {
            json!({ "daily": { "time_of_day": time(daily.time_of_day.as_ref()) } })
        }
        Kind::Weekly(weekly) => json!({ "weekly": {
            "day_of_week": pb::DayOfWeek::try_from(weekly.day_of_week)
                .map_or("DAY_OF_WEEK_UNSPECIFIED", |d| d.as_str_name()),
            "time_of_day": time(weekly.time_of_day.as_ref()),
        } }),
    })
}

fn from_proto_value(value: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(n)) => json!(n),
        Some(Kind::StringValue(s)) => json!(s),
        Some(Kind::BoolValue(b)) => json!(b),
        Some(Kind::StructValue(s)) => Value::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), from_proto_value(v)))
                .collect(),
        ),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(from_proto_value).collect()),
    }
}

fn to_proto_value(value: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(to_proto_value).collect(),
        }),
        Value::Object(fields) => Kind::StructValue(prost_types::Struct {
            fields: fields
                .iter()
                .map(|(k, v)| (k.clone(), to_proto_value(v)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(key: &str, provider: &str) -> pb::Tool {
        pb::Tool {
            integration_key: key.into(),
            provider: provider.into(),
            scope: pb::IntegrationScope::UserConfigured as i32,
            ..Default::default()
        }
    }

    #[test]
    fn changes_are_named_by_path_and_entries_by_key() {
        let base = pb::AgentDraft {
            name: "A".into(),
            tools: vec![tool("crm", "hubspot"), tool("mail", "gmail")],
            ..Default::default()
        };
        let target = pb::AgentDraft {
            name: "B".into(),
            instructions: "Be brief.".into(),
            tools: vec![tool("search", "brave"), tool("crm", "salesforce")],
            ..Default::default()
        };
        let changes = diff(&base, &target);
        let paths: Vec<(&str, i32)> = changes
            .iter()
            .map(|c| (c.field_path.as_str(), c.kind))
            .collect();
        assert_eq!(
            paths,
            [
                ("instructions", pb::FieldChangeKind::Added as i32),
                ("name", pb::FieldChangeKind::Modified as i32),
                ("tools[crm].provider", pb::FieldChangeKind::Modified as i32),
                ("tools[mail]", pb::FieldChangeKind::Removed as i32),
                ("tools[search]", pb::FieldChangeKind::Added as i32),
            ]
        );
        assert!(diff(&base, &base).is_empty());
        let reordered = pb::AgentDraft {
            tools: vec![tool("mail", "gmail"), tool("crm", "hubspot")],
            ..base.clone()
        };
        assert!(diff(&base, &reordered).is_empty());
    }
}
