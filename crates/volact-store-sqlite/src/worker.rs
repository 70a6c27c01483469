//! A SQLite connection on a thread of its own, for the two write paths that run for
//! every activation: appending to the journal and applying it to the database.
//!
//! sqlx, which serves every other query, sends each statement to its connection's
//! thread as a message and boxes each bound value; at tens of thousands of rows a
//! second that is most of the cost of a row. Here a whole job (a batch, a fold) is one
//! message, and its statements run with rusqlite's cached prepared statements on the
//! thread that owns the connection. Both crates use the same bundled SQLite library.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::DbError;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

enum Message {
    Run(Job),
    /// Close the connection, then answer.
    Close(oneshot::Sender<()>),
}

/// The handle to a connection's thread. The thread ends, closing the connection, when
/// closed or when the last handle is dropped.
#[derive(Debug, Clone)]
pub(super) struct Worker {
    jobs: mpsc::Sender<Message>,
}

fn stopped() -> DbError {
    DbError::Corrupt("the database connection's thread has stopped".to_owned())
}

impl Worker {
    /// Opens `path` on a new thread named `name` and runs `setup` on it first (pragmas,
    /// tables). `read_only` opens without write access, so every write fails.
    pub(super) async fn open(
        name: &str,
        path: &Path,
        read_only: bool,
        busy: Duration,
        setup: impl FnOnce(&mut Connection) -> Result<(), DbError> + Send + 'static,
    ) -> Result<Worker, DbError> {
        let (jobs, queue) = mpsc::channel::<Message>();
        let (opened, wait) = oneshot::channel();
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let flags = if read_only {
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
                } else {
                    OpenFlags::SQLITE_OPEN_READ_WRITE
                        | OpenFlags::SQLITE_OPEN_CREATE
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX
                };
                let connection = Connection::open_with_flags(&path, flags)
                    .map_err(DbError::from)
                    .and_then(|mut c| {
                        c.busy_timeout(busy)?;
                        setup(&mut c)?;
                        Ok(c)
                    });
                let mut connection = match connection {
                    Ok(c) => {
                        let _ = opened.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = opened.send(Err(e));
                        return;
                    }
                };
                while let Ok(message) = queue.recv() {
                    match message {
                        Message::Run(job) => job(&mut connection),
                        Message::Close(done) => {
                            drop(connection);
                            let _ = done.send(());
                            return;
                        }
                    }
                }
            })
            .map_err(DbError::Io)?;
        wait.await.map_err(|_| stopped())??;
        Ok(Worker { jobs })
    }

    /// Runs `job` on the connection's thread and returns its result.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let (done, wait) = oneshot::channel();
        self.jobs
            .send(Message::Run(Box::new(move |c: &mut Connection| {
                let _ = done.send(job(c));
            })))
            .map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?
    }

    /// Closes the connection once the jobs sent before are done (the last connection to
    /// a database checkpoints its log as it closes). Later jobs fail.
    pub(super) async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.jobs.send(Message::Close(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// The pragmas of a write connection: the log is flushed by `durable`, not by each
/// commit, and statement journals stay in memory (a multi-row change keeps one to undo
/// itself alone; on disk, the default past 64 KiB, it is a file written per statement).
pub(super) fn write_pragmas(c: &Connection, cache_kib: i64) -> Result<(), DbError> {
    c.pragma_update(None, "journal_mode", "wal")?;
    c.pragma_update(None, "synchronous", "normal")?;
    c.pragma_update(None, "temp_store", "memory")?;
    c.pragma_update(None, "cache_size", -cache_kib)?;
    Ok(())
}
