//! The `agentshare` command line run as its users run it: the built binary,
//! in a process of its own, against a live `agentshare serve` (the embedded
//! default) on a loopback port, with its own config directory.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use crate::binary;

/// A running `agentshare serve` with a fresh data dir.
pub struct Serve {
    _child: tokio::process::Child,
    /// The gateway, as `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub data_dir: tempfile::TempDir,
    /// Where the CLI keeps its contexts in these tests.
    pub config_dir: tempfile::TempDir,
}

impl Serve {
    /// Starts `agentshare serve` on an ephemeral port and waits until it
    /// says where it serves.
    pub async fn start() -> Self {
        Self::start_with_config("").await
    }

    /// As [`Serve::start`], with `toml` as its config file (`--config`).
    pub async fn start_with_config(toml: &str) -> Self {
        Self::start_with(toml, &[]).await
    }

    /// As [`Serve::start`], with these flags too.
    pub async fn start_with_args(args: &[&str]) -> Self {
        Self::start_with("", args).await
    }

    async fn start_with(toml: &str, args: &[&str]) -> Self {
        let data_dir = tempfile::tempdir().expect("data dir");
        let config_dir = tempfile::tempdir().expect("config dir");
        let config_file = config_dir.path().join("agentshare.toml");
        std::fs::write(&config_file, toml).expect("write the config file");
        let mut child = tokio::process::Command::new(binary("agentshare"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .arg("--config")
            .arg(&config_file)
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("AGENTSHARE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn agentshare serve");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let serving = async {
            while let Some(line) = lines.next_line().await.expect("read serve's stderr") {
                if let Some(rest) = line.strip_prefix("agentshare is serving on ") {
                    let addr = rest.split_whitespace().next().expect("address").to_string();
                    return addr;
                }
            }
            panic!("agentshare serve exited before serving");
        };
        let addr = tokio::time::timeout(Duration::from_secs(60), serving)
            .await
            .expect("agentshare serve did not start within 60 s");
        // Keep reading, so serve never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            _child: child,
            endpoint: format!("http://{addr}"),
            data_dir,
            config_dir,
        }
    }

    /// The command line, aimed at this server.
    pub fn cli(&self) -> Cli<'_> {
        Cli {
            serve: self,
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            endpoint: true,
        }
    }

    /// A dev token for `user` (email `user@example.com`, stepped up), as
    /// `agentshare token` mints it.
    pub async fn token(&self, user: &str) -> String {
        let email = format!("{user}@example.com");
        let data_dir = self.data_dir.path().to_str().expect("path").to_string();
        self.cli()
            .args(&["token", "--user", user, "--email", &email, "--step-up"])
            .args(&["--data-dir", &data_dir])
            .run()
            .await
            .ok()
            .stdout
            .trim()
            .to_string()
    }

    /// `user` calling this server's HTTP/JSON API, for setting up what a
    /// test's commands then act on.
    pub async fn http(&self, user: &str) -> Http {
        Http {
            client: reqwest::Client::new(),
            base: format!("{}/api/v1", self.endpoint),
            token: self.token(user).await,
        }
    }

    /// `agentshare --as USER ARGS...`
    pub async fn as_user(&self, user: &str, args: &[&str]) -> Ran {
        self.cli().arg("--as").arg(user).args(args).run().await
    }
}

/// One invocation of the command line.
pub struct Cli<'a> {
    serve: &'a Serve,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<Vec<u8>>,
    /// Whether AGENTSHARE_ENDPOINT names the server (else a context must).
    endpoint: bool,
}

impl Cli<'_> {
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| (*a).to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Leaves AGENTSHARE_ENDPOINT unset, so the context in use decides.
    pub fn env_clear_endpoint(mut self) -> Self {
        self.endpoint = false;
        self
    }

    /// Text the command reads on stdin.
    pub fn stdin(mut self, text: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(text.into());
        self
    }

    pub async fn run(self) -> Ran {
        self.spawn().finish().await
    }

    /// Starts the command and returns at once, for commands that wait on
    /// something the test then does.
    pub fn spawn(self) -> Spawned {
        let mut command = tokio::process::Command::new(binary("agentshare"));
        command.args(&self.args).env_remove("AGENTSHARE_ENDPOINT");
        if self.endpoint {
            command.env("AGENTSHARE_ENDPOINT", &self.serve.endpoint);
        }
        command
            .env("AGENTSHARE_DATA_DIR", self.serve.data_dir.path())
            .env("AGENTSHARE_CONFIG_DIR", self.serve.config_dir.path());
        for inherited in [
            "AGENTSHARE_TOKEN",
            "AGENTSHARE_CONTEXT",
            "AGENTSHARE_ORG",
            "AGENTSHARE_WORKSPACE",
        ] {
            command.env_remove(inherited);
        }
        command
            .envs(self.env.iter().cloned())
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn agentshare");
        if let Some(text) = self.stdin {
            let mut stdin = child.stdin.take().expect("stdin");
            tokio::spawn(async move {
                stdin.write_all(&text).await.expect("write stdin");
            });
        }
        let stdout = child.stdout.take().expect("stdout");
        let stdout = tokio::spawn(async move {
            let mut text = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut BufReader::new(stdout), &mut text)
                .await
                .expect("read stdout");
            text
        });
        let stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
        Spawned {
            args: self.args,
            child,
            stdout,
            stderr,
            stderr_seen: String::new(),
        }
    }
}

/// A command that is running.
pub struct Spawned {
    args: Vec<String>,
    child: tokio::process::Child,
    stdout: tokio::task::JoinHandle<Vec<u8>>,
    stderr: tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    stderr_seen: String,
}

impl Spawned {
    /// Waits for the command to say `needle` on stderr; the line it is on.
    pub async fn stderr_line_containing(&mut self, needle: &str) -> String {
        let read = async {
            while let Some(line) = self.stderr.next_line().await.expect("read stderr") {
                self.stderr_seen.push_str(&line);
                self.stderr_seen.push('\n');
                if line.contains(needle) {
                    return Some(line);
                }
            }
            None
        };
        match tokio::time::timeout(Duration::from_secs(60), read).await {
            Ok(Some(line)) => line,
            _ => panic!(
                "agentshare {:?} did not say {needle:?}; stderr so far: {}",
                self.args, self.stderr_seen
            ),
        }
    }

    /// Waits for the command to end.
    pub async fn finish(mut self) -> Ran {
        let args = self.args;
        let mut stderr = self.stderr_seen;
        let rest = async {
            while let Some(line) = self.stderr.next_line().await.expect("read stderr") {
                stderr.push_str(&line);
                stderr.push('\n');
            }
            let status = self.child.wait().await.expect("wait for agentshare");
            let stdout = self.stdout.await.expect("stdout");
            (status, stdout)
        };
        let (status, stdout) = tokio::time::timeout(Duration::from_secs(120), rest)
            .await
            .unwrap_or_else(|_| panic!("agentshare {args:?} did not finish within 120 s"));
        Ran {
            args,
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr,
        }
    }
}

/// What one invocation did.
#[derive(Debug)]
pub struct Ran {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Asserts it exited 0.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "agentshare {:?} failed: {}{}",
            self.args, self.stderr, self.stdout
        );
        self
    }

    /// Asserts it exited with `code` and said `needle` on stderr.
    #[track_caller]
    pub fn failed(self, code: i32, needle: &str) -> Self {
        assert_eq!(
            self.code, code,
            "agentshare {:?}: stdout {} stderr {}",
            self.args, self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "agentshare {:?}: stderr {:?} should say {needle:?}",
            self.args,
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        self
    }

    /// Stdout as JSON (the command ran with `-o json`).
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "agentshare {:?} printed no JSON ({e}): {}",
                self.args, self.stdout
            )
        })
    }

    /// Stdout's one line (the command ran with `--quiet`).
    #[track_caller]
    pub fn id(&self) -> String {
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "agentshare {:?} printed {:?}",
            self.args,
            self.stdout
        );
        lines[0].to_string()
    }
}

/// One user of the HTTP/JSON API.
pub struct Http {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Http {
    /// POSTs `body` to `/api/v1{path}`; the call must succeed.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("call the HTTP/JSON API");
        let status = response.status();
        let text = response.text().await.expect("answer");
        assert!(status.is_success(), "POST {path}: {status} {text}");
        serde_json::from_str(&text).expect("JSON answer")
    }
}
