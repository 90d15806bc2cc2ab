//! `agentshare apikey ...`: API keys that call as their creator in one org
//! (TenancyService). A key's secret is printed once, when it is made;
//! agentshare keeps only its hash, so it cannot be shown again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentshare_proto::sharing::v1 as pb;

use super::client::Target;
use super::failure::Outcome;
use super::output::{Output, View, time};

/// `agentshare apikey ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a key; its secret is printed once (with --quiet, alone).
    Create {
        /// A label to tell keys apart, such as `ci`.
        label: String,
        /// The workspace the key's calls land in (default: the one your
        /// calls land in now).
        #[arg(long, value_name = "WORKSPACE_ID")]
        default_workspace: Option<String>,
        /// Stop the key working after this long: a number with s, m, h or
        /// d, such as 90d (default: never).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        expires_in: Option<Duration>,
    },
    /// Your keys in the org, newest first, revoked ones included; never
    /// their secrets.
    List,
    /// Revoke a key: the very next call with it fails.
    Revoke {
        /// The key's id.
        api_key_id: String,
    },
}

pub async fn run(command: Command, target: &Target, out: Output) -> Outcome {
    let api = target.api()?;
    let mut tenancy = api.tenancy();
    match command {
        Command::Create {
            label,
            default_workspace,
            expires_in,
        } => {
            let expire_time = expires_in.map(|after| timestamp(SystemTime::now() + after));
            let created = tenancy
                .create_api_key(pb::CreateApiKeyRequest {
                    label,
                    default_workspace_id: default_workspace.unwrap_or_default(),
                    expire_time,
                })
                .await?
                .into_inner();
            let key = created.api_key.clone().unwrap_or_default();
            let mut fields = key_fields(&key);
            fields.push(("key", created.secret.clone()));
            // --quiet prints the secret alone, so a script can store it.
            out.show(&created, View::record(created.secret.clone(), fields))?;
            eprintln!(
                "warning: store this key now: it is shown only once and cannot be recovered \
                 (use it as AGENTSHARE_TOKEN, or in a file given to `agentshare context add \
                 --token-file`)"
            );
            Ok(())
        }
        Command::List => {
            let call = tenancy.list_api_keys(pb::ListApiKeysRequest::default());
            out.answer(call.await?, |listed| keys_table(&listed.api_keys))
        }
        Command::Revoke { api_key_id } => {
            let call = tenancy.revoke_api_key(pb::RevokeApiKeyRequest { api_key_id });
            out.answer(call.await?, |revoked| {
                let key = revoked.api_key.clone().unwrap_or_default();
                let mut fields = key_fields(&key);
                fields.push(("revoked", time(key.revoke_time.as_ref())));
                View::record(key.id, fields)
            })
        }
    }
}

fn keys_table(keys: &[pb::ApiKey]) -> View {
    let now = now_secs();
    View::table(keys)
        .id("ID", |key| key.id.clone())
        .column("LABEL", |key| key.label.clone())
        .column("PREFIX", |key| key.prefix.clone())
        .column("WORKSPACE", |key| key.default_workspace_id.clone())
        .column("STATE", |key| state(key, now).to_string())
        .column("CREATED", |key| time(key.create_time.as_ref()))
        .column("LAST USED", |key| time(key.last_use_time.as_ref()))
        .column("EXPIRES", expires)
        .into()
}

fn key_fields(key: &pb::ApiKey) -> Vec<(&'static str, String)> {
    vec![
        ("api key", key.id.clone()),
        ("label", key.label.clone()),
        ("prefix", key.prefix.clone()),
        ("org", key.org_id.clone()),
        ("workspace", key.default_workspace_id.clone()),
        ("expires", expires(key)),
    ]
}

fn expires(key: &pb::ApiKey) -> String {
    match &key.expire_time {
        Some(stamp) => time(Some(stamp)),
        None => "never".into(),
    }
}

fn state(key: &pb::ApiKey, now: i64) -> &'static str {
    if key.revoke_time.is_some() {
        "revoked"
    } else if key.expire_time.as_ref().is_some_and(|t| t.seconds <= now) {
        "expired"
    } else {
        "active"
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn timestamp(at: SystemTime) -> prost_types::Timestamp {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

/// `90d`, `12h`, `30m`, `3600s`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    // The unit is the last character, whatever its width.
    let split = text.char_indices().last().map_or(0, |(at, _)| at);
    let (number, unit) = text.split_at(split);
    let seconds_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?} needs a unit: s, m, h or d, as in 90d")),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number followed by s, m, h or d"))?;
    if number == 0 {
        return Err("an expiry must be in the future".into());
    }
    number
        .checked_mul(seconds_per)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_their_unit() {
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert!(parse_duration("90").is_err());
        assert!(parse_duration("0h").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("-3d").is_err());
        assert!(parse_duration("3é").is_err());
    }

    #[test]
    fn a_revoked_key_reads_revoked_even_past_its_expiry() {
        let past = Some(prost_types::Timestamp {
            seconds: 10,
            nanos: 0,
        });
        let key = pb::ApiKey {
            expire_time: past,
            ..Default::default()
        };
        assert_eq!(state(&key, 100), "expired");
        let revoked = pb::ApiKey {
            revoke_time: past,
            ..key
        };
        assert_eq!(state(&revoked, 100), "revoked");
        assert_eq!(state(&pb::ApiKey::default(), 100), "active");
    }
}
