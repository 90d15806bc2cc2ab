//! Named contexts, as kubectl and zed keep them: an endpoint, where its
//! token is, and a default org and workspace, in the user's config
//! directory (`$XDG_CONFIG_HOME/agentshare/contexts.yaml`, or
//! `$AGENTSHARE_CONFIG_DIR/contexts.yaml`), readable by its owner only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::client::Target;
use super::failure::{Failure, Outcome};
use super::output::{Output, View, flag};

/// `agentshare context ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add (or replace) a context and use it: `--endpoint URL` (required),
    /// `--token-file FILE`, and `--org`/`--workspace` as its defaults.
    Add {
        /// The context's name.
        name: String,
        /// A file holding the token (read on every call, so rotating it needs
        /// no change here).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
    /// Use a context from now on.
    Use {
        /// The context's name.
        name: String,
    },
    /// The contexts, and which one is in use.
    List,
    /// Remove a context.
    Remove {
        /// The context's name.
        name: String,
    },
}

/// Runs a context command: these touch only the contexts file.
pub fn run(command: Command, target: &Target, out: Output) -> Outcome {
    let dir = config_dir()?;
    let mut contexts = Contexts::load(&dir)?;
    match command {
        Command::Add { name, token_file } => {
            check_name(&name)?;
            let endpoint = target.endpoint.clone().ok_or_else(|| {
                Failure::usage("a context needs --endpoint URL (the gateway, as http://host:port)")
            })?;
            check_endpoint(&endpoint)?;
            let token_file = match token_file {
                Some(file) => {
                    let file = std::path::absolute(&file).map_err(|e| {
                        Failure::local(format!("cannot resolve {}: {e}", file.display()))
                    })?;
                    std::fs::metadata(&file).map_err(|e| {
                        Failure::usage(format!("the token file {}: {e}", file.display()))
                    })?;
                    Some(file)
                }
                None => None,
            };
            contexts.contexts.insert(
                name.clone(),
                Context {
                    endpoint,
                    token_file,
                    org: target.org.clone(),
                    workspace: target.workspace.clone(),
                },
            );
            contexts.current = Some(name.clone());
            contexts.save(&dir)?;
            out.say(&format!("context {name} added and in use"))
        }
        Command::Use { name } => {
            if !contexts.contexts.contains_key(&name) {
                return Err(Failure::usage(format!(
                    "no context named {name:?}; `agentshare context list` shows them"
                )));
            }
            contexts.current = Some(name.clone());
            contexts.save(&dir)?;
            out.say(&format!("using context {name}"))
        }
        Command::Remove { name } => {
            if contexts.contexts.remove(&name).is_none() {
                return Err(Failure::usage(format!("no context named {name:?}")));
            }
            if contexts.current.as_deref() == Some(name.as_str()) {
                contexts.current = None;
            }
            contexts.save(&dir)?;
            out.say(&format!("context {name} removed"))
        }
        Command::List => list(&contexts, out),
    }
}

fn list(contexts: &Contexts, out: Output) -> Outcome {
    let rows: Vec<(&String, &Context)> = contexts.contexts.iter().collect();
    let current = contexts.current.as_deref();
    let view = View::table(&rows)
        .column("CURRENT", |(name, _)| {
            flag(current == Some(name.as_str()), "*")
        })
        .id("NAME", |(name, _)| (*name).clone())
        .column("ENDPOINT", |(_, context)| context.endpoint.clone())
        .column("TOKEN FILE", |(_, context)| {
            context
                .token_file
                .as_ref()
                .map(|f| f.display().to_string())
                .unwrap_or_default()
        })
        .column("ORG", |(_, context)| {
            context.org.clone().unwrap_or_default()
        })
        .column("WORKSPACE", |(_, context)| {
            context.workspace.clone().unwrap_or_default()
        });
    match out.format {
        super::output::Format::Table => out.show_plain(view),
        _ => out.show_serde(contexts, view),
    }
}

fn check_name(name: &str) -> Outcome {
    let fine = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if fine {
        Ok(())
    } else {
        Err(Failure::usage(format!(
            "{name:?} is not a context name: use letters, digits, '-', '_' or '.'"
        )))
    }
}

/// One named way to reach a deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// The gateway, as `http://host:port`.
    pub endpoint: String,
    /// A file holding the bearer token (a session token or an API key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
}

/// Every context and which one is in use.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contexts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// The directory contexts live in.
pub fn config_dir() -> Outcome<PathBuf> {
    if let Some(dir) = std::env::var_os("AGENTSHARE_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    use etcetera::BaseStrategy as _;
    let base = etcetera::choose_base_strategy().map_err(|e| {
        Failure::local(format!(
            "cannot find your config directory ({e}); set AGENTSHARE_CONFIG_DIR"
        ))
    })?;
    Ok(base.config_dir().join("agentshare"))
}

impl Contexts {
    pub fn file(dir: &Path) -> PathBuf {
        dir.join("contexts.yaml")
    }

    /// The contexts in `dir`; none when the file does not exist yet.
    pub fn load(dir: &Path) -> Outcome<Self> {
        let file = Self::file(dir);
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(Failure::local(format!(
                    "cannot read {}: {e}",
                    file.display()
                )));
            }
        };
        serde_yaml_ng::from_str(&text).map_err(|e| {
            Failure::local(format!(
                "{} is not a contexts file: {e}; fix or remove it",
                file.display()
            ))
        })
    }

    /// Writes the contexts whole, readable and writable by the owner only.
    pub fn save(&self, dir: &Path) -> Outcome {
        use std::io::Write as _;
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
        let failed = |what: &str, path: &Path, e: std::io::Error| {
            Failure::local(format!("cannot {what} {}: {e}", path.display()))
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| failed("create", dir, e))?;
        let text = serde_yaml_ng::to_string(self)
            .map_err(|e| Failure::local(format!("cannot write contexts: {e}")))?;
        let file = Self::file(dir);
        // Written beside and renamed over, so a crash never leaves half a file.
        let partial = dir.join(".contexts.yaml.partial");
        let _ = std::fs::remove_file(&partial);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(|e| failed("write", &partial, e))?;
        out.write_all(text.as_bytes())
            .and_then(|()| out.sync_all())
            .map_err(|e| failed("write", &partial, e))?;
        std::fs::rename(&partial, &file).map_err(|e| failed("write", &file, e))
    }

    /// The context in use: `name` if given, else the current one.
    pub fn selected(&self, name: Option<&str>) -> Outcome<Option<(String, Context)>> {
        let Some(name) = name.or(self.current.as_deref()) else {
            return Ok(None);
        };
        match self.contexts.get(name) {
            Some(context) => Ok(Some((name.to_string(), context.clone()))),
            None => Err(Failure::usage(format!(
                "no context named {name:?}; `agentshare context list` shows them"
            ))),
        }
    }
}

/// Checks an endpoint URL as the CLI can reach it.
pub fn check_endpoint(endpoint: &str) -> Outcome {
    if endpoint.starts_with("https://") {
        return Err(Failure::usage(format!(
            "{endpoint}: this build of the CLI speaks plain HTTP/2 only; reach the gateway \
             over http:// (a port-forward or the cluster network)"
        )));
    }
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return Err(Failure::usage(format!(
            "{endpoint:?} is not an endpoint: give it as http://host:port"
        )));
    };
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return Err(Failure::usage(format!(
            "{endpoint:?} is not an endpoint: give it as http://host:port"
        )));
    }
    tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .map(|_| ())
        .map_err(|e| Failure::usage(format!("{endpoint:?} is not an endpoint: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn contexts_are_kept_for_their_owner_only_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("agentshare");
        let mut contexts = Contexts::load(&home).unwrap();
        assert!(contexts.contexts.is_empty());
        contexts.contexts.insert(
            "prod".into(),
            Context {
                endpoint: "http://gateway:50051".into(),
                token_file: Some("/run/token".into()),
                ..Context::default()
            },
        );
        contexts.current = Some("prod".into());
        contexts.save(&home).unwrap();
        let mode = std::fs::metadata(Contexts::file(&home))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(&home).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let back = Contexts::load(&home).unwrap();
        assert_eq!(back, contexts);
        let (name, context) = back.selected(None).unwrap().unwrap();
        assert_eq!(
            (name.as_str(), context.endpoint.as_str()),
            ("prod", "http://gateway:50051")
        );
        assert!(matches!(
            back.selected(Some("staging")),
            Err(Failure::Usage(_))
        ));
    }

    #[test]
    fn an_endpoint_must_be_plain_http_with_a_host() {
        assert!(check_endpoint("http://127.0.0.1:50051").is_ok());
        for bad in ["127.0.0.1:50051", "https://gw:443", "http://", "ftp://x"] {
            assert!(
                matches!(check_endpoint(bad), Err(Failure::Usage(_))),
                "{bad}"
            );
        }
    }
}
