//! Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
//! Never edit a released migration: append a new one.

pub const MIGRATIONS: &[&str] = &[
    // 1: structures, calculations, attempts, events.
    r#"
    CREATE TABLE structures (
        id          INTEGER PRIMARY KEY,
        hash        TEXT NOT NULL UNIQUE,          -- content hash of the atoms
        generation  INTEGER NOT NULL DEFAULT 0,
        origin      TEXT NOT NULL,                 -- import:FILE, generated:fcc, md ...
        formula     TEXT NOT NULL,
        n_atoms     INTEGER NOT NULL,
        atoms_json  TEXT NOT NULL,                 -- cell (Å, rows), positions (Å), species, pbc
        status      TEXT NOT NULL CHECK (status IN ('candidate', 'selected', 'rejected', 'labelled', 'failed')),
        created_at  REAL NOT NULL                  -- unix seconds
    );
    CREATE TABLE calculations (
        id                  INTEGER PRIMARY KEY,
        key                 TEXT NOT NULL UNIQUE,  -- idempotency key: hash(structure, engine, label params)
        structure_id        INTEGER NOT NULL REFERENCES structures(id),
        engine              TEXT NOT NULL,
        label_params_json   TEXT NOT NULL,
        run_spec_json       TEXT NOT NULL,         -- what the engine runs with (remediation may change knobs)
        status              TEXT NOT NULL CHECK (status IN ('pending', 'submitted', 'running', 'done', 'failed', 'timeout')),
        attempts            INTEGER NOT NULL DEFAULT 0,
        physics_failures    INTEGER NOT NULL DEFAULT 0,
        infra_failures      INTEGER NOT NULL DEFAULT 0,
        fail_count          INTEGER NOT NULL DEFAULT 0,
        backend             TEXT,                  -- local, slurm
        backend_id          TEXT,                  -- process group id, Slurm job id
        job_dir             TEXT,
        cores               INTEGER NOT NULL DEFAULT 1,
        created_at          REAL NOT NULL,
        submitted_at        REAL,
        started_at          REAL,
        finished_at         REAL,
        wall_time_s         REAL,
        energy_ev           REAL,
        forces_json         TEXT,                  -- eV/Å, one [x, y, z] per atom
        stress_json         TEXT,                  -- eV/Å³, Voigt xx yy zz yz xz xy, ASE sign
        max_force_ev_per_a  REAL,
        scf_steps           INTEGER,
        message             TEXT
    );
    CREATE INDEX calculations_by_status ON calculations(status, id);
    CREATE INDEX calculations_by_structure ON calculations(structure_id);
    CREATE TABLE attempts (
        id              INTEGER PRIMARY KEY,
        calculation_id  INTEGER NOT NULL REFERENCES calculations(id),
        attempt         INTEGER NOT NULL,          -- 1-based
        backend         TEXT,
        backend_id      TEXT,
        started_at      REAL NOT NULL,
        finished_at     REAL,
        outcome         TEXT,                      -- done, physics, timeout, killed, crashed, setup, lost
        message         TEXT,
        changes         TEXT                       -- remediation applied for the next attempt
    );
    CREATE INDEX attempts_by_calculation ON attempts(calculation_id);
    CREATE TABLE events (
        id              INTEGER PRIMARY KEY,
        at              REAL NOT NULL,
        calculation_id  INTEGER,
        kind            TEXT NOT NULL,
        message         TEXT NOT NULL
    );
    "#,
    // 2: the learning loop: its state, generations, models, MD segments, candidate scores.
    r#"
    CREATE TABLE loop_state (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        generation  INTEGER NOT NULL,
        phase       TEXT NOT NULL CHECK (phase IN ('label', 'fit', 'explore', 'select', 'converged', 'finished')),
        message     TEXT,
        updated_at  REAL NOT NULL
    );
    CREATE TABLE generations (
        generation    INTEGER PRIMARY KEY,
        started_at    REAL NOT NULL,
        finished_at   REAL,
        n_candidates  INTEGER NOT NULL DEFAULT 0,
        n_selected    INTEGER NOT NULL DEFAULT 0,
        n_labelled    INTEGER NOT NULL DEFAULT 0,
        n_failed      INTEGER NOT NULL DEFAULT 0,
        metrics_json  TEXT,                    -- train/test errors of the model fitted on this generation's labels
        gamma_json    TEXT,                    -- extrapolation-grade statistics of its exploration
        core_hours    REAL NOT NULL DEFAULT 0  -- labelling wall time x cores
    );
    CREATE TABLE models (
        id            INTEGER PRIMARY KEY,
        generation    INTEGER NOT NULL UNIQUE,
        path          TEXT NOT NULL,           -- relative to the run directory
        n_train       INTEGER NOT NULL,
        n_test        INTEGER NOT NULL,
        metrics_json  TEXT NOT NULL,
        created_at    REAL NOT NULL
    );
    CREATE TABLE md_segments (
        id            INTEGER PRIMARY KEY,
        generation    INTEGER NOT NULL,
        name          TEXT NOT NULL,
        temperature_k REAL NOT NULL,
        pressure_gpa  REAL,
        seed          INTEGER NOT NULL,
        steps_done    INTEGER NOT NULL,
        stop_reason   TEXT,
        max_gamma     REAL,
        n_uncertain   INTEGER NOT NULL,
        finished_at   REAL NOT NULL,
        UNIQUE (generation, name)
    );
    ALTER TABLE structures ADD COLUMN score REAL;   -- e.g. the max extrapolation grade of a candidate
    CREATE INDEX structures_by_generation ON structures(generation, status);
    "#,
    // 3: hardening: a `cancelled` status (the calculation must never run; CHECK
    // constraints cannot be altered in SQLite, so the table is rebuilt with its rows,
    // ids and indexes), and the configurations a loop ran with (drift detection).
    r#"
    CREATE TABLE calculations_v3 (
        id                  INTEGER PRIMARY KEY,
        key                 TEXT NOT NULL UNIQUE,
        structure_id        INTEGER NOT NULL REFERENCES structures(id),
        engine              TEXT NOT NULL,
        label_params_json   TEXT NOT NULL,
        run_spec_json       TEXT NOT NULL,
        status              TEXT NOT NULL CHECK (status IN ('pending', 'submitted', 'running', 'done', 'failed', 'timeout', 'cancelled')),
        attempts            INTEGER NOT NULL DEFAULT 0,
        physics_failures    INTEGER NOT NULL DEFAULT 0,
        infra_failures      INTEGER NOT NULL DEFAULT 0,
        fail_count          INTEGER NOT NULL DEFAULT 0,
        backend             TEXT,
        backend_id          TEXT,
        job_dir             TEXT,
        cores               INTEGER NOT NULL DEFAULT 1,
        created_at          REAL NOT NULL,
        submitted_at        REAL,
        started_at          REAL,
        finished_at         REAL,
        wall_time_s         REAL,
        energy_ev           REAL,
        forces_json         TEXT,
        stress_json         TEXT,
        max_force_ev_per_a  REAL,
        scf_steps           INTEGER,
        message             TEXT
    );
    INSERT INTO calculations_v3 SELECT * FROM calculations;
    DROP TABLE calculations;
    ALTER TABLE calculations_v3 RENAME TO calculations;
    CREATE INDEX calculations_by_status ON calculations(status, id);
    CREATE INDEX calculations_by_structure ON calculations(structure_id);
    CREATE TABLE run_configs (
        id            INTEGER PRIMARY KEY,
        at            REAL NOT NULL,
        file          TEXT NOT NULL,           -- where it was read from
        text          TEXT NOT NULL,           -- the whole TOML as given
        hash          TEXT NOT NULL,           -- sha256 of the validated configuration
        label_hash    TEXT NOT NULL,           -- sha256 of its label-defining part (oracle, elements)
        lineage       INTEGER NOT NULL,        -- labelling lineage: +1 at each accepted label-defining change
        note          TEXT                     -- what changed from the previous one
    );
    "#,
    // 4: leases: the orchestrator that watches an in-flight calculation (owner, and
    // when its lease runs out unless renewed), so that two `jobs run` processes on one
    // database never reconcile (and so never rerun) each other's calculations.
    r#"
    ALTER TABLE calculations ADD COLUMN lease_owner TEXT;
    ALTER TABLE calculations ADD COLUMN lease_expires_at REAL;
    "#,
    // 5 (campaign metrics, issue 8 item 7): what `jobs status --metrics` reads, so that
    // it takes well under a second on 1,000,000 calculations: an index per summarised
    // column (minimum, maximum and median are index seeks and skips), and running totals
    // per (engine, status) kept by triggers (counts, sums of the summarised values, and
    // core-seconds). A later migration that rebuilds `calculations` drops the triggers
    // with the old table: it must create them again (`campaign::TOTALS_TRIGGERS` lists
    // their names; `--metrics` falls back to full scans when one is missing).
    r#"
    CREATE INDEX calculations_metric_force ON calculations(status, engine, max_force_ev_per_a);
    CREATE INDEX calculations_metric_scf ON calculations(status, engine, scf_steps);
    CREATE INDEX calculations_metric_energy ON calculations(status, engine, energy_ev);
    CREATE INDEX calculations_metric_wall ON calculations(status, engine, wall_time_s);
    CREATE TABLE calc_totals (
        engine      TEXT NOT NULL,
        status      TEXT NOT NULL,
        n           INTEGER NOT NULL DEFAULT 0,
        n_force     INTEGER NOT NULL DEFAULT 0,
        sum_force   REAL NOT NULL DEFAULT 0,     -- eV/Å
        n_scf       INTEGER NOT NULL DEFAULT 0,
        sum_scf     INTEGER NOT NULL DEFAULT 0,
        n_energy    INTEGER NOT NULL DEFAULT 0,
        sum_energy  REAL NOT NULL DEFAULT 0,     -- eV
        n_wall      INTEGER NOT NULL DEFAULT 0,
        sum_wall    REAL NOT NULL DEFAULT 0,     -- s
        core_s      REAL NOT NULL DEFAULT 0,     -- wall time x cores, s
        PRIMARY KEY (engine, status)
    ) WITHOUT ROWID;
    INSERT INTO calc_totals
        SELECT engine, status, count(*),
               count(max_force_ev_per_a), coalesce(sum(max_force_ev_per_a), 0),
               count(scf_steps), coalesce(sum(scf_steps), 0),
               count(energy_ev), coalesce(sum(energy_ev), 0),
               count(wall_time_s), coalesce(sum(wall_time_s), 0),
               coalesce(sum(wall_time_s * cores), 0)
        FROM calculations GROUP BY engine, status;
    CREATE TRIGGER calc_totals_insert AFTER INSERT ON calculations BEGIN
        INSERT OR IGNORE INTO calc_totals (engine, status) VALUES (NEW.engine, NEW.status);
        UPDATE calc_totals SET n = n + 1,
            n_force = n_force + (NEW.max_force_ev_per_a IS NOT NULL), sum_force = sum_force + coalesce(NEW.max_force_ev_per_a, 0),
            n_scf = n_scf + (NEW.scf_steps IS NOT NULL), sum_scf = sum_scf + coalesce(NEW.scf_steps, 0),
            n_energy = n_energy + (NEW.energy_ev IS NOT NULL), sum_energy = sum_energy + coalesce(NEW.energy_ev, 0),
            n_wall = n_wall + (NEW.wall_time_s IS NOT NULL), sum_wall = sum_wall + coalesce(NEW.wall_time_s, 0),
            core_s = core_s + coalesce(NEW.wall_time_s * NEW.cores, 0)
        WHERE engine = NEW.engine AND status = NEW.status;
    END;
    CREATE TRIGGER calc_totals_delete AFTER DELETE ON calculations BEGIN
        UPDATE calc_totals SET n = n - 1,
            n_force = n_force - (OLD.max_force_ev_per_a IS NOT NULL), sum_force = sum_force - coalesce(OLD.max_force_ev_per_a, 0),
            n_scf = n_scf - (OLD.scf_steps IS NOT NULL), sum_scf = sum_scf - coalesce(OLD.scf_steps, 0),
            n_energy = n_energy - (OLD.energy_ev IS NOT NULL), sum_energy = sum_energy - coalesce(OLD.energy_ev, 0),
            n_wall = n_wall - (OLD.wall_time_s IS NOT NULL), sum_wall = sum_wall - coalesce(OLD.wall_time_s, 0),
            core_s = core_s - coalesce(OLD.wall_time_s * OLD.cores, 0)
        WHERE engine = OLD.engine AND status = OLD.status;
    END;
    CREATE TRIGGER calc_totals_update
    AFTER UPDATE OF status, engine, max_force_ev_per_a, scf_steps, energy_ev, wall_time_s, cores ON calculations BEGIN
        UPDATE calc_totals SET n = n - 1,
            n_force = n_force - (OLD.max_force_ev_per_a IS NOT NULL), sum_force = sum_force - coalesce(OLD.max_force_ev_per_a, 0),
            n_scf = n_scf - (OLD.scf_steps IS NOT NULL), sum_scf = sum_scf - coalesce(OLD.scf_steps, 0),
            n_energy = n_energy - (OLD.energy_ev IS NOT NULL), sum_energy = sum_energy - coalesce(OLD.energy_ev, 0),
            n_wall = n_wall - (OLD.wall_time_s IS NOT NULL), sum_wall = sum_wall - coalesce(OLD.wall_time_s, 0),
            core_s = core_s - coalesce(OLD.wall_time_s * OLD.cores, 0)
        WHERE engine = OLD.engine AND status = OLD.status;
        INSERT OR IGNORE INTO calc_totals (engine, status) VALUES (NEW.engine, NEW.status);
        UPDATE calc_totals SET n = n + 1,
            n_force = n_force + (NEW.max_force_ev_per_a IS NOT NULL), sum_force = sum_force + coalesce(NEW.max_force_ev_per_a, 0),
            n_scf = n_scf + (NEW.scf_steps IS NOT NULL), sum_scf = sum_scf + coalesce(NEW.scf_steps, 0),
            n_energy = n_energy + (NEW.energy_ev IS NOT NULL), sum_energy = sum_energy + coalesce(NEW.energy_ev, 0),
            n_wall = n_wall + (NEW.wall_time_s IS NOT NULL), sum_wall = sum_wall + coalesce(NEW.wall_time_s, 0),
            core_s = core_s + coalesce(NEW.wall_time_s * NEW.cores, 0)
        WHERE engine = NEW.engine AND status = NEW.status;
    END;
    "#,
    // 6 (property goals, issue 12): each computation of a goal (elastic, diffusion,
    // hull) with the final model of a generation: the value, the largest extrapolation
    // grade met, how many structures were above gamma_select, the label-refit round it
    // belongs to, and whether it is trusted (computed inside the trusted domain).
    r#"
    CREATE TABLE property_results (
        id          INTEGER PRIMARY KEY,
        goal        TEXT NOT NULL,                 -- elastic | diffusion | hull
        generation  INTEGER NOT NULL,              -- the model's generation
        round       INTEGER NOT NULL,              -- 0: first computation; n: after n label-refit rounds
        model_path  TEXT NOT NULL,                 -- relative to the run directory
        value_json  TEXT NOT NULL,
        max_gamma   REAL,                          -- NULL: the model has no grade
        n_uncertain INTEGER NOT NULL,              -- structures at or above gamma_select
        trusted     INTEGER NOT NULL CHECK (trusted IN (0, 1)),
        outcome     TEXT NOT NULL CHECK (outcome IN ('final', 'relabel', 'limit')),
        created_at  REAL NOT NULL,
        UNIQUE (goal, generation)
    );
    "#,
];
