//! The two database backends behind one type: [`Db`] holds either an SQLite or a PostgreSQL
//! pool, and [`on_db!`] runs one block of query code against whichever it is.
//!
//! Why an enum and not `sqlx::Any`: each backend keeps its own connection options (WAL and
//! `synchronous = NORMAL` for SQLite, a pool size for PostgreSQL), its own typed rows, and no
//! run-time driver registry. The SQL itself is shared: both accept `$N` placeholders, `ON
//! CONFLICT ... DO UPDATE`, row values and `CASE`; only the migrations differ (types,
//! collations), and both are checked by the same contract tests.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::SqlSafeStr;

use crate::config::{IndexConfig, Target};
use crate::error::IndexError;

/// Which database an [`Index`](crate::Index) uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A pool of one of the two backends.
#[derive(Clone, Debug)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool (`&SqlitePool` or `&PgPool`): the body is
/// compiled once per backend, so rows, transactions and query builders keep their own types.
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool) => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_db;

/// SQLite has one writer at a time; a few connections let readers (the feed, `ls`) run beside it.
const SQLITE_CONNECTIONS: u32 = 4;

/// The table sqlx records applied migrations in: named for agora, in case the PostgreSQL
/// database is shared with something else that uses sqlx.
const MIGRATIONS_TABLE: &str = "agora_index_migrations";

fn migrator(backend: Backend) -> Migrator {
    let initial: &'static str = match backend {
        Backend::Sqlite => include_str!("../migrations/sqlite/0001_initial.sql"),
        Backend::Postgres => include_str!("../migrations/postgres/0001_initial.sql"),
    };
    let mut m = Migrator::with_migrations(vec![Migration::new(
        1,
        Cow::Borrowed("initial"),
        MigrationType::Simple,
        initial.into_sql_str(),
        false,
    )]);
    m.dangerous_set_table_name(MIGRATIONS_TABLE);
    m
}

impl Db {
    /// Connects (creating the SQLite file and its directory on first start) and brings the
    /// schema up to date. Never scans anything: start-up costs a connection and a migration check.
    pub(crate) async fn open(config: &IndexConfig, target: &Target) -> Result<Db, IndexError> {
        let shown = target.to_string();
        let connect_err = |e: sqlx::Error| IndexError::Connect {
            url: shown.clone(),
            message: agora_secret::redact(&e.to_string()),
        };
        let db = match target {
            Target::Sqlite(path) => {
                create_parent(path)?;
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    // Readers never block the writer and the reverse; NORMAL is durable against a
                    // crash of agora (a power loss may cost the last transactions, which a
                    // rebuild or the next serve records again).
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(config.connect_timeout);
                let pool = SqlitePoolOptions::new()
                    .max_connections(SQLITE_CONNECTIONS.min(config.max_connections.max(1)))
                    .acquire_timeout(config.connect_timeout)
                    .connect_with(options)
                    .await
                    .map_err(connect_err)?;
                Db::Sqlite(pool)
            }
            Target::Postgres(url) => {
                let options = PgConnectOptions::from_str(url)
                    .map_err(connect_err)?
                    .application_name("agora");
                let pool = PgPoolOptions::new()
                    .max_connections(config.max_connections.max(1))
                    .acquire_timeout(config.connect_timeout)
                    .connect_with(options)
                    .await
                    .map_err(connect_err)?;
                Db::Postgres(pool)
            }
        };
        let migrate_err = |e: sqlx::migrate::MigrateError| IndexError::Migrate {
            url: shown.clone(),
            message: agora_secret::redact(&e.to_string()),
        };
        // Replicas starting at once are safe: sqlx takes an advisory lock on PostgreSQL.
        match &db {
            Db::Sqlite(pool) => migrator(Backend::Sqlite).run(pool).await,
            Db::Postgres(pool) => migrator(Backend::Postgres).run(pool).await,
        }
        .map_err(migrate_err)?;
        Ok(db)
    }

    pub(crate) fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    pub(crate) async fn close(&self) {
        on_db!(self, pool => pool.close().await)
    }
}

fn create_parent(path: &Path) -> Result<(), IndexError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| IndexError::Dir {
                path: dir.to_owned(),
                source,
            })
        }
        _ => Ok(()),
    }
}
