//! `agent diff`: which two designs to compare (a version or the draft),
//! and each change the registry reports, for people.

use agentshare_proto::registry::v1 as pb;

/// One side of a diff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Version(i64),
    Draft,
}

pub fn parse_side(text: &str) -> Result<Side, String> {
    if text.eq_ignore_ascii_case("draft") {
        return Ok(Side::Draft);
    }
    let number = text.strip_prefix(['v', 'V']).unwrap_or(text);
    match number.parse::<i64>() {
        Ok(number) if number >= 1 => Ok(Side::Version(number)),
        _ => Err(format!(
            "{text:?} is neither a version number (1, 2, …) nor `draft`"
        )),
    }
}

impl Side {
    pub fn selector(self) -> pb::VersionSelector {
        use pb::version_selector::Selector;
        pb::VersionSelector {
            selector: Some(match self {
                Self::Version(number) => Selector::VersionNumber(number),
                Self::Draft => Selector::Draft(true),
            }),
        }
    }

    pub fn name(self) -> String {
        match self {
            Self::Version(number) => format!("version {number}"),
            Self::Draft => "the draft".into(),
        }
    }
}

/// One change, for people: `~ path: old → new`, `+ path: new`, `- path: old`;
/// a text over several lines as a line diff.
pub fn render_change(change: &serde_json::Value) -> String {
    let path = change["fieldPath"].as_str().unwrap_or_default();
    let base = &change["baseValue"];
    let target = &change["targetValue"];
    match change["kind"].as_str().unwrap_or_default() {
        "FIELD_CHANGE_KIND_ADDED" => format!("+ {path}: {}\n", compact(target)),
        "FIELD_CHANGE_KIND_REMOVED" => format!("- {path}: {}\n", compact(base)),
        _ => match (base.as_str(), target.as_str()) {
            (Some(old), Some(new)) if old.contains('\n') || new.contains('\n') => {
                let mut text = format!("~ {path}:\n");
                for (mark, line) in line_diff(old, new) {
                    text.push_str(&format!("    {mark} {line}\n"));
                }
                text
            }
            _ => format!("~ {path}: {} → {}\n", compact(base), compact(target)),
        },
    }
}

fn compact(value: &serde_json::Value) -> String {
    if value.is_null() {
        return "(none)".into();
    }
    serde_json::to_string(value).unwrap_or_default()
}

/// The lines of `old` and `new` marked `-` (only in old), `+` (only in new)
/// or ` ` (in both), in order, by their longest common subsequence. Texts
/// too long to compare line by line are shown whole, old then new.
fn line_diff<'a>(old: &'a str, new: &'a str) -> Vec<(char, &'a str)> {
    const MAX_CELLS: usize = 4_000_000;
    let old: Vec<&str> = old.lines().collect();
    let new: Vec<&str> = new.lines().collect();
    if old.len().saturating_mul(new.len()) > MAX_CELLS {
        let mut lines: Vec<(char, &str)> = old.iter().map(|line| ('-', *line)).collect();
        lines.extend(new.iter().map(|line| ('+', *line)));
        return lines;
    }
    // common[i][j]: the longest common subsequence of old[i..] and new[j..].
    let mut common = vec![vec![0usize; new.len() + 1]; old.len() + 1];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            common[i][j] = if old[i] == new[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut lines = Vec::new();
    while i < old.len() && j < new.len() {
        if old[i] == new[j] {
            lines.push((' ', old[i]));
            i += 1;
            j += 1;
        } else if common[i + 1][j] >= common[i][j + 1] {
            lines.push(('-', old[i]));
            i += 1;
        } else {
            lines.push(('+', new[j]));
            j += 1;
        }
    }
    lines.extend(old[i..].iter().map(|line| ('-', *line)));
    lines.extend(new[j..].iter().map(|line| ('+', *line)));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_sides_are_numbers_or_the_draft() {
        assert_eq!(parse_side("draft"), Ok(Side::Draft));
        assert_eq!(parse_side("2"), Ok(Side::Version(2)));
        assert_eq!(parse_side("v3"), Ok(Side::Version(3)));
        assert!(parse_side("0").is_err());
        assert!(parse_side("latest").is_err());
    }

    #[test]
    fn a_changed_text_reads_as_a_line_diff() {
        let lines = line_diff("a\nb\nc", "a\nB\nc\nd");
        assert_eq!(
            lines,
            [(' ', "a"), ('-', "b"), ('+', "B"), (' ', "c"), ('+', "d")]
        );
        let change = serde_json::json!({
            "fieldPath": "tools[crm].scope",
            "kind": "FIELD_CHANGE_KIND_MODIFIED",
            "baseValue": "INTEGRATION_SCOPE_SHARED",
            "targetValue": "INTEGRATION_SCOPE_USER_CONFIGURED",
        });
        assert_eq!(
            render_change(&change),
            "~ tools[crm].scope: \"INTEGRATION_SCOPE_SHARED\" → \
             \"INTEGRATION_SCOPE_USER_CONFIGURED\"\n"
        );
        let added = serde_json::json!({
            "fieldPath": "tools[calendar]",
            "kind": "FIELD_CHANGE_KIND_ADDED",
            "targetValue": {"integrationKey": "calendar"},
        });
        assert_eq!(
            render_change(&added),
            "+ tools[calendar]: {\"integrationKey\":\"calendar\"}\n"
        );
    }
}
