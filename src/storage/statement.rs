//! Statements written once and run on either storage database.
//!
//! PostgreSQL goes through sqlx's pool. SQLite runs on the calling task, on the store's one
//! `rusqlite` connection: a statement on an in-process file takes tens of microseconds, far
//! less than the two thread hand-offs a connection on a thread of its own costs per
//! statement (sqlx's SQLite driver), which were a third of the server's CPU per issued
//! credential and, on a busy machine, a wait for a core twice per request. The price: a
//! slow statement (the metrics scrape's counts over every lease, a bulk insert) holds its
//! worker thread as long as it holds the connection.
//!
//! Placeholders are `$1`, `$2`, ... on both: SQLite reads `$1` as a parameter named `$1`,
//! and the SQLite side binds each parameter by the number in its name, so a statement may
//! use its arguments in any order and more than once, as on PostgreSQL.

use std::borrow::Cow;

use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Column as _, Row as _, TypeInfo as _};

use super::{Result, StorageError};

/// A value bound to a statement or read from a row. Nulls keep their type, which
/// PostgreSQL needs to accept a typed parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// `BIGINT` / `INTEGER`.
    Int(Option<i64>),
    /// `TEXT`.
    Text(Option<String>),
    /// `BYTEA` / `BLOB`.
    Bytes(Option<Vec<u8>>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(Some(v))
    }
}

impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Self {
        Value::Int(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(Some(v.to_owned()))
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(Some(v.clone()))
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(Some(v))
    }
}

impl From<Option<&str>> for Value {
    fn from(v: Option<&str>) -> Self {
        Value::Text(v.map(str::to_owned))
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Bytes(Some(v.to_vec()))
    }
}

/// One SQL statement and its arguments (`$1` is the first).
#[derive(Debug, Clone)]
pub(crate) struct Statement {
    sql: Cow<'static, str>,
    args: Vec<Value>,
}

impl Statement {
    /// A statement without arguments yet.
    pub(crate) fn new(sql: impl Into<Cow<'static, str>>) -> Self {
        Statement {
            sql: sql.into(),
            args: Vec::new(),
        }
    }

    /// Appends the next argument.
    pub(crate) fn bind(mut self, value: impl Into<Value>) -> Self {
        self.args.push(value.into());
        self
    }
}

/// A row read from either database, its columns in the statement's order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row(Vec<Value>);

impl Row {
    fn column(&self, index: usize) -> Result<&Value> {
        self.0
            .get(index)
            .ok_or_else(|| StorageError::Corrupt(format!("row has no column {index}")))
    }

    /// A non-null integer column.
    pub(crate) fn int(&self, index: usize) -> Result<i64> {
        self.opt_int(index)?
            .ok_or_else(|| StorageError::Corrupt(format!("column {index} is null")))
    }

    /// A nullable integer column.
    pub(crate) fn opt_int(&self, index: usize) -> Result<Option<i64>> {
        match self.column(index)? {
            Value::Int(v) => Ok(*v),
            Value::Text(None) | Value::Bytes(None) => Ok(None),
            other => Err(mismatch(index, "an integer", other)),
        }
    }

    /// A non-null text column.
    pub(crate) fn text(&self, index: usize) -> Result<String> {
        self.opt_text(index)?
            .ok_or_else(|| StorageError::Corrupt(format!("column {index} is null")))
    }

    /// A nullable text column.
    pub(crate) fn opt_text(&self, index: usize) -> Result<Option<String>> {
        match self.column(index)? {
            Value::Text(v) => Ok(v.clone()),
            Value::Int(None) | Value::Bytes(None) => Ok(None),
            other => Err(mismatch(index, "text", other)),
        }
    }

    /// A nullable byte-string column.
    pub(crate) fn opt_bytes(&self, index: usize) -> Result<Option<Vec<u8>>> {
        match self.column(index)? {
            Value::Bytes(v) => Ok(v.clone()),
            Value::Int(None) | Value::Text(None) => Ok(None),
            other => Err(mismatch(index, "bytes", other)),
        }
    }

    /// A non-null byte-string column.
    pub(crate) fn bytes(&self, index: usize) -> Result<Vec<u8>> {
        self.opt_bytes(index)?
            .ok_or_else(|| StorageError::Corrupt(format!("column {index} is null")))
    }
}

/// Names the kind of value only: a column may hold a sealed secret.
fn mismatch(index: usize, wanted: &str, got: &Value) -> StorageError {
    let kind = match got {
        Value::Int(_) => "an integer",
        Value::Text(_) => "text",
        Value::Bytes(_) => "bytes",
    };
    StorageError::Corrupt(format!("column {index}: expected {wanted}, found {kind}"))
}

/// Prepares `statement` on SQLite (from the connection's cache) and binds its arguments.
fn prepare_sqlite<'c>(
    conn: &'c rusqlite::Connection,
    statement: &Statement,
) -> Result<rusqlite::CachedStatement<'c>> {
    let mut prepared = conn.prepare_cached(&statement.sql)?;
    for index in 1..=prepared.parameter_count() {
        let argument = prepared
            .parameter_name(index)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| n.checked_sub(1))
            .and_then(|n| statement.args.get(n))
            .ok_or_else(|| {
                StorageError::Corrupt(format!(
                    "statement parameter {index} has no argument: {}",
                    statement.sql
                ))
            })?;
        match argument {
            Value::Int(v) => prepared.raw_bind_parameter(index, v)?,
            Value::Text(v) => prepared.raw_bind_parameter(index, v)?,
            Value::Bytes(v) => prepared.raw_bind_parameter(index, v)?,
        }
    }
    Ok(prepared)
}

/// Runs `statement` on SQLite and returns how many rows it changed.
pub(crate) fn sqlite_execute(conn: &rusqlite::Connection, statement: &Statement) -> Result<u64> {
    Ok(prepare_sqlite(conn, statement)?.raw_execute()? as u64)
}

/// Runs `statement` on SQLite and returns its rows.
pub(crate) fn sqlite_fetch(conn: &rusqlite::Connection, statement: &Statement) -> Result<Vec<Row>> {
    use rusqlite::types::ValueRef;
    let mut prepared = prepare_sqlite(conn, statement)?;
    let columns = prepared.column_count();
    let mut rows = Vec::new();
    let mut cursor = prepared.raw_query();
    while let Some(row) = cursor.next()? {
        let mut values = Vec::with_capacity(columns);
        for index in 0..columns {
            values.push(match row.get_ref(index)? {
                ValueRef::Null => Value::Int(None),
                ValueRef::Integer(v) => Value::Int(Some(v)),
                ValueRef::Real(_) => {
                    return Err(StorageError::Corrupt(format!(
                        "column {index} holds a floating-point number"
                    )));
                }
                ValueRef::Text(v) => Value::Text(Some(
                    std::str::from_utf8(v)
                        .map_err(|_| StorageError::Corrupt(format!("column {index} is not UTF-8")))?
                        .to_owned(),
                )),
                ValueRef::Blob(v) => Value::Bytes(Some(v.to_vec())),
            });
        }
        rows.push(Row(values));
    }
    Ok(rows)
}

/// The sqlx query for `statement`, its arguments bound.
fn pg_query(
    statement: &Statement,
) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let mut query = sqlx::query(sqlx::AssertSqlSafe(statement.sql.as_ref()));
    for argument in &statement.args {
        query = match argument {
            Value::Int(v) => query.bind(*v),
            Value::Text(v) => query.bind(v.as_deref()),
            Value::Bytes(v) => query.bind(v.as_deref()),
        };
    }
    query
}

/// Runs `statement` on PostgreSQL and returns how many rows it changed.
pub(crate) async fn postgres_execute(pool: &PgPool, statement: &Statement) -> Result<u64> {
    Ok(pg_query(statement).execute(pool).await?.rows_affected())
}

/// Runs `statement` on PostgreSQL and returns its rows.
pub(crate) async fn postgres_fetch(pool: &PgPool, statement: &Statement) -> Result<Vec<Row>> {
    pg_query(statement)
        .fetch_all(pool)
        .await?
        .iter()
        .map(pg_row)
        .collect()
}

/// Runs `statements` on PostgreSQL in one transaction.
pub(crate) async fn postgres_execute_all(pool: &PgPool, statements: &[Statement]) -> Result<()> {
    let mut tx = pool.begin().await?;
    for statement in statements {
        pg_query(statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

fn pg_row(row: &PgRow) -> Result<Row> {
    let mut values = Vec::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        values.push(match column.type_info().name() {
            "INT8" => Value::Int(row.try_get(index)?),
            "INT4" => Value::Int(row.try_get::<Option<i32>, _>(index)?.map(i64::from)),
            "TEXT" | "VARCHAR" | "NAME" => Value::Text(row.try_get(index)?),
            "BYTEA" => Value::Bytes(row.try_get(index)?),
            other => {
                return Err(StorageError::Corrupt(format!(
                    "column {index} has the unexpected type {other}"
                )));
            }
        });
    }
    Ok(Row(values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_binds_by_the_number_in_the_placeholder() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let statement = Statement::new("SELECT $2, $1, $2 || 'x', $3")
            .bind(7)
            .bind("a")
            .bind(Option::<&str>::None);
        let rows = sqlite_fetch(&conn, &statement).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].text(0).unwrap(), "a");
        assert_eq!(rows[0].int(1).unwrap(), 7);
        assert_eq!(rows[0].text(2).unwrap(), "ax");
        assert_eq!(rows[0].opt_text(3).unwrap(), None);
        assert!(rows[0].int(0).is_err(), "text read as an integer");
        assert!(rows[0].int(9).is_err(), "a column past the end");
    }

    #[test]
    fn a_placeholder_without_an_argument_is_an_error_not_a_null() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let err = sqlite_fetch(&conn, &Statement::new("SELECT $1, $2").bind(1))
            .err()
            .unwrap();
        assert!(err.to_string().contains("parameter 2"), "{err}");
    }
}
