//! The SQL of sessions, messages and invocation records. Who may do what
//! is decided by the caller, which hands in its rule where a check must sit
//! inside a transaction.
//!
//! An append locks its session's row first (on SQLite `begin_write`
//! already holds the one write lock), so sequences are gapless per session
//! however many appends race. The idempotency row of an append commits in
//! the same transaction as its messages, so a racing duplicate fails on
//! its key and, retried, finds the first result.

use agentshare_kit::clock::Clock;
use agentshare_kit::db::{self, Db, is_unique_violation, new_id};
use agentshare_kit::page::Page;
use agentshare_kit::{Error, Result};
use sqlx::{Any, Transaction};

use super::rules::{
    self, DayTotals, Invocation, Message, NewMessage, Range, Role, Session, SessionFilter,
    SessionSpec, SessionState, Status, UsageFilter,
};
use agentshare_kit::db::Stored;

#[derive(Clone)]
pub struct Storage {
    pub db: Db,
    pub clock: Clock,
}

/// Where an append goes.
pub enum Target<'a> {
    /// An existing session.
    Existing(&'a str),
    /// A new session, created by this append.
    New {
        spec: &'a SessionSpec,
        secret_digest: &'a str,
    },
}

/// One turn to append.
pub struct Append<'a> {
    pub request_id: &'a str,
    pub target: Target<'a>,
    /// Refreshes the session's agent name unless empty.
    pub agent_name: &'a str,
    pub invocation_id: &'a str,
    pub agent_version_number: i64,
    pub messages: &'a [NewMessage],
}

/// What an append did (or, on a retry, did the first time).
pub struct Appended {
    pub session: Session,
    pub messages: Vec<Message>,
    pub created: bool,
}

/// What a create did: made the session, or found the one a retry names.
pub struct Created {
    pub session: Session,
    pub retried: bool,
}

/// The end of a run.
pub struct Completed<'a> {
    pub status: Status,
    pub error_code: &'a str,
    pub error_message: &'a str,
    pub end_time: i64,
    pub duration_micros: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// Replaces the recorded session unless empty.
    pub session_id: &'a str,
}

/// How many times an append races a duplicate of itself before giving up.
const APPEND_ATTEMPTS: usize = 3;

const SESSION_COLUMNS: &str = "id, org_id, agent_id, agent_name, user_id, anonymous, \
     secret_digest, grant_id, project_id, workspace_id, state, title, message_count, \
     created_at, updated_at, archived_at";

const MESSAGE_COLUMNS: &str =
    "sequence, role, content, tool_name, invocation_id, agent_version_number, created_at";

const INVOCATION_COLUMNS: &str = "id, org_id, agent_id, agent_owner_user_id, \
     agent_version_number, draft_run, caller_kind, user_id, anonymous, grant_id, session_id, \
     project_id, automation_run_id, integrations, executes_as_user_id, billed_to_user_id, \
     store_partition, status, error_code, error_message, duration_micros, start_time, end_time, \
     input_tokens, output_tokens";

/// Sessions and invocations as they are read: (columns, table).
const SESSIONS: (&str, &str) = (SESSION_COLUMNS, "sessions");
const INVOCATIONS: (&str, &str) = (INVOCATION_COLUMNS, "invocations");

/// A value bound to a dynamically built query.
enum Bind {
    Text(String),
    Int(i64),
}

/// A WHERE clause built condition by condition, numbering its `$n`.
#[derive(Default)]
struct Conditions {
    sql: Vec<String>,
    binds: Vec<Bind>,
}

impl Conditions {
    fn next(&self) -> usize {
        self.binds.len() + 1
    }

    /// Adds `template`, whose `?` stand for `binds` in order.
    fn push(&mut self, template: &str, binds: Vec<Bind>) {
        let mut sql = String::new();
        let mut n = self.next();
        for part in template.split_inclusive('?') {
            if let Some(head) = part.strip_suffix('?') {
                sql.push_str(head);
                sql.push_str(&format!("${n}"));
                n += 1;
            } else {
                sql.push_str(part);
            }
        }
        self.sql.push(sql);
        self.binds.extend(binds);
    }

    fn text(&mut self, column: &str, value: &str) {
        self.push(&format!("{column} = ?"), vec![Bind::Text(value.into())]);
    }

    fn clause(&self) -> String {
        if self.sql.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.sql.join(" AND "))
        }
    }

    /// The page of `columns` of the rows of `table` under these
    /// conditions, newest first by (`column`, `id`), after the row the
    /// page's token names.
    async fn newest_page<T>(
        mut self,
        pool: &sqlx::AnyPool,
        (columns, table): (&str, &str),
        column: &str,
        page: &Page,
    ) -> Result<Vec<T>>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
    {
        if let Some([at, id]) = page.after_parts() {
            let at = rules::cursor_number(at)?;
            self.push(
                &format!("({column} < ? OR ({column} = ? AND id < ?))"),
                vec![Bind::Int(at), Bind::Int(at), Bind::Text(id.clone())],
            );
        }
        let sql = format!(
            "SELECT {columns} FROM {table}{} ORDER BY {column} DESC, id DESC LIMIT ${}",
            self.clause(),
            self.next()
        );
        Ok(self
            .query_as(&sql)
            .bind(page.limit())
            .fetch_all(pool)
            .await?)
    }

    fn query_as<'q, T>(
        &self,
        sql: &'q str,
    ) -> sqlx::query::QueryAs<'q, Any, T, sqlx::any::AnyArguments<'q>>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        let mut query = sqlx::query_as(sql);
        for bind in &self.binds {
            query = match bind {
                Bind::Text(value) => query.bind(value.clone()),
                Bind::Int(value) => query.bind(*value),
            };
        }
        query
    }
}

fn usage_conditions(filter: &UsageFilter, range: Range, status: Option<Status>) -> Conditions {
    let mut conditions = Conditions::default();
    match filter {
        UsageFilter::BilledTo { user_id, agent_id } => {
            conditions.text("billed_to_user_id", user_id);
            if !agent_id.is_empty() {
                conditions.text("agent_id", agent_id);
            }
        }
        UsageFilter::Agent { agent_id } => conditions.text("agent_id", agent_id),
    }
    if let Some(start) = range.start {
        conditions.push("start_time >= ?", vec![Bind::Int(start)]);
    }
    conditions.push("start_time < ?", vec![Bind::Int(range.end)]);
    if let Some(status) = status {
        conditions.text("status", status.as_str());
    }
    conditions
}

impl Storage {
    pub async fn session(&self, id: &str) -> Result<Option<Session>> {
        self.by_id(SESSIONS, id).await
    }

    /// The `columns` of the row of `table` with this id.
    async fn by_id<T>(&self, (columns, table): (&str, &str), id: &str) -> Result<Option<T>>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
    {
        let sql = format!("SELECT {columns} FROM {table} WHERE id = $1");
        Ok(db::fetch_optional(&self.db.pool, &sql, (id,)).await?)
    }

    /// Starts an empty session, or finds the one a retry of `request_id`
    /// created.
    pub async fn create_session(
        &self,
        request_id: &str,
        spec: &SessionSpec,
        secret_digest: &str,
    ) -> Result<Created> {
        for _ in 0..APPEND_ATTEMPTS {
            let mut tx = self.db.begin_write().await?;
            if let Some(prior) = prior_request(&mut tx, "create", request_id).await? {
                let session = locked_session(&mut tx, &prior.session_id, "")
                    .await?
                    .ok_or_else(|| Error::internal("a recorded create names no session"))?;
                return Ok(Created {
                    session,
                    retried: true,
                });
            }
            let session = self.insert_session(&mut tx, spec, secret_digest).await?;
            let request = Recorded {
                kind: "create",
                request_id,
                session_id: &session.id,
                first: 0,
                last: 0,
                created: true,
                now: session.created_at,
            };
            match request.commit(tx).await {
                Err(Error::Aborted(_)) => continue,
                other => other?,
            }
            return Ok(Created {
                session,
                retried: false,
            });
        }
        Err(raced())
    }

    async fn insert_session(
        &self,
        tx: &mut Transaction<'static, Any>,
        spec: &SessionSpec,
        secret_digest: &str,
    ) -> Result<Session> {
        if self.agent_deleted(tx, &spec.agent_id).await? {
            return Err(agent_deleted());
        }
        let now = self.clock.now_micros();
        let session = Session {
            id: new_id(),
            spec: spec.clone(),
            secret_digest: secret_digest.to_string(),
            state: SessionState::Active,
            title: String::new(),
            message_count: 0,
            created_at: now,
            updated_at: now,
            archived_at: None,
        };
        db::execute(
            &mut **tx,
            "INSERT INTO sessions (id, org_id, agent_id, agent_name, user_id, anonymous, \
             secret_digest, grant_id, project_id, workspace_id, state, title, message_count, \
             created_at, updated_at, archived_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, '', 0, $12, $12, NULL)",
            (
                &session.id,
                &spec.org_id,
                &spec.agent_id,
                &spec.agent_name,
                &spec.user_id,
                i64::from(spec.anonymous),
                secret_digest,
                &spec.grant_id,
                &spec.project_id,
                &spec.workspace_id,
                SessionState::Active.as_str(),
                now,
            ),
        )
        .await?;
        Ok(session)
    }

    /// Appends one turn after the session's last message. `admit` says
    /// whether the caller is the session's owner; it runs under the
    /// session's lock, and on a retry before the first result is returned.
    pub async fn append(
        &self,
        append: &Append<'_>,
        admit: impl Fn(&Session) -> Result<()>,
    ) -> Result<Appended> {
        for _ in 0..APPEND_ATTEMPTS {
            match self.append_once(append, &admit).await {
                Err(Error::Aborted(_)) => continue,
                other => return other,
            }
        }
        Err(raced())
    }

    async fn append_once(
        &self,
        append: &Append<'_>,
        admit: &impl Fn(&Session) -> Result<()>,
    ) -> Result<Appended> {
        let for_update = self.db.backend.for_update();
        let mut tx = self.db.begin_write().await?;
        if let Some(prior) = prior_request(&mut tx, "append", append.request_id).await? {
            let session = locked_session(&mut tx, &prior.session_id, "")
                .await?
                .ok_or_else(|| Error::internal("a recorded append names no session"))?;
            if let Target::Existing(id) = append.target
                && id != session.id
            {
                return Err(Error::invalid(
                    "request_id",
                    "was already used for a turn of another session; use a new request_id per turn",
                ));
            }
            admit(&session)?;
            let messages = messages_between(
                &mut tx,
                &session.id,
                prior.first_sequence,
                prior.last_sequence,
            )
            .await?;
            return Ok(Appended {
                session,
                messages,
                created: prior.created,
            });
        }
        let now = self.clock.now_micros();
        let (mut session, created) = match append.target {
            Target::Existing(id) => {
                let session = locked_session(&mut tx, id, for_update)
                    .await?
                    .ok_or_else(|| Error::not_found("session"))?;
                admit(&session)?;
                if session.state == SessionState::Archived {
                    return Err(agent_deleted());
                }
                if self.agent_deleted(&mut tx, &session.spec.agent_id).await? {
                    // Registry's deletion was recorded while this session was
                    // being created; archive it now instead of continuing it.
                    archive(&mut tx, &session.spec.agent_id, now).await?;
                    tx.commit().await?;
                    return Err(agent_deleted());
                }
                (session, false)
            }
            Target::New {
                spec,
                secret_digest,
            } => (
                self.insert_session(&mut tx, spec, secret_digest).await?,
                true,
            ),
        };
        let first = session.message_count + 1;
        let mut title = None;
        if session.title.is_empty()
            && let Some(first_user) = append.messages.iter().find(|m| m.role == Role::User)
            && !db::exists(
                &mut *tx,
                "SELECT 1 FROM messages WHERE session_id = $1 AND role = 'user' LIMIT 1",
                (&session.id,),
            )
            .await?
        {
            title = Some(rules::title_of(&first_user.content));
        }
        let mut messages = Vec::with_capacity(append.messages.len());
        for (sequence, message) in (first..).zip(append.messages) {
            let stored = Message {
                sequence,
                role: message.role,
                content: message.content.clone(),
                tool_name: message.tool_name.clone(),
                invocation_id: append.invocation_id.to_string(),
                agent_version_number: append.agent_version_number,
                created_at: now,
            };
            db::execute(
                &mut *tx,
                "INSERT INTO messages (session_id, sequence, role, content, tool_name, \
                 invocation_id, agent_version_number, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                (
                    &session.id,
                    stored.sequence,
                    stored.role.as_str(),
                    &stored.content,
                    &stored.tool_name,
                    &stored.invocation_id,
                    stored.agent_version_number,
                    stored.created_at,
                ),
            )
            .await?;
            messages.push(stored);
        }
        let last = first + i64::try_from(messages.len()).unwrap_or(0) - 1;
        if let Some(title) = title {
            session.title = title;
        }
        if !append.agent_name.is_empty() {
            session.spec.agent_name = append.agent_name.to_string();
        }
        session.message_count = last;
        session.updated_at = now;
        db::execute(
            &mut *tx,
            "UPDATE sessions SET message_count = $2, updated_at = $3, title = $4, agent_name = $5 \
             WHERE id = $1",
            (
                &session.id,
                session.message_count,
                now,
                &session.title,
                &session.spec.agent_name,
            ),
        )
        .await?;
        Recorded {
            kind: "append",
            request_id: append.request_id,
            session_id: &session.id,
            first,
            last,
            created,
            now,
        }
        .commit(tx)
        .await?;
        Ok(Appended {
            session,
            messages,
            created,
        })
    }

    async fn agent_deleted(
        &self,
        tx: &mut Transaction<'static, Any>,
        agent_id: &str,
    ) -> Result<bool> {
        Ok(db::exists(
            &mut **tx,
            "SELECT 1 FROM deleted_agents WHERE agent_id = $1",
            (agent_id,),
        )
        .await?)
    }

    /// The page of sessions matching `filter`, newest first; the page
    /// resumes after the session at (`created_at`, `id`).
    pub async fn sessions(&self, filter: &SessionFilter<'_>, page: &Page) -> Result<Vec<Session>> {
        let mut conditions = Conditions::default();
        conditions.text("user_id", filter.user_id);
        conditions.push("anonymous = 0", vec![]);
        for (column, value) in [
            ("org_id", filter.org_id),
            ("grant_id", filter.grant_id),
            ("agent_id", filter.agent_id),
            ("project_id", filter.project_id),
            ("state", filter.state.map(SessionState::as_str)),
        ] {
            if let Some(value) = value {
                conditions.text(column, value);
            }
        }
        conditions
            .newest_page(&self.db.pool, SESSIONS, "created_at", page)
            .await
    }

    /// The page of a session's messages after sequence `after`, in order.
    pub async fn messages(
        &self,
        session_id: &str,
        after: i64,
        page: &Page,
    ) -> Result<Vec<Message>> {
        let after = match page.after() {
            Some(cursor) => rules::cursor_number(cursor)?.max(after),
            None => after,
        };
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = $1 AND sequence > $2 \
             ORDER BY sequence LIMIT $3"
        );
        Ok(db::fetch_all(&self.db.pool, &sql, (session_id, after, page.limit())).await?)
    }

    /// Archives every session of a deleted agent and refuses it new ones.
    /// Idempotent: the first archive time stays.
    pub async fn archive_agent(&self, agent_id: &str) -> Result<u64> {
        let now = self.clock.now_micros();
        let mut tx = self.db.begin_write().await?;
        db::execute(
            &mut *tx,
            "INSERT INTO deleted_agents (agent_id, deleted_at) VALUES ($1, $2) \
             ON CONFLICT (agent_id) DO NOTHING",
            (agent_id, now),
        )
        .await?;
        let archived = archive(&mut tx, agent_id, now).await?;
        tx.commit().await?;
        Ok(archived)
    }

    /// Stores a run's start. `None` when stored now; otherwise the record
    /// already stored under this id.
    pub async fn record(&self, invocation: &Invocation) -> Result<Option<Invocation>> {
        let facts = &invocation.facts;
        let integrations = serde_json::to_string(&facts.integrations).map_err(Error::internal)?;
        let inserted = db::execute(
            &self.db.pool,
            "INSERT INTO invocations (id, org_id, agent_id, agent_owner_user_id, \
             agent_version_number, draft_run, caller_kind, user_id, anonymous, grant_id, \
             session_id, project_id, automation_run_id, integrations, executes_as_user_id, \
             billed_to_user_id, store_partition, status, error_code, error_message, \
             duration_micros, start_time, end_time, input_tokens, output_tokens) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18, '', '', NULL, $19, NULL, 0, 0) ON CONFLICT (id) DO NOTHING",
            (
                &invocation.id,
                &facts.org_id,
                &facts.agent_id,
                &facts.agent_owner_user_id,
                facts.agent_version_number,
                i64::from(facts.draft_run),
                facts.caller_kind.as_str(),
                &facts.user_id,
                i64::from(facts.anonymous),
                &facts.grant_id,
                &facts.session_id,
                &facts.project_id,
                &facts.automation_run_id,
                integrations,
                &facts.executes_as_user_id,
                &facts.billed_to_user_id,
                &facts.store_partition,
                Status::Running.as_str(),
                facts.start_time,
            ),
        )
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(None);
        }
        self.invocation(&invocation.id)
            .await?
            .map(Some)
            .ok_or_else(|| Error::internal("an invocation id conflicted but is not stored"))
    }

    pub async fn invocation(&self, id: &str) -> Result<Option<Invocation>> {
        self.by_id(INVOCATIONS, id).await
    }

    /// Records a run's end if it is still RUNNING; whether it was.
    pub async fn complete(&self, id: &str, end: &Completed<'_>) -> Result<bool> {
        let done = db::execute(
            &self.db.pool,
            "UPDATE invocations SET status = $2, error_code = $3, error_message = $4, \
             end_time = $5, duration_micros = $6, input_tokens = $7, output_tokens = $8, \
             session_id = CASE WHEN $9 = '' THEN session_id ELSE $9 END \
             WHERE id = $1 AND status = 'running'",
            (
                id,
                end.status.as_str(),
                end.error_code,
                end.error_message,
                end.end_time,
                end.duration_micros,
                end.input_tokens,
                end.output_tokens,
                end.session_id,
            ),
        )
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The page of records, newest first by start time; the page resumes
    /// after the record at (`start_time`, `id`).
    pub async fn invocations(
        &self,
        filter: &UsageFilter,
        range: Range,
        status: Option<Status>,
        page: &Page,
    ) -> Result<Vec<Invocation>> {
        usage_conditions(filter, range, status)
            .newest_page(&self.db.pool, INVOCATIONS, "start_time", page)
            .await
    }

    /// Totals per group (`agent_id` or `billed_to_user_id`) and UTC day.
    /// Days are integer division of microseconds, the same on both
    /// backends; months are folded from them by the domain.
    pub async fn daily_totals(
        &self,
        filter: &UsageFilter,
        range: Range,
        by_agent: bool,
    ) -> Result<Vec<DayTotals>> {
        let group = if by_agent {
            "agent_id"
        } else {
            "billed_to_user_id"
        };
        let conditions = usage_conditions(filter, range, None);
        let sql = format!(
            "SELECT {group} AS grp, start_time / 86400000000 * 86400000000 AS day, \
             COUNT(*) AS invocations, \
             CAST(SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END) AS BIGINT) AS succeeded, \
             CAST(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS BIGINT) AS failed, \
             CAST(SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END) AS BIGINT) AS cancelled, \
             CAST(SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END) AS BIGINT) AS running, \
             CAST(COALESCE(SUM(duration_micros), 0) AS BIGINT) AS duration_micros, \
             CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, \
             CAST(SUM(output_tokens) AS BIGINT) AS output_tokens \
             FROM invocations{} GROUP BY {group}, start_time / 86400000000",
            conditions.clause()
        );
        Ok(conditions.query_as(&sql).fetch_all(&self.db.pool).await?)
    }

    /// Whether `user_id` owned `agent_id` when any of its runs started.
    pub async fn owned_runs(&self, agent_id: &str, user_id: &str) -> Result<bool> {
        Ok(db::exists(
            &self.db.pool,
            "SELECT 1 FROM invocations WHERE agent_id = $1 AND agent_owner_user_id = $2 LIMIT 1",
            (agent_id, user_id),
        )
        .await?)
    }
}

fn agent_deleted() -> Error {
    Error::FailedPrecondition(
        "agent deleted: its sessions stay readable but take no new turns".into(),
    )
}

fn raced() -> Error {
    Error::Aborted("the request raced a retry of itself; retry it".into())
}

async fn archive(tx: &mut Transaction<'static, Any>, agent_id: &str, now: i64) -> Result<u64> {
    let done = db::execute(
        &mut **tx,
        "UPDATE sessions SET state = 'archived', archived_at = $2 \
         WHERE agent_id = $1 AND state = 'active'",
        (agent_id, now),
    )
    .await?;
    Ok(done.rows_affected())
}

async fn locked_session(
    tx: &mut Transaction<'static, Any>,
    id: &str,
    for_update: &str,
) -> Result<Option<Session>> {
    let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1{for_update}");
    Ok(db::fetch_optional(&mut **tx, &sql, (id,)).await?)
}

async fn messages_between(
    tx: &mut Transaction<'static, Any>,
    session_id: &str,
    first: i64,
    last: i64,
) -> Result<Vec<Message>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = $1 \
         AND sequence >= $2 AND sequence <= $3 ORDER BY sequence"
    );
    Ok(db::fetch_all(&mut **tx, &sql, (session_id, first, last)).await?)
}

/// What an earlier call with the same idempotency key did.
#[derive(sqlx::FromRow)]
struct PriorRequest {
    session_id: String,
    first_sequence: i64,
    last_sequence: i64,
    #[sqlx(try_from = "Stored<i64>")]
    created: bool,
}

async fn prior_request(
    tx: &mut Transaction<'static, Any>,
    kind: &str,
    request_id: &str,
) -> Result<Option<PriorRequest>> {
    Ok(db::fetch_optional(
        &mut **tx,
        "SELECT session_id, first_sequence, last_sequence, created FROM session_requests \
         WHERE kind = $1 AND request_id = $2",
        (kind, request_id),
    )
    .await?)
}

/// What a call with an idempotency key did, recorded in the transaction
/// that did it.
struct Recorded<'a> {
    kind: &'static str,
    request_id: &'a str,
    session_id: &'a str,
    first: i64,
    last: i64,
    created: bool,
    now: i64,
}

impl Recorded<'_> {
    /// Records the request and commits; ABORTED when a duplicate of the
    /// request committed first, so the caller retries and finds it.
    async fn commit(&self, mut tx: Transaction<'static, Any>) -> Result<()> {
        let inserted = db::execute(
            &mut *tx,
            "INSERT INTO session_requests (kind, request_id, session_id, first_sequence, \
             last_sequence, created, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            (
                self.kind,
                self.request_id,
                self.session_id,
                self.first,
                self.last,
                i64::from(self.created),
                self.now,
            ),
        )
        .await;
        let committed = match inserted {
            Ok(_) => tx.commit().await,
            Err(error) => Err(error),
        };
        match committed {
            Err(e) if is_unique_violation(&e) => Err(raced()),
            other => Ok(other?),
        }
    }
}
