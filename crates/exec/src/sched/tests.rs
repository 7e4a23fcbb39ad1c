//! Job scripts (snapshots, and run by bash with hostile paths), the parsers of Slurm's
//! and Flux's outputs (Slurm's recorded from the test cluster, Slurm 22.05; Flux's from
//! its documentation, flux-jobs(1) and flux-submit(1), as Flux cannot be installed
//! here), and state mapping.

use super::flux::{self, FluxSettings};
use super::slurm::{self, SlurmSettings};
use super::*;

fn sub(run_dir: &str) -> Submission {
    let run_dir = PathBuf::from(run_dir);
    let sched_dir = run_dir.join("sched");
    Submission {
        name: "ap-0123abcd-5".into(),
        manifest: sched_dir.join("ap-0123abcd-5.tasks"),
        sched_dir,
        run_dir,
        tasks: 50,
        walltime_s: 5400.0,
        engine_walltime_s: engine_walltime_s(5400.0),
        program: PathBuf::from("/opt/autopipe/bin/autopipe"),
        args: vec!["job-exec".into()],
    }
}

#[test]
fn slurm_script_snapshot() {
    let settings = SlurmSettings {
        partition: Some("debug".into()),
        account: Some("mat-123".into()),
        qos: Some("normal".into()),
        nodes: Some(1),
        ntasks: Some(4),
        cpus_per_task: Some(2),
        mem: Some("8G".into()),
        constraint: Some("skylake".into()),
        extra_sbatch: vec!["--exclusive".into(), "#SBATCH --gres=gpu:1".into()],
        setup: vec!["module load qe/7.2".into(), "source /opt/conda/bin/activate dft".into()],
        array_throttle: Some(10),
        max_array_size: None,
    };
    let want = r#"#!/bin/bash
#SBATCH --job-name=ap-0123abcd-5
#SBATCH --array=0-49%10
#SBATCH --time=01:30:00
#SBATCH --partition=debug
#SBATCH --account=mat-123
#SBATCH --qos=normal
#SBATCH --mem=8G
#SBATCH --constraint=skylake
#SBATCH --nodes=1
#SBATCH --ntasks=4
#SBATCH --cpus-per-task=2
#SBATCH --exclusive
#SBATCH --gres=gpu:1
set -u
module load qe/7.2
source /opt/conda/bin/activate dft
export OMP_NUM_THREADS=2 AUTOPIPE_CORES=2
manifest=/scratch/run/sched/ap-0123abcd-5.tasks
dir="$(sed -n "$((${SLURM_ARRAY_TASK_ID} + 1))p" "$manifest")"
if [ -z "$dir" ] || [ ! -d "$dir" ]; then echo "autopipe: task ${SLURM_ARRAY_TASK_ID} has no attempt directory in $manifest" >&2; exit 1; fi
export AUTOPIPE_WALLTIME_S=5100
exec /opt/autopipe/bin/autopipe job-exec "$dir" >"$dir/stdout" 2>"$dir/stderr"
"#;
    assert_eq!(slurm::script(&settings, &sub("/scratch/run")), want);
    let args = slurm::sbatch_args(&sub("/scratch/run"), Path::new("/scratch/run/sched/ap-0123abcd-5.sh"));
    assert_eq!(
        args,
        [
            "--parsable",
            "--output=/scratch/run/sched/ap-0123abcd-5_%a.out",
            "--chdir=/scratch/run",
            "/scratch/run/sched/ap-0123abcd-5.sh"
        ]
    );
}

#[test]
fn flux_script_and_submit_snapshot() {
    let settings = FluxSettings {
        queue: Some("pbatch".into()),
        nodes: Some(1),
        ntasks: Some(4),
        cores_per_task: Some(2),
        setup: vec!["module load qe".into()],
        max_batch: None,
    };
    let want = r#"#!/bin/bash
set -u
module load qe
export OMP_NUM_THREADS=2 AUTOPIPE_CORES=2
manifest=/scratch/run/sched/ap-0123abcd-5.tasks
dir="$(sed -n "$((${FLUX_JOB_CC} + 1))p" "$manifest")"
if [ -z "$dir" ] || [ ! -d "$dir" ]; then echo "autopipe: task ${FLUX_JOB_CC} has no attempt directory in $manifest" >&2; exit 1; fi
export AUTOPIPE_WALLTIME_S=5100
exec /opt/autopipe/bin/autopipe job-exec "$dir" >"$dir/stdout" 2>"$dir/stderr"
"#;
    assert_eq!(flux::script(&settings, &sub("/scratch/run")), want);
    let args = flux::submit_args(&settings, &sub("/scratch/run"), Path::new("/scratch/run/sched/ap-0123abcd-5.sh"));
    assert_eq!(
        args,
        [
            "--cc=0-49",
            "--job-name=ap-0123abcd-5",
            "--time-limit=5400s",
            "--output=/scratch/run/sched/ap-0123abcd-5_{cc}.out",
            "--cwd=/scratch/run",
            "--queue=pbatch",
            "--nodes=1",
            "--ntasks=4",
            "--cores-per-task=2",
            "bash",
            "/scratch/run/sched/ap-0123abcd-5.sh"
        ]
    );
}

/// The generated script, run by bash with a run directory and a program path full of
/// spaces, quotes and shell metacharacters: the program gets exactly the attempt
/// directory as its argument, and nothing in the names is executed.
#[test]
fn hostile_paths_are_quoted_and_never_run() {
    let tmp = tempfile::tempdir().unwrap();
    let hostile = tmp.path().join("run $(touch PWNED) `touch PWNED2`; it's \"x\" & y");
    let attempt = hostile.join("jobs/000/000001/attempt-1 $(touch PWNED3)");
    std::fs::create_dir_all(&attempt).unwrap();
    std::fs::create_dir_all(hostile.join("sched")).unwrap();
    let program = hostile.join("prog 'q' $(touch PWNED4).sh");
    let record = tmp.path().join("args.txt");
    std::fs::write(&program, format!("#!/bin/bash\nprintf '%s\\n' \"$@\" > '{}'\n", record.display())).unwrap();
    std::fs::set_permissions(&program, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut s = sub(hostile.to_str().unwrap());
    s.program = program;
    s.args = vec!["job-exec".into(), "a b; echo $HOME".into()];
    s.tasks = 1;
    std::fs::write(&s.manifest, format!("{}\n", attempt.display())).unwrap();
    let script = slurm::script(&SlurmSettings::default(), &s);
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("SLURM_ARRAY_TASK_ID", "0")
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}\n{script}");
    let args = std::fs::read_to_string(&record).unwrap();
    assert_eq!(args, format!("job-exec\na b; echo $HOME\n{}\n", attempt.display()));
    for f in ["PWNED", "PWNED2", "PWNED3", "PWNED4"] {
        assert!(!tmp.path().join(f).exists() && !attempt.join(f).exists(), "{f} was created: {script}");
    }
    // A task with no line in the manifest fails, naming it.
    let out =
        std::process::Command::new("bash").arg("-c").arg(&script).env("SLURM_ARRAY_TASK_ID", "3").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("task 3 has no attempt directory"));
}

#[test]
fn values_that_would_break_a_script_are_refused() {
    for bad in ["debug; rm -rf /", "a b", "x\ny", "'q'", "$(id)", ""] {
        let s = SlurmSettings { partition: Some(bad.into()), ..Default::default() };
        assert!(s.validate().is_err(), "{bad:?}");
        let f = FluxSettings { queue: Some(bad.into()), ..Default::default() };
        assert!(f.validate().is_err(), "{bad:?}");
    }
    let s = SlurmSettings { setup: vec!["module load x\nrm -rf /".into()], ..Default::default() };
    assert!(s.validate().is_err());
    let s = SlurmSettings { array_throttle: Some(0), ..Default::default() };
    assert!(s.validate().is_err());
    assert!(SlurmSettings { partition: Some("gpu-a100_v2".into()), mem: Some("8G".into()), ..Default::default() }
        .validate()
        .is_ok());
}

#[test]
fn every_slurm_state_maps_to_ours() {
    use SchedState::{Queued, Running};
    let ended = SchedState::Ended;
    for s in ["PENDING", "CONFIGURING", "REQUEUED", "SUSPENDED"] {
        assert_eq!(slurm::state_of(s), Queued, "{s}");
    }
    for s in ["RUNNING", "COMPLETING"] {
        assert_eq!(slurm::state_of(s), Running, "{s}");
    }
    assert_eq!(slurm::state_of("COMPLETED"), ended(Ended::Completed));
    for s in ["TIMEOUT", "DEADLINE"] {
        assert_eq!(slurm::state_of(s), ended(Ended::Timeout(s.into())), "{s}");
    }
    for s in ["NODE_FAIL", "BOOT_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "CANCELLED"] {
        assert_eq!(slurm::state_of(s), ended(Ended::Killed(s.into())), "{s}");
    }
    assert_eq!(slurm::state_of("CANCELLED by 0"), ended(Ended::Killed("CANCELLED".into())));
    assert_eq!(slurm::state_of("FAILED"), ended(Ended::Failed("FAILED".into())));
}

#[test]
fn slurm_outputs_are_read() {
    assert_eq!(slurm::parse_sbatch("4242\n").unwrap(), "4242");
    assert_eq!(slurm::parse_sbatch("4242;cluster-a\n").unwrap(), "4242");
    assert!(slurm::parse_sbatch("sbatch: error: Batch job submission failed").is_err());
    // squeue --me -h -r -o '%i|%j|%T', recorded on the test cluster.
    let q = "139_0|ap-1a2b3c4d-1|RUNNING\n139_1|ap-1a2b3c4d-1|PENDING\n140|someone-else|RUNNING\n";
    let tasks = slurm::parse_squeue(q, "ap-1a2b3c4d-");
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[0], QueuedTask { id: "139_0".into(), name: "ap-1a2b3c4d-1".into(), state: SchedState::Running });
    assert_eq!(tasks[1].state, SchedState::Queued);
    // scontrol -o show job 1 (abridged), recorded on the test cluster.
    let sc = "JobId=1 ArrayJobId=1 ArrayTaskId=5 ArrayTaskThrottle=2 JobName=t.sh JobState=COMPLETED Reason=None ExitCode=0:0\n\
              JobId=6 ArrayJobId=1 ArrayTaskId=4 JobName=t.sh JobState=TIMEOUT Reason=TimeLimit ExitCode=0:15\n\
              JobId=7 ArrayJobId=1 ArrayTaskId=6-9%2 JobName=t.sh JobState=PENDING Reason=JobArrayTaskLimit\n\
              JobId=12 JobName=single JobState=NODE_FAIL Reason=NodeDown ExitCode=0:0\n";
    let m = slurm::parse_scontrol(sc);
    assert_eq!(m.len(), 3);
    assert_eq!(m["1_5"].0, SchedState::Ended(Ended::Completed));
    assert_eq!(m["1_4"].0, SchedState::Ended(Ended::Timeout("TIMEOUT".into())));
    assert!(m["1_4"].1.contains("Reason=TimeLimit"));
    assert_eq!(m["12"].0, SchedState::Ended(Ended::Killed("NODE_FAIL".into())));
    // sacct -n -P -X -o JobID,State,ExitCode (a site with accounting).
    let sa = slurm::parse_sacct("77_3|OUT_OF_MEMORY|0:125\n77_4|CANCELLED by 1000|0:0\n");
    assert_eq!(sa["77_3"].0, SchedState::Ended(Ended::Killed("OUT_OF_MEMORY".into())));
    assert_eq!(sa["77_4"].0, SchedState::Ended(Ended::Killed("CANCELLED".into())));
    assert_eq!(slurm::slurm_time(59.5), "00:01:00");
    assert_eq!(slurm::slurm_time(90000.0), "1-01:00:00");
}

#[test]
fn flux_outputs_are_read() {
    // flux submit --cc=0-2 prints one job id per line (flux-submit(1)).
    let ids = flux::parse_submit("ƒ2Xs3vG5d\nƒ2Xs3vG5e\nƒ2Xs3vG5f\n", 3).unwrap();
    assert_eq!(ids, ["ƒ2Xs3vG5d", "ƒ2Xs3vG5e", "ƒ2Xs3vG5f"]);
    assert!(flux::parse_submit("ƒ2Xs3vG5d\n", 3).is_err());
    // flux jobs -a -n --format={id.f58}|{name}|{state}|{result}|{returncode}: states
    // DEPEND, SCHED, RUN, CLEANUP, INACTIVE; results COMPLETED, FAILED, CANCELED, TIMEOUT
    // (flux-jobs(1), JOB STATUS).
    let out = "ƒ2Xs3vG5d|ap-1a2b3c4d-1|SCHED||\n\
               ƒ2Xs3vG5e|ap-1a2b3c4d-1|RUN||\n\
               ƒ2Xs3vG5f|ap-1a2b3c4d-1|INACTIVE|COMPLETED|0\n\
               ƒ2Xs3vG5g|ap-1a2b3c4d-1|INACTIVE|TIMEOUT|143\n\
               ƒ2Xs3vG5h|ap-1a2b3c4d-1|INACTIVE|CANCELED|-128\n\
               ƒ2Xs3vG5i|ap-1a2b3c4d-1|INACTIVE|FAILED|1\n\
               ƒ2Xs3vG5j|other|RUN||\n";
    let jobs = flux::parse_jobs(out, "ap-1a2b3c4d-");
    let states: Vec<SchedState> = jobs.iter().map(|(t, _)| t.state.clone()).collect();
    assert_eq!(
        states,
        [
            SchedState::Queued,
            SchedState::Running,
            SchedState::Ended(Ended::Completed),
            SchedState::Ended(Ended::Timeout("TIMEOUT".into())),
            SchedState::Ended(Ended::Killed("CANCELED".into())),
            SchedState::Ended(Ended::Failed("FAILED".into())),
        ]
    );
    assert!(jobs[3].1.contains("returncode=143"));
}

#[test]
fn engine_time_stays_below_the_schedulers() {
    for w in [60.0, 600.0, 3600.0, 86400.0] {
        let e = engine_walltime_s(w);
        assert!(e < w && e >= 0.5 * w, "{w} -> {e}");
    }
    assert_eq!(engine_walltime_s(3600.0), 3300.0);
    assert_eq!(engine_walltime_s(60.0), 54.0);
}

#[test]
fn campaign_prefixes_differ_between_run_directories_and_stay_put() {
    let a = campaign_prefix(Path::new("/scratch/a"));
    assert_eq!(a, campaign_prefix(Path::new("/scratch/a")));
    assert_ne!(a, campaign_prefix(Path::new("/scratch/b")));
    assert!(a.starts_with("ap-") && a.len() == 12, "{a}");
}
