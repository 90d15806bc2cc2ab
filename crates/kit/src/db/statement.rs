//! A statement and its parameters in one call, as rusqlite and
//! tokio-postgres take them: `db::fetch_optional(&pool, sql, (org_id,
//! user_id))` binds `org_id` to `$1` and `user_id` to `$2`. The parameters
//! stand beside the SQL that numbers them, and the call names what it
//! fetches, so a read is one statement instead of a `.bind` per value.
//!
//! Each call runs on any executor: the pool, or a transaction as
//! `&mut *tx`. Errors are sqlx's, so a caller can still tell a uniqueness
//! violation ([`super::is_unique_violation`]) from the rest. A statement
//! whose parameters depend on its filters builds its query with sqlx's own
//! `.bind` instead.

use sqlx::any::{AnyArguments, AnyQueryResult, AnyRow};
use sqlx::error::BoxDynError;
use sqlx::{Any, Arguments, Encode, Executor, FromRow, Type};

use crate::page::Page;

/// One parameter of a statement: a value, or a [`Page`], which is two.
pub trait Param<'q> {
    fn add_to(self, arguments: &mut AnyArguments<'q>) -> Result<(), BoxDynError>;
}

impl<'q, T> Param<'q> for T
where
    T: 'q + Encode<'q, Any> + Type<Any>,
{
    fn add_to(self, arguments: &mut AnyArguments<'q>) -> Result<(), BoxDynError> {
        arguments.add(self)
    }
}

/// A listing's last two parameters: the key its page starts after (`''` on
/// the first page) and how many rows to fetch, one more than the page.
impl<'q> Param<'q> for &'q Page {
    fn add_to(self, arguments: &mut AnyArguments<'q>) -> Result<(), BoxDynError> {
        arguments.add(self.after().unwrap_or_default())?;
        arguments.add(self.limit())
    }
}

/// A statement's parameters, bound to `$1, $2, …` in order: `()` for none,
/// else a tuple, `(id,)` for one.
pub trait Params<'q> {
    fn arguments(self) -> Result<AnyArguments<'q>, BoxDynError>;
}

/// `Params` for tuples of every length up to the one named, by taking one
/// value off the front at a time.
macro_rules! tuple_params {
    () => {
        impl<'q> Params<'q> for () {
            fn arguments(self) -> Result<AnyArguments<'q>, BoxDynError> {
                Ok(AnyArguments::default())
            }
        }
    };
    ($first:ident $(, $rest:ident)*) => {
        impl<'q, $first: Param<'q> $(, $rest: Param<'q>)*> Params<'q> for ($first, $($rest,)*) {
            #[allow(non_snake_case)]
            fn arguments(self) -> Result<AnyArguments<'q>, BoxDynError> {
                let ($first, $($rest,)*) = self;
                let mut arguments = AnyArguments::default();
                $first.add_to(&mut arguments)?;
                $($rest.add_to(&mut arguments)?;)*
                Ok(arguments)
            }
        }
        tuple_params!($($rest),*);
    };
}

tuple_params!(A, B, C, D, E, F, G, H, I, J, K, L, M, N, O, P, Q, R, S, T);

/// `params` as sqlx binds them; a value that cannot be encoded fails the
/// statement, as with `.bind`.
fn arguments<'q>(params: impl Params<'q>) -> Result<AnyArguments<'q>, sqlx::Error> {
    params.arguments().map_err(sqlx::Error::Encode)
}

/// Runs a statement that returns no rows.
pub async fn execute<'q, 'c>(
    executor: impl Executor<'c, Database = Any>,
    sql: &'q str,
    params: impl Params<'q>,
) -> Result<AnyQueryResult, sqlx::Error> {
    sqlx::query_with(sql, arguments(params)?)
        .execute(executor)
        .await
}

/// Whether a statement returns any row, such as `SELECT 1 … WHERE …`.
pub async fn exists<'q, 'c>(
    executor: impl Executor<'c, Database = Any>,
    sql: &'q str,
    params: impl Params<'q>,
) -> Result<bool, sqlx::Error> {
    let row: Option<()> = fetch_optional(executor, sql, params).await?;
    Ok(row.is_some())
}

/// Functions that run a statement on an executor and fetch with the sqlx
/// method of the same name, from `$query` reading each row as `$row`.
macro_rules! fetchers {
    ($row:ty, by $query:ident: $($(#[$doc:meta])* $name:ident -> $rows:ty;)+) => {$(
        $(#[$doc])*
        pub async fn $name<'q, 'c, T>(
            executor: impl Executor<'c, Database = Any>,
            sql: &'q str,
            params: impl Params<'q>,
        ) -> Result<$rows, sqlx::Error>
        where
            T: Send + Unpin,
            $row: for<'r> FromRow<'r, AnyRow>,
        {
            sqlx::$query(sql, arguments(params)?).$name(executor).await
        }
    )+};
}

fetchers! {
    T, by query_as_with:
    /// The one row a statement returns; an error when there is none.
    fetch_one -> T;
    /// The first row a statement returns, if any.
    fetch_optional -> Option<T>;
    /// Every row a statement returns.
    fetch_all -> Vec<T>;
}

/// Statements that select one column, read as its value rather than as a
/// row of one.
pub mod scalar {
    use super::*;

    fetchers! {
        (T,), by query_scalar_with:
        /// The value of the one row a statement returns; an error when
        /// there is none.
        fetch_one -> T;
        /// The value of the first row a statement returns, if any.
        fetch_optional -> Option<T>;
        /// The value of every row a statement returns.
        fetch_all -> Vec<T>;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    async fn db() -> Db {
        let db = Db::connect("sqlite::memory:", 1).await.expect("connect");
        execute(&db.pool, "CREATE TABLE t (id TEXT, n BIGINT)", ())
            .await
            .expect("create");
        for (id, n) in [("a", 1_i64), ("b", 2), ("c", 3)] {
            execute(&db.pool, "INSERT INTO t (id, n) VALUES ($1, $2)", (id, n))
                .await
                .expect("insert");
        }
        db
    }

    #[tokio::test]
    async fn parameters_bind_in_order() {
        let db = db().await;
        let row: Option<(String, i64)> = fetch_optional(
            &db.pool,
            "SELECT id, n FROM t WHERE id = $1 AND n = $2",
            ("b", 2_i64),
        )
        .await
        .expect("fetch");
        assert_eq!(row, Some(("b".to_string(), 2)));
        let found = exists(&db.pool, "SELECT 1 FROM t WHERE n > $1", (3_i64,));
        assert!(!found.await.expect("exists"));
    }

    #[tokio::test]
    async fn a_page_binds_the_key_it_starts_after_and_one_row_more() {
        let db = db().await;
        let sql = "SELECT id FROM t WHERE n > $1 AND ($2 = '' OR id > $2) ORDER BY id LIMIT $3";
        let first = Page::of(1, "", "t").expect("page");
        let ids: Vec<String> = scalar::fetch_all(&db.pool, sql, (0_i64, &first))
            .await
            .expect("first page");
        assert_eq!(ids, ["a", "b"]);
        let (_, token) = first.split(ids, Clone::clone);
        let next = Page::of(1, &token, "t").expect("next page");
        let ids: Vec<String> = scalar::fetch_all(&db.pool, sql, (0_i64, &next))
            .await
            .expect("second page");
        assert_eq!(ids, ["b", "c"]);
    }

    #[tokio::test]
    async fn a_json_list_is_one_parameter_for_any_number_of_values() {
        let db = db().await;
        let mut wanted: Vec<String> = (0..5_000).map(|n| format!("x{n}")).collect();
        wanted.push("c".into());
        wanted.push("a".into());
        let sql = format!(
            "SELECT id FROM t WHERE id IN ({}) ORDER BY id",
            db.backend.listed(1)
        );
        let ids: Vec<String> = scalar::fetch_all(&db.pool, &sql, (crate::db::json_list(&wanted),))
            .await
            .expect("fetch");
        assert_eq!(ids, ["a", "c"]);
    }
}
