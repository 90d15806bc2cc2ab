//! How answers are printed: a table for people by default, the proto3 JSON
//! mapping (`-o json`, the same shape the HTTP/JSON API answers) or YAML
//! for scripts, and only ids with `--quiet`.

use std::io::Write as _;
use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, SerializeOptions};

use super::failure::{Failure, Outcome};

/// The output format a command prints in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables and sentences for people.
    #[default]
    Table,
    /// The answer in the proto3 JSON mapping, stable across releases.
    Json,
    /// The same document as YAML.
    Yaml,
}

/// Where and how a command prints.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    pub format: Format,
    /// Only ids, one per line.
    pub quiet: bool,
}

/// A message as rows of a table, and the id `--quiet` prints.
pub struct View {
    pub header: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
    pub ids: Vec<String>,
}

impl View {
    /// One record as `field  value` lines.
    pub fn record(id: impl Into<String>, fields: Vec<(&'static str, String)>) -> Self {
        let id = id.into();
        Self {
            header: Vec::new(),
            rows: fields
                .into_iter()
                .map(|(name, value)| vec![name.to_string(), value])
                .collect(),
            ids: if id.is_empty() { Vec::new() } else { vec![id] },
        }
    }

    /// Many records as a table, a row per item, built one column at a time.
    pub fn table<T>(items: &[T]) -> Table<'_, T> {
        Table {
            items,
            view: Self {
                header: Vec::new(),
                rows: vec![Vec::new(); items.len()],
                ids: Vec::new(),
            },
        }
    }
}

/// A table being built: each column's header is written beside the cell
/// it heads, so the two cannot drift apart.
pub struct Table<'a, T> {
    items: &'a [T],
    view: View,
}

impl<T> Table<'_, T> {
    /// A column headed `header`, `cell` reading each item's value.
    pub fn column(mut self, header: &'static str, cell: impl Fn(&T) -> String) -> Self {
        self.view.header.push(header);
        for (row, item) in self.view.rows.iter_mut().zip(self.items) {
            row.push(cell(item));
        }
        self
    }

    /// The column that names each item: `--quiet` prints its values.
    pub fn id(mut self, header: &'static str, cell: impl Fn(&T) -> String) -> Self {
        self.view.ids = self.items.iter().map(&cell).collect();
        self.column(header, cell)
    }
}

impl<T> From<Table<'_, T>> for View {
    fn from(table: Table<'_, T>) -> Self {
        table.view
    }
}

impl Output {
    /// Prints `answer` (the whole response, in JSON and YAML) or its view.
    pub fn show<M>(&self, answer: &M, view: impl Into<View>) -> Outcome
    where
        M: prost::Message + prost::Name,
    {
        let view = view.into();
        match (self.quiet, self.format) {
            (true, _) => {
                for id in view.ids {
                    self.line(&id)?;
                }
                Ok(())
            }
            (false, Format::Json) => self.print_json(&to_json(answer)?),
            (false, Format::Yaml) => self.print_yaml(&to_json(answer)?),
            (false, Format::Table) => self.write(&render(&view)),
        }
    }

    /// Prints what a call answered, and `view` of it for people.
    pub fn answer<M>(&self, response: tonic::Response<M>, view: impl FnOnce(&M) -> View) -> Outcome
    where
        M: prost::Message + prost::Name,
    {
        let answer = response.into_inner();
        self.show(&answer, view(&answer))
    }

    /// Prints a view that stands for no API message (local state).
    pub fn show_plain(&self, view: impl Into<View>) -> Outcome {
        let view = view.into();
        if self.quiet {
            for id in view.ids {
                self.line(&id)?;
            }
            return Ok(());
        }
        self.write(&render(&view))
    }

    /// Prints local state: its serde form in JSON and YAML, else its view.
    pub fn show_serde<T: serde::Serialize>(&self, value: &T, view: impl Into<View>) -> Outcome {
        let json = serde_json::to_value(value)
            .map_err(|e| Failure::local(format!("cannot print: {e}")))?;
        match (self.quiet, self.format) {
            (false, Format::Json) => self.print_json(&json),
            (false, Format::Yaml) => self.print_yaml(&json),
            _ => self.show_plain(view),
        }
    }

    fn print_json(&self, json: &serde_json::Value) -> Outcome {
        let text = serde_json::to_string_pretty(json)
            .map_err(|e| Failure::local(format!("cannot print JSON: {e}")))?;
        self.line(&text)
    }

    fn print_yaml(&self, json: &serde_json::Value) -> Outcome {
        let text = serde_yaml_ng::to_string(json)
            .map_err(|e| Failure::local(format!("cannot print YAML: {e}")))?;
        self.write(&text)
    }

    /// A sentence for people; nothing in JSON, YAML or quiet mode, where
    /// the answer itself is printed instead.
    pub fn say(&self, text: &str) -> Outcome {
        if self.quiet || self.format != Format::Table {
            return Ok(());
        }
        self.line(text)
    }

    /// Whether people, not scripts, read what is printed.
    pub fn for_people(&self) -> bool {
        !self.quiet && self.format == Format::Table
    }

    pub fn line(&self, text: &str) -> Outcome {
        self.write(&format!("{text}\n"))
    }

    pub fn write(&self, text: &str) -> Outcome {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|e| Failure::local(format!("cannot write to stdout: {e}")))
    }
}

fn render(view: &View) -> String {
    if view.header.is_empty() {
        // A record: names left, values right, no borders.
        let width = view.rows.iter().map(|row| row[0].len()).max().unwrap_or(0);
        return view
            .rows
            .iter()
            .map(|row| format!("{:width$}  {}\n", row[0], row[1]))
            .collect();
    }
    if view.rows.is_empty() {
        return "(none)\n".into();
    }
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::NOTHING);
    table.set_header(view.header.clone());
    for row in &view.rows {
        table.add_row(row.clone());
    }
    // comfy-table pads every cell on both sides; a leading space per line
    // is noise in a terminal.
    table
        .lines()
        .map(|line| format!("{}\n", line.strip_prefix(' ').unwrap_or(&line).trim_end()))
        .collect()
}

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        // Built into the binary from the same protos; it always decodes.
        DescriptorPool::decode(agentshare_proto::FILE_DESCRIPTOR_SET).unwrap_or_default()
    })
}

/// `message` in the proto3 JSON mapping, by reflection over the contract.
pub fn to_json<M>(message: &M) -> Outcome<serde_json::Value>
where
    M: prost::Message + prost::Name,
{
    let name = M::full_name();
    let descriptor = pool()
        .get_message_by_name(&name)
        .ok_or_else(|| Failure::local(format!("{name} is not in the contract")))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .map_err(|e| Failure::local(format!("cannot read {name}: {e}")))?;
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
        .map_err(|e| Failure::local(format!("cannot render {name}: {e}")))
}

/// A message from a JSON document in the proto3 JSON mapping (a YAML file
/// read as JSON too), naming the first field that does not fit.
pub fn from_json<M>(document: &serde_json::Value, source: &str) -> Outcome<M>
where
    M: prost::Message + prost::Name + Default,
{
    let name = M::full_name();
    let descriptor = pool()
        .get_message_by_name(&name)
        .ok_or_else(|| Failure::local(format!("{name} is not in the contract")))?;
    let dynamic = match DynamicMessage::deserialize(descriptor.clone(), document) {
        Ok(dynamic) => dynamic,
        // The reader names the bad field or value, not where it is.
        Err(e) => {
            return Err(Failure::usage(match fault_path(&descriptor, document) {
                Some(path) => format!("{source}: {path}: {e}"),
                None => format!("{source}: {e}"),
            }));
        }
    };
    M::decode(prost::Message::encode_to_vec(&dynamic).as_slice())
        .map_err(|e| Failure::local(format!("cannot read {name}: {e}")))
}

/// The path of the first field of `document` that `message` cannot read,
/// found by reading one field (and one list entry) at a time.
fn fault_path(message: &MessageDescriptor, document: &serde_json::Value) -> Option<String> {
    let reads = |key: &str, value: serde_json::Value| {
        let mut one = serde_json::Map::new();
        one.insert(key.to_string(), value);
        DynamicMessage::deserialize(message.clone(), serde_json::Value::Object(one)).is_ok()
    };
    for (key, value) in document.as_object()? {
        if reads(key, value.clone()) {
            continue;
        }
        let Some(field) = message
            .get_field_by_json_name(key)
            .or_else(|| message.get_field_by_name(key))
        else {
            return Some(key.clone());
        };
        // Messages of our own are read field by field; well-known types
        // (a Struct of model parameters, a Timestamp) and maps are leaves.
        let nested = match field.kind() {
            Kind::Message(inner)
                if !field.is_map() && inner.package_name() != "google.protobuf" =>
            {
                Some(inner)
            }
            _ => None,
        };
        let inner_path =
            |inner: &MessageDescriptor, value: &serde_json::Value, at: String| match fault_path(
                inner, value,
            ) {
                Some(path) => format!("{at}.{path}"),
                None => at,
            };
        return Some(match (value, nested) {
            (serde_json::Value::Array(items), nested) if field.is_list() => items
                .iter()
                .enumerate()
                .find(|(_, item)| !reads(key, serde_json::Value::Array(vec![(*item).clone()])))
                .map_or_else(
                    || key.clone(),
                    |(at, item)| match &nested {
                        Some(inner) => inner_path(inner, item, format!("{key}[{at}]")),
                        None => format!("{key}[{at}]"),
                    },
                ),
            (serde_json::Value::Object(_), Some(inner)) => inner_path(&inner, value, key.clone()),
            _ => key.clone(),
        });
    }
    None
}

/// A protobuf enum's value for people: `ORG_ROLE_ADMIN` as `admin`.
pub fn label(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
        .replace('_', " ")
}

/// A value of a protobuf enum for people, as [`label`] words it, or its
/// number when this client does not know it: `name` is the enum's
/// `as_str_name`, `prefix` what every value's name starts with.
pub fn word<E: TryFrom<i32>>(value: i32, name: fn(&E) -> &'static str, prefix: &str) -> String {
    E::try_from(value).map_or_else(|_| value.to_string(), |known| label(name(&known), prefix))
}

/// A value of a protobuf enum as [`word`] gives it, but nothing at all
/// when this client does not know it.
pub fn word_or_blank<E: TryFrom<i32>>(
    value: i32,
    name: fn(&E) -> &'static str,
    prefix: &str,
) -> String {
    E::try_from(value)
        .map(|known| label(name(&known), prefix))
        .unwrap_or_default()
}

/// `word`, then `detail` after a colon when there is one: `failed: timeout`.
pub fn with_detail(word: String, detail: &str) -> String {
    if detail.is_empty() {
        word
    } else {
        format!("{word}: {detail}")
    }
}

/// `mark` in the rows a column flags, nothing in the others.
pub fn flag(on: bool, mark: &str) -> String {
    if on { mark.into() } else { String::new() }
}

/// A timestamp for people, in UTC to the second.
pub fn time(stamp: Option<&prost_types::Timestamp>) -> String {
    let Some(stamp) = stamp else {
        return String::new();
    };
    let secs = stamp.seconds;
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 as a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentshare_proto::sharing::v1::{Org, OrgRole};

    #[test]
    fn json_is_the_proto3_mapping_and_reads_back() {
        let org = Org {
            id: "org_1".into(),
            name: "Acme".into(),
            workspaces_enabled: true,
            ..Org::default()
        };
        let json = to_json(&org).unwrap();
        assert_eq!(json["workspacesEnabled"], serde_json::json!(true));
        let back: Org = from_json(&json, "test").unwrap();
        assert_eq!(back, org);
    }

    #[test]
    fn a_field_that_is_not_in_the_message_is_named() {
        let refused = from_json::<Org>(&serde_json::json!({"colour": "red"}), "org.yaml");
        let Err(Failure::Usage(why)) = refused else {
            panic!("{refused:?}");
        };
        assert!(why.contains("org.yaml") && why.contains("colour"), "{why}");
    }

    #[test]
    fn enums_and_times_read_as_words() {
        assert_eq!(label(OrgRole::Admin.as_str_name(), "ORG_ROLE_"), "admin");
        let admin = OrgRole::Admin as i32;
        assert_eq!(word(admin, OrgRole::as_str_name, "ORG_ROLE_"), "admin");
        assert_eq!(word(99, OrgRole::as_str_name, "ORG_ROLE_"), "99");
        assert_eq!(with_detail("failed".into(), "timeout"), "failed: timeout");
        assert_eq!(with_detail("active".into(), ""), "active");
        let stamp = prost_types::Timestamp {
            seconds: 1_796_428_800,
            nanos: 0,
        };
        assert_eq!(time(Some(&stamp)), "2026-12-05 00:00:00Z");
    }

    #[test]
    fn an_unknown_value_can_read_as_nothing() {
        let admin = OrgRole::Admin as i32;
        assert_eq!(
            word_or_blank(admin, OrgRole::as_str_name, "ORG_ROLE_"),
            "admin"
        );
        assert_eq!(word_or_blank(99, OrgRole::as_str_name, "ORG_ROLE_"), "");
    }

    #[test]
    fn a_table_has_a_header_and_a_row_per_item() {
        let view: View = View::table(&[("a1", "Research"), ("a2", "Support")])
            .id("ID", |(id, _)| (*id).to_string())
            .column("NAME", |(_, name)| (*name).to_string())
            .into();
        let text = render(&view);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("ID") && lines[2].contains("Support"),
            "{text}"
        );
        assert_eq!(view.ids, vec!["a1", "a2"]);
    }
}
