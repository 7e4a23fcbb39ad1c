//! The job database: one SQLite file (WAL mode) in the run directory.
//!
//! It is the checkpoint of everything: there is no other state file. Every state
//! transition of a calculation is one transaction, so a crash at any instant leaves
//! either the state before or the state after, never something in between.
//!
//! Statuses of a calculation: `pending -> running -> done | failed | timeout`, and
//! `running -> pending` when an attempt fails with retry budget left or when the
//! orchestrator died while the attempt was in flight and the attempt left no result.

pub mod admin;
mod campaign;
mod configs;
mod learning;
mod lease;
mod lock;
mod properties;
mod recover;
mod report_data;
mod sched;
mod schema;

pub use campaign::{CalcBrief, CampaignMetrics, EngineMetrics, ResetReport, RunningCalc, UpdateCandidate, ValueStats};
pub use configs::RunConfigRecord;
pub use learning::{GenerationRecord, LoopState, ModelRecord, Phase, SegmentRecord};
pub use lease::this_process_owner;
pub use lock::{utc, RunLock, LOCK_FILE};
pub use properties::{PropertyOutcome, PropertyRecord};
pub use report_data::{AttemptGroup, CandidatePoint, DoneFigures, LoopEvent, RemediationGroup, StatusGroup};
pub use sched::INTENT_PREFIX;

use autopipe_atoms::Structure;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The database file name inside a run directory.
pub const DB_FILE: &str = "autopipe.db";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: not an MLIP-AutoPipe database (the file is damaged or of another kind: {source}); it was left untouched (`autopipe doctor` checks a damaged run directory)")]
    Corrupt { path: PathBuf, source: rusqlite::Error },
    #[error("{path}: the database is damaged ({problems}); nothing was changed. `autopipe doctor --dir {dir}` checks it and says what can be recovered")]
    Damaged { path: PathBuf, dir: PathBuf, problems: String },
    #[error("another autopipe ({holder}) is running in {dir}; wait for it to end or stop it, then run this again")]
    Locked { dir: PathBuf, holder: String },
    #[error("{path}: no job database here (run `autopipe jobs import` or `autopipe run` first)")]
    Missing { path: PathBuf },
    #[error("{path}: database schema version {found} is newer than this program understands ({supported}); upgrade autopipe")]
    TooNew { path: PathBuf, found: i64, supported: i64 },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("calculation {id} is not in state {expected} (it is {found})")]
    WrongState { id: i64, expected: &'static str, found: String },
    #[error("no calculation with id {0}")]
    NoSuchCalculation(i64),
    #[error("stored data of calculation {id} is unreadable: {message}")]
    BadRow { id: i64, message: String },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Status of a calculation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalcStatus {
    Pending,
    Submitted,
    Running,
    Done,
    Failed,
    Timeout,
    /// Stopped by the user (`jobs cancel`): never runs again unless reset.
    Cancelled,
}

impl CalcStatus {
    pub const ALL: [CalcStatus; 7] = [
        CalcStatus::Pending,
        CalcStatus::Submitted,
        CalcStatus::Running,
        CalcStatus::Done,
        CalcStatus::Failed,
        CalcStatus::Timeout,
        CalcStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CalcStatus::Pending => "pending",
            CalcStatus::Submitted => "submitted",
            CalcStatus::Running => "running",
            CalcStatus::Done => "done",
            CalcStatus::Failed => "failed",
            CalcStatus::Timeout => "timeout",
            CalcStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<CalcStatus> {
        CalcStatus::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Why an attempt failed. Physics failures and infrastructure failures have separate
/// retry budgets; an infrastructure failure never burns the physics budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The engine ran but its answer is not trustworthy (e.g. SCF not converged).
    Physics,
    /// The wall-time limit was exceeded and the job was killed.
    Timeout,
    /// The job process was killed by a signal it did not expect.
    Killed,
    /// The job process exited with an error, or left no result.
    Crashed,
    /// The job could not even be started (job directory, executable ...).
    Setup,
    /// The input can never succeed (invalid structure, unsupported element, missing
    /// pseudopotential file): failed at once, no retry.
    Input,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Physics => "physics",
            FailureKind::Timeout => "timeout",
            FailureKind::Killed => "killed",
            FailureKind::Crashed => "crashed",
            FailureKind::Setup => "setup",
            FailureKind::Input => "input",
        }
    }

    pub fn is_physics(self) -> bool {
        self == FailureKind::Physics
    }
}

/// A calculation to add.
#[derive(Clone, Debug)]
pub struct NewCalculation {
    pub structure: Structure,
    /// Where the structure came from: "import:FILE", "generated:fcc", "md" ...
    pub origin: String,
    pub generation: i64,
    /// Engine name, e.g. "emt".
    pub engine: String,
    /// Label-defining parameters only (never convergence knobs or run options):
    /// part of the idempotency key.
    pub label_params: serde_json::Value,
    /// Everything the engine needs to run (may include convergence knobs); not hashed.
    pub run_spec: serde_json::Value,
}

/// The idempotency key of a calculation: a content hash of the structure and the
/// label-defining parameters. Parameters are hashed as canonical (key-sorted) JSON.
pub fn calculation_key(structure_hash: &str, engine: &str, label_params: &serde_json::Value) -> String {
    let mut h = Sha256::new();
    h.update(structure_hash.as_bytes());
    h.update([0]);
    h.update(engine.as_bytes());
    h.update([0]);
    h.update(serde_json::to_string(label_params).expect("JSON values serialise").as_bytes());
    autopipe_atoms::structure::hex(&h.finalize())
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    pub added: usize,
    pub already_present: usize,
}

/// An attempt that was just started: everything the executor needs to run it.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub calculation_id: i64,
    pub attempt_id: i64,
    /// 1-based attempt number of this calculation.
    pub attempt: u32,
    pub physics_failures: u32,
    pub infra_failures: u32,
    pub structure: Structure,
    pub engine: String,
    pub run_spec: serde_json::Value,
}

/// A calculation that is in flight according to the database.
#[derive(Clone, Debug, PartialEq)]
pub struct InFlight {
    pub calculation_id: i64,
    /// `local`, `slurm`, `flux`: who runs it.
    pub backend: Option<String>,
    /// Submitted to a scheduler but not yet started (a scheduler backend's `submitted`).
    pub submitted: bool,
    /// The orchestrator that watches it (see `claim_in_flight`).
    pub lease_owner: Option<String>,
    pub attempt_id: i64,
    pub attempt: u32,
    pub backend_id: Option<String>,
    pub job_dir: Option<String>,
    pub started_at_s: f64,
}

/// The parsed result of a finished calculation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalcResult {
    pub energy_ev: f64,
    pub forces_ev_per_a: Vec<[f64; 3]>,
    pub stress_ev_per_a3: Option<[f64; 6]>,
    pub max_force_ev_per_a: f64,
    pub scf_steps: Option<u32>,
    pub wall_time_s: f64,
}

/// Counts of calculations by status and the total number of engine executions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub pending: u64,
    pub submitted: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    pub timeout: u64,
    pub cancelled: u64,
}

impl Counts {
    /// Set the count of one status.
    pub fn set(&mut self, status: CalcStatus, n: u64) {
        let slot = match status {
            CalcStatus::Pending => &mut self.pending,
            CalcStatus::Submitted => &mut self.submitted,
            CalcStatus::Running => &mut self.running,
            CalcStatus::Done => &mut self.done,
            CalcStatus::Failed => &mut self.failed,
            CalcStatus::Timeout => &mut self.timeout,
            CalcStatus::Cancelled => &mut self.cancelled,
        };
        *slot = n;
    }

    pub fn total(&self) -> u64 {
        self.pending + self.submitted + self.running + self.done + self.failed + self.timeout + self.cancelled
    }
}

/// What happened to one calculation, for `jobs status`.
#[derive(Clone, Debug, Serialize)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub outcome: Option<String>,
    pub message: Option<String>,
    pub changes: Option<String>,
    pub backend_id: Option<String>,
    pub started_at_s: f64,
    pub finished_at_s: Option<f64>,
}

/// An entry of the run's history: (unix seconds, calculation id, kind, message).
pub type Event = (f64, Option<i64>, String, String);

/// A finished label, for export.
#[derive(Clone, Debug)]
pub struct Label {
    pub calculation_id: i64,
    pub structure: Structure,
    pub engine: String,
    /// The label-defining parameters (canonical JSON text, as hashed into the key).
    pub label_params: String,
    /// Where the structure came from: "generated:fcc", "md:GEN:SEGMENT", "import:FILE" ...
    pub origin: String,
    /// The generation the structure entered the run in.
    pub generation: i64,
    pub result: CalcResult,
}

/// A failed calculation, for reports.
#[derive(Clone, Debug, Serialize)]
pub struct FailureSummary {
    pub calculation_id: i64,
    pub status: CalcStatus,
    pub attempts: u32,
    pub message: Option<String>,
}

/// The job database of one run directory.
pub struct JobStore {
    conn: Connection,
    path: PathBuf,
    /// This process's lease on the calculations it starts: (owner, seconds it lasts).
    lease: Option<(String, f64)>,
}

/// What an attempt needs from a calculation's row.
struct CalcRow {
    status: String,
    attempts: u32,
    physics_failures: u32,
    infra_failures: u32,
    engine: String,
    run_spec: String,
    atoms: String,
}

impl CalcRow {
    fn read(conn: &Connection, id: i64) -> rusqlite::Result<Option<CalcRow>> {
        conn.prepare_cached(
            "SELECT c.status, c.attempts, c.physics_failures, c.infra_failures, c.engine, c.run_spec_json, s.atoms_json
             FROM calculations c JOIN structures s ON s.id = c.structure_id WHERE c.id = ?1",
        )?
        .query_row([id], |r| {
            Ok(CalcRow {
                status: r.get(0)?,
                attempts: r.get(1)?,
                physics_failures: r.get(2)?,
                infra_failures: r.get(3)?,
                engine: r.get(4)?,
                run_spec: r.get(5)?,
                atoms: r.get(6)?,
            })
        })
        .optional()
    }

    fn into_claimed(self, id: i64, attempt_id: i64, attempt: u32) -> Result<Claimed> {
        let bad = |message: String| StoreError::BadRow { id, message };
        Ok(Claimed {
            calculation_id: id,
            attempt_id,
            attempt,
            physics_failures: self.physics_failures,
            infra_failures: self.infra_failures,
            structure: serde_json::from_str(&self.atoms).map_err(|e| bad(format!("atoms: {e}")))?,
            engine: self.engine,
            run_spec: serde_json::from_str(&self.run_spec).map_err(|e| bad(format!("run spec: {e}")))?,
        })
    }
}

/// Add calculations (and their structures, when new) inside an open transaction.
fn import_in(tx: &Connection, items: &[NewCalculation]) -> rusqlite::Result<ImportSummary> {
    let now = now_s();
    let mut summary = ImportSummary::default();
    let mut find_structure = tx.prepare_cached("SELECT id FROM structures WHERE hash = ?1")?;
    let mut add_structure = tx.prepare_cached(
        "INSERT INTO structures (hash, generation, origin, formula, n_atoms, atoms_json, status, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'selected', ?7)",
    )?;
    let mut add_calc = tx.prepare_cached(
        "INSERT OR IGNORE INTO calculations (key, structure_id, engine, label_params_json, run_spec_json, status, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6)",
    )?;
    for item in items {
        let hash = item.structure.content_hash();
        let sid: i64 = match find_structure.query_row([&hash], |r| r.get(0)).optional()? {
            Some(id) => id,
            None => {
                let atoms = serde_json::to_string(&item.structure).expect("structures serialise");
                add_structure.execute(params![
                    hash,
                    item.generation,
                    item.origin,
                    item.structure.formula(),
                    item.structure.len() as i64,
                    atoms,
                    now
                ])?;
                tx.last_insert_rowid()
            }
        };
        let key = calculation_key(&hash, &item.engine, &item.label_params);
        let n = add_calc.execute(params![
            key,
            sid,
            item.engine,
            item.label_params.to_string(),
            item.run_spec.to_string(),
            now
        ])?;
        if n == 1 {
            summary.added += 1;
        } else {
            summary.already_present += 1;
        }
    }
    if summary.added > 0 {
        exec(
            tx,
            "INSERT INTO events (at, kind, message) VALUES (?1, 'import', ?2)",
            params![now, format!("{} calculations added, {} already present", summary.added, summary.already_present)],
        )?;
    }
    Ok(summary)
}

/// `from -> done` for calculation `id` with its result (and its structure becomes
/// `labelled`); returns how many calculations changed (0 when it is not in `from`).
fn set_done(
    tx: &Connection,
    id: i64,
    from: CalcStatus,
    now: f64,
    result: &CalcResult,
    message: Option<&str>,
) -> rusqlite::Result<usize> {
    let n = exec(
        tx,
        "UPDATE calculations SET status = 'done', finished_at = ?2, wall_time_s = ?3, energy_ev = ?4,
             forces_json = ?5, stress_json = ?6, max_force_ev_per_a = ?7, scf_steps = ?8, message = ?9
         WHERE id = ?1 AND status = ?10",
        params![
            id,
            now,
            result.wall_time_s,
            result.energy_ev,
            serde_json::to_string(&result.forces_ev_per_a).expect("forces serialise"),
            result.stress_ev_per_a3.map(|s| serde_json::to_string(&s).expect("stress serialises")),
            result.max_force_ev_per_a,
            result.scf_steps,
            message,
            from.as_str(),
        ],
    )?;
    if n > 0 {
        exec(
            tx,
            "UPDATE structures SET status = 'labelled' WHERE id = (SELECT structure_id FROM calculations WHERE id = ?1)",
            [id],
        )?;
    }
    Ok(n)
}

/// `PRAGMA quick_check` or `integrity_check`: the problems listed (none when it says ok).
fn check_pragma(conn: &Connection, pragma: &str) -> rusqlite::Result<Vec<String>> {
    let mut st = conn.prepare(&format!("PRAGMA {pragma}"))?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    let lines = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(if lines.len() == 1 && lines[0] == "ok" { Vec::new() } else { lines })
}

/// A path for an SQLite `file:` URI (percent-encoding the characters URIs reserve).
fn uri_path(path: &Path) -> String {
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = String::new();
    for c in abs.to_string_lossy().chars() {
        match c {
            '?' | '#' | '%' | ' ' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Execute a statement through the connection's prepared-statement cache.
fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// A SQLite error, telling a damaged file apart from other failures.
fn sqlite_error(path: &Path, source: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    match source.sqlite_error_code() {
        Some(DatabaseCorrupt | NotADatabase) => StoreError::Corrupt { path: path.to_path_buf(), source },
        _ => StoreError::Sqlite { path: path.to_path_buf(), source },
    }
}

pub fn now_s() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl JobStore {
    /// Open the database of `run_dir`, creating it (and the directory) when absent,
    /// and bring its schema up to date.
    pub fn open_or_create(run_dir: &Path) -> Result<JobStore> {
        let path = run_dir.join(DB_FILE);
        fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
            move |source| StoreError::Io { path: path.to_path_buf(), source }
        }
        if !run_dir.exists() {
            std::fs::create_dir_all(run_dir).map_err(io(run_dir))?;
        }
        if !path.exists() {
            // Created whole, or not at all: the schema is built in a file of its own that
            // then takes the database's name, so a reader (or a crash) never meets a
            // database without its tables.
            let fresh = run_dir.join(format!(".{DB_FILE}.new-{}", std::process::id()));
            let _ = std::fs::remove_file(&fresh);
            drop(Self::open_path(&fresh)?);
            // A hard link does not replace a database another process created meanwhile;
            // where links are not possible, a rename does the same but for that race.
            match std::fs::hard_link(&fresh, &path) {
                Ok(()) => std::fs::remove_file(&fresh).map_err(io(&fresh))?,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    std::fs::remove_file(&fresh).map_err(io(&fresh))?
                }
                Err(_) => std::fs::rename(&fresh, &path).map_err(io(&path))?,
            }
        }
        Self::open_path(&path)
    }

    /// Open the database of `run_dir`, which must exist, for writing.
    pub fn open_existing(run_dir: &Path) -> Result<JobStore> {
        let path = run_dir.join(DB_FILE);
        if !path.is_file() {
            return Err(StoreError::Missing { path });
        }
        Self::open_path(&path)
    }

    /// Open the database of `run_dir` for reading only: never writes, never creates a
    /// file, works in a directory the user cannot write (then SQLite's `immutable`
    /// mode, which cannot see transactions still in a `-wal` file: said on stderr).
    /// An older schema is read as it is, never upgraded here: every table a reader
    /// needs exists since schema 2 (migration 3 added a status value and the
    /// configurations that only `run` reads).
    pub fn open_read_only(run_dir: &Path) -> Result<JobStore> {
        use rusqlite::OpenFlags;
        let path = run_dir.join(DB_FILE);
        if !path.is_file() {
            return Err(StoreError::Missing { path });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let corrupt = |source| StoreError::Corrupt { path: path.clone(), source };
        // The first read tells a damaged file from a database.
        let version = |conn: &Connection| -> rusqlite::Result<i64> {
            conn.busy_timeout(std::time::Duration::from_secs(30))?;
            conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        };
        // A directory this user may not write: SQLite cannot keep the WAL index (-shm)
        // there, so the file is read as an immutable snapshot.
        let writable = {
            use std::os::unix::ffi::OsStrExt;
            let c = std::ffi::CString::new(run_dir.as_os_str().as_bytes()).unwrap_or_default();
            // SAFETY: access(2) on a NUL-terminated path we own.
            unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
        };
        let conn = if writable {
            Connection::open_with_flags(&path, flags).map_err(|e| sqlite_error(&path, e))?
        } else {
            let wal = run_dir.join(format!("{DB_FILE}-wal"));
            if wal.metadata().map(|m| m.len() > 0).unwrap_or(false) {
                eprintln!(
                    "warning: {} is not writable: reading {} as it is on disk; transactions still in {} are not shown",
                    run_dir.display(),
                    path.display(),
                    wal.display()
                );
            }
            let uri = format!("file:{}?immutable=1", uri_path(&path));
            Connection::open_with_flags(&uri, flags).map_err(corrupt)?
        };
        let found = version(&conn).map_err(corrupt)?;
        let supported = schema::MIGRATIONS.len() as i64;
        if found > supported {
            return Err(StoreError::TooNew { path, found, supported });
        }
        conn.execute_batch("PRAGMA query_only=ON; PRAGMA foreign_keys=ON;").map_err(corrupt)?;
        Ok(JobStore { conn, path, lease: None })
    }

    /// `PRAGMA integrity_check`: the problems found (empty when the database is sound).
    pub fn integrity_problems(&self) -> Result<Vec<String>> {
        check_pragma(&self.conn, "integrity_check").map_err(self.sq())
    }

    fn open_path(path: &Path) -> Result<JobStore> {
        let sq = |source| StoreError::Sqlite { path: path.to_path_buf(), source };
        let conn = Connection::open(path).map_err(sq)?;
        conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(sq)?;
        // The first statement that reads the file tells a damaged file from a database.
        let corrupt = |source| StoreError::Corrupt { path: path.to_path_buf(), source };
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(corrupt)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt { path: path.to_path_buf(), source: rusqlite::Error::InvalidQuery });
        }
        // A command that writes first checks every page it could touch: a damaged
        // database is reported and left as it is, never written into.
        let problems = check_pragma(&conn, "quick_check").map_err(corrupt)?;
        if !problems.is_empty() {
            let n = problems.len();
            let first = problems.into_iter().next().unwrap_or_default();
            return Err(StoreError::Damaged {
                path: path.to_path_buf(),
                dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
                problems: if n > 1 { format!("{first}; and {} more problems", n - 1) } else { first },
            });
        }
        // WAL + synchronous=NORMAL: every committed transaction survives a crash of this
        // process (kill -9); only an operating-system crash can lose the last commits.
        conn.execute_batch("PRAGMA synchronous=NORMAL;").map_err(corrupt)?;
        let mut store = JobStore { conn, path: path.to_path_buf(), lease: None };
        // Migrations run before foreign keys are enforced: migration 3 rebuilds the
        // calculations table that attempts refer to.
        store.migrate()?;
        store.conn.execute_batch("PRAGMA foreign_keys=ON;").map_err(store.sq())?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` in one IMMEDIATE transaction, committed when `f` succeeds (rolled back
    /// otherwise): one state transition.
    fn write<T>(&mut self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let path = &self.path;
        let tx =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| sqlite_error(path, e))?;
        let out = f(&tx).map_err(|e| sqlite_error(path, e))?;
        tx.commit().map_err(|e| sqlite_error(path, e))?;
        Ok(out)
    }

    fn sq(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| sqlite_error(&self.path, source)
    }

    fn migrate(&mut self) -> Result<()> {
        let path = self.path.clone();
        let sq = |source| sqlite_error(&path, source);
        let version: i64 = self.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sq)?;
        let supported = schema::MIGRATIONS.len() as i64;
        if version > supported {
            return Err(StoreError::TooNew { path: self.path.clone(), found: version, supported });
        }
        for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sq)?;
            // Another process may have migrated between our read and our lock.
            let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sq)?;
            if now > i as i64 {
                continue;
            }
            tx.execute_batch(sql).map_err(sq)?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1)).map_err(sq)?;
            tx.commit().map_err(sq)?;
        }
        Ok(())
    }

    /// The schema version this database is at.
    pub fn schema_version(&self) -> Result<i64> {
        self.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(self.sq())
    }

    /// Add calculations in one transaction. A calculation whose idempotency key is
    /// already present is not added again (and a structure already present is reused).
    pub fn import(&mut self, items: &[NewCalculation]) -> Result<ImportSummary> {
        self.write(|tx| {
            let summary = import_in(tx, items)?;
            Ok(summary)
        })
    }

    /// Ids of pending calculations, oldest first.
    pub fn pending_ids(&self, limit: usize) -> Result<Vec<i64>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id FROM calculations WHERE status = 'pending' ORDER BY id LIMIT ?1")
            .map_err(self.sq())?;
        let rows = st.query_map([limit as i64], |r| r.get(0)).map_err(self.sq())?;
        rows.collect::<rusqlite::Result<Vec<i64>>>().map_err(self.sq())
    }

    /// Ids of calculations with a given status, in id order.
    pub fn ids_with_status(&self, status: CalcStatus) -> Result<Vec<i64>> {
        let mut st =
            self.conn.prepare_cached("SELECT id FROM calculations WHERE status = ?1 ORDER BY id").map_err(self.sq())?;
        let rows = st.query_map([status.as_str()], |r| r.get(0)).map_err(self.sq())?;
        rows.collect::<rusqlite::Result<Vec<i64>>>().map_err(self.sq())
    }

    /// Start an attempt: `pending -> running`, one more attempt, an attempt row.
    /// This is committed before the job process is started, so an execution is never
    /// started without being counted.
    pub fn start_attempt(&mut self, id: i64, backend: &str, job_dir: &str) -> Result<Claimed> {
        let path = self.path.clone();
        let sq = |source| sqlite_error(&path, source);
        let now = now_s();
        let (lease_owner, lease_expiry) = (self.lease_owner(), self.lease_expiry(now));
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sq)?;
        let row = CalcRow::read(&tx, id).map_err(sq)?.ok_or(StoreError::NoSuchCalculation(id))?;
        if row.status != "pending" {
            return Err(StoreError::WrongState { id, expected: "pending", found: row.status });
        }
        let attempt = row.attempts + 1;
        exec(
            &tx,
            "UPDATE calculations SET status = 'running', attempts = ?2, backend = ?3, backend_id = NULL,
                 job_dir = ?4, started_at = ?5, submitted_at = ?5, lease_owner = ?6, lease_expires_at = ?7
             WHERE id = ?1",
            params![id, attempt, backend, job_dir, now, lease_owner, lease_expiry],
        )
        .map_err(sq)?;
        exec(
            &tx,
            "INSERT INTO attempts (calculation_id, attempt, backend, started_at) VALUES (?1, ?2, ?3, ?4)",
            params![id, attempt, backend, now],
        )
        .map_err(sq)?;
        let attempt_id = tx.last_insert_rowid();
        tx.commit().map_err(sq)?;
        row.into_claimed(id, attempt_id, attempt)
    }

    /// The context of an attempt in flight (as `start_attempt` returned it), without
    /// changing anything: used to finish attempts adopted after a restart.
    pub fn load_running(&self, id: i64, attempt_id: i64) -> Result<Claimed> {
        let row = CalcRow::read(&self.conn, id).map_err(self.sq())?.ok_or(StoreError::NoSuchCalculation(id))?;
        let attempt: u32 = self
            .conn
            .query_row(
                "SELECT attempt FROM attempts WHERE id = ?1 AND calculation_id = ?2",
                params![attempt_id, id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sq())?
            .ok_or(StoreError::NoSuchCalculation(id))?;
        row.into_claimed(id, attempt_id, attempt)
    }

    /// Record the backend's id of a started attempt (a process group id, a Slurm job id).
    pub fn set_backend_id(&mut self, id: i64, attempt_id: i64, backend_id: &str) -> Result<()> {
        self.write(|tx| {
            exec(
                tx,
                "UPDATE calculations SET backend_id = ?2 WHERE id = ?1 AND status IN ('running', 'submitted')",
                params![id, backend_id],
            )?;
            exec(tx, "UPDATE attempts SET backend_id = ?2 WHERE id = ?1", params![attempt_id, backend_id])?;
            Ok(())
        })
    }

    /// `running -> done` (or `submitted -> done`: a scheduler's job that ran between two
    /// looks) with the parsed result.
    pub fn complete(&mut self, id: i64, attempt_id: i64, result: &CalcResult) -> Result<()> {
        let path = self.path.clone();
        let sq = |source| sqlite_error(&path, source);
        let now = now_s();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sq)?;
        if set_done(&tx, id, CalcStatus::Running, now, result, None).map_err(sq)? == 0
            && set_done(&tx, id, CalcStatus::Submitted, now, result, None).map_err(sq)? == 0
        {
            drop(tx);
            return Err(self.wrong_state(id, "running"));
        }
        exec(&tx, "UPDATE attempts SET finished_at = ?2, outcome = 'done' WHERE id = ?1", params![attempt_id, now])
            .map_err(sq)?;
        tx.commit().map_err(sq)
    }

    /// A failed attempt. With `retry`, the calculation goes back to `pending` (and
    /// `next_run_spec`, when given, replaces its run spec: a remediation step); without,
    /// it ends `failed` (or `timeout` for a wall-time failure).
    pub fn fail_attempt(
        &mut self,
        id: i64,
        attempt_id: i64,
        kind: FailureKind,
        message: &str,
        retry: bool,
        remediation: Option<(&serde_json::Value, &str)>,
    ) -> Result<()> {
        let path = self.path.clone();
        let sq = |source| sqlite_error(&path, source);
        let now = now_s();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sq)?;
        let new_status = if retry {
            "pending"
        } else if kind == FailureKind::Timeout {
            "timeout"
        } else {
            "failed"
        };
        let (physics, infra) = if kind.is_physics() { (1, 0) } else { (0, 1) };
        let n = tx
            .execute(
                "UPDATE calculations SET status = ?2, fail_count = fail_count + 1,
                     physics_failures = physics_failures + ?3, infra_failures = infra_failures + ?4,
                     message = ?5, finished_at = CASE WHEN ?2 = 'pending' THEN NULL ELSE ?6 END,
                     backend_id = CASE WHEN ?2 = 'pending' THEN NULL ELSE backend_id END
                 WHERE id = ?1 AND status IN ('running', 'submitted')",
                params![id, new_status, physics, infra, message, now],
            )
            .map_err(sq)?;
        if n == 0 {
            drop(tx);
            return Err(self.wrong_state(id, "running"));
        }
        let changes = remediation.map(|(_, c)| c.to_string());
        if let Some((spec, _)) = remediation {
            exec(&tx, "UPDATE calculations SET run_spec_json = ?2 WHERE id = ?1", params![id, spec.to_string()])
                .map_err(sq)?;
        }
        exec(
            &tx,
            "UPDATE attempts SET finished_at = ?2, outcome = ?3, message = ?4, changes = ?5 WHERE id = ?1",
            params![attempt_id, now, kind.as_str(), message, changes],
        )
        .map_err(sq)?;
        if !retry {
            exec(&tx, "UPDATE structures SET status = 'failed' WHERE id = (SELECT structure_id FROM calculations WHERE id = ?1)", [id])
                .map_err(sq)?;
        }
        tx.commit().map_err(sq)
    }

    /// An attempt that was in flight when the orchestrator died and that left nothing
    /// behind: back to `pending` without touching any failure budget.
    pub fn requeue_lost(&mut self, id: i64, attempt_id: i64, message: &str) -> Result<()> {
        let now = now_s();
        self.write(|tx| {
            exec(tx, "UPDATE calculations SET status = 'pending', backend_id = NULL WHERE id = ?1 AND status IN ('running', 'submitted')", [id])?;
            exec(
                tx,
                "UPDATE attempts SET finished_at = ?2, outcome = 'lost', message = ?3 WHERE id = ?1",
                params![attempt_id, now, message],
            )?;
            Ok(())
        })
    }

    /// Calculations the database believes are in flight, with their latest attempt.
    pub fn in_flight(&self) -> Result<Vec<InFlight>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT c.id, a.id, a.attempt, c.backend_id, c.job_dir, a.started_at, c.backend, c.status, c.lease_owner
                 FROM calculations c JOIN attempts a ON a.calculation_id = c.id AND a.attempt = c.attempts
                 WHERE c.status IN ('running', 'submitted') ORDER BY c.id",
            )
            .map_err(self.sq())?;
        let rows = st
            .query_map([], |r| {
                Ok(InFlight {
                    calculation_id: r.get(0)?,
                    backend: r.get(6)?,
                    submitted: r.get::<_, String>(7)? == "submitted",
                    lease_owner: r.get(8)?,
                    attempt_id: r.get(1)?,
                    attempt: r.get(2)?,
                    backend_id: r.get(3)?,
                    job_dir: r.get(4)?,
                    started_at_s: r.get(5)?,
                })
            })
            .map_err(self.sq())?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(self.sq())
    }

    /// Failed and timed-out calculations back to `pending`, with fresh failure budgets
    /// (the history of their attempts is kept). Returns how many were reset.
    pub fn reset(&mut self, statuses: &[CalcStatus]) -> Result<usize> {
        self.write(|tx| {
            let mut n = 0;
            for s in statuses {
                n += tx.execute(
                    "UPDATE calculations SET status = 'pending', physics_failures = 0, infra_failures = 0,
                             finished_at = NULL WHERE status = ?1",
                    [s.as_str()],
                )?;
            }
            exec(
                tx,
                "INSERT INTO events (at, kind, message) VALUES (?1, 'reset', ?2)",
                params![now_s(), format!("{n} calculations reset to pending")],
            )?;
            Ok(n)
        })
    }

    /// Counts by status.
    pub fn counts(&self) -> Result<Counts> {
        let mut st =
            self.conn.prepare_cached("SELECT status, count(*) FROM calculations GROUP BY status").map_err(self.sq())?;
        let mut counts = Counts::default();
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?))).map_err(self.sq())?;
        for row in rows {
            let (status, n) = row.map_err(self.sq())?;
            if let Some(status) = CalcStatus::parse(&status) {
                counts.set(status, n);
            }
        }
        Ok(counts)
    }

    /// Total engine executions ever started (all attempts of all calculations).
    pub fn executions(&self) -> Result<u64> {
        self.conn.query_row("SELECT count(*) FROM attempts", [], |r| r.get(0)).map_err(self.sq())
    }

    /// The attempts of one calculation, oldest first.
    pub fn attempts(&self, id: i64) -> Result<Vec<AttemptRecord>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT attempt, outcome, message, changes, backend_id, started_at, finished_at
                 FROM attempts WHERE calculation_id = ?1 ORDER BY id",
            )
            .map_err(self.sq())?;
        let rows = st
            .query_map([id], |r| {
                Ok(AttemptRecord {
                    attempt: r.get(0)?,
                    outcome: r.get(1)?,
                    message: r.get(2)?,
                    changes: r.get(3)?,
                    backend_id: r.get(4)?,
                    started_at_s: r.get(5)?,
                    finished_at_s: r.get(6)?,
                })
            })
            .map_err(self.sq())?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(self.sq())
    }

    /// Failed and timed-out calculations with their last message.
    pub fn failures(&self, limit: usize) -> Result<Vec<FailureSummary>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, status, attempts, message FROM calculations
                 WHERE status IN ('failed', 'timeout') ORDER BY id LIMIT ?1",
            )
            .map_err(self.sq())?;
        let rows = st
            .query_map([limit as i64], |r| {
                Ok(FailureSummary {
                    calculation_id: r.get(0)?,
                    status: CalcStatus::parse(&r.get::<_, String>(1)?).unwrap_or(CalcStatus::Failed),
                    attempts: r.get(2)?,
                    message: r.get(3)?,
                })
            })
            .map_err(self.sq())?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(self.sq())
    }

    /// Every finished label, in calculation order.
    pub fn labels(&self) -> Result<Vec<Label>> {
        self.labels_where(None)
    }

    /// The finished labels of one engine and label-defining parameters (one labelling
    /// lineage: labels that can be fitted together), in calculation order.
    pub fn labels_of(&self, engine: &str, label_params: &serde_json::Value) -> Result<Vec<Label>> {
        self.labels_where(Some((engine, &label_params.to_string())))
    }

    fn labels_where(&self, filter: Option<(&str, &str)>) -> Result<Vec<Label>> {
        let (engine, params) = filter.unzip();
        let mut st = self
            .conn
            .prepare(
                "SELECT c.id, s.atoms_json, c.engine, c.energy_ev, c.forces_json, c.stress_json,
                        c.max_force_ev_per_a, c.scf_steps, c.wall_time_s, c.label_params_json, s.origin, s.generation
                 FROM calculations c JOIN structures s ON s.id = c.structure_id
                 WHERE c.status = 'done' AND (?1 IS NULL OR (c.engine = ?1 AND c.label_params_json = ?2))
                 ORDER BY c.id",
            )
            .map_err(self.sq())?;
        let rows = st
            .query_map(params![engine, params], |r| {
                Ok((
                    (r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, f64>(3)?),
                    (r.get::<_, String>(4)?, r.get::<_, Option<String>>(5)?, r.get::<_, f64>(6)?),
                    (r.get::<_, Option<u32>>(7)?, r.get::<_, Option<f64>>(8)?),
                    (r.get::<_, String>(9)?, r.get::<_, String>(10)?, r.get::<_, i64>(11)?),
                ))
            })
            .map_err(self.sq())?;
        let mut out = Vec::new();
        for row in rows {
            let (
                (id, atoms, engine, energy_ev),
                (forces, stress, max_force),
                (scf_steps, wall),
                (lp, origin, generation),
            ) = row.map_err(self.sq())?;
            let bad = |message: String| StoreError::BadRow { id, message };
            out.push(Label {
                calculation_id: id,
                structure: serde_json::from_str(&atoms).map_err(|e| bad(format!("atoms: {e}")))?,
                engine,
                label_params: lp,
                origin,
                generation,
                result: CalcResult {
                    energy_ev,
                    forces_ev_per_a: serde_json::from_str(&forces).map_err(|e| bad(format!("forces: {e}")))?,
                    stress_ev_per_a3: stress
                        .map(|s| serde_json::from_str(&s))
                        .transpose()
                        .map_err(|e| bad(format!("stress: {e}")))?,
                    max_force_ev_per_a: max_force,
                    scf_steps,
                    wall_time_s: wall.unwrap_or(0.0),
                },
            });
        }
        Ok(out)
    }

    /// Append an event to the run's history.
    pub fn log_event(&mut self, calculation_id: Option<i64>, kind: &str, message: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO events (at, calculation_id, kind, message) VALUES (?1, ?2, ?3, ?4)",
                params![now_s(), calculation_id, kind, message],
            )
            .map(|_| ())
            .map_err(self.sq())
    }

    /// The most recent events, newest last.
    pub fn recent_events(&self, limit: usize) -> Result<Vec<Event>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT at, calculation_id, kind, message FROM
                 (SELECT id, at, calculation_id, kind, message FROM events ORDER BY id DESC LIMIT ?1) ORDER BY id",
            )
            .map_err(self.sq())?;
        let rows =
            st.query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).map_err(self.sq())?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(self.sq())
    }

    fn wrong_state(&self, id: i64, expected: &'static str) -> StoreError {
        match self
            .conn
            .query_row("SELECT status FROM calculations WHERE id = ?1", [id], |r| r.get::<_, String>(0))
            .optional()
        {
            Ok(Some(found)) => StoreError::WrongState { id, expected, found },
            Ok(None) => StoreError::NoSuchCalculation(id),
            Err(source) => StoreError::Sqlite { path: self.path.clone(), source },
        }
    }
}

#[cfg(test)]
mod tests;
