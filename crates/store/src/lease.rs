//! Leases: which orchestrator watches an in-flight calculation.
//!
//! Several `autopipe jobs run` processes may work on one database at once (on one
//! machine, or on several sharing the file system). Claiming a pending calculation is
//! one transaction, so two never start the same one; a lease keeps them apart after
//! that: every calculation an orchestrator starts carries its owner and an expiry that
//! the owner renews while it runs. On start, an orchestrator reconciles only the
//! in-flight calculations that are its own, unowned, or whose owner is gone: its lease
//! ran out, or it was a process of this machine that no longer exists.

use crate::{exec, now_s, InFlight, JobStore, Result};
use rusqlite::params;

/// Who this process is, as a lease owner: `HOST:PID:START`, START being the process's
/// start time in clock ticks since boot (so a recycled pid is another owner).
pub fn this_process_owner() -> String {
    format!("{}:{}:{}", host_name(), std::process::id(), process_start(std::process::id()).unwrap_or(0))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Field 22 of /proc/PID/stat: when the process started.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the owner is a process of this machine that is gone (its lease can be taken
/// at once instead of waiting for it to run out).
fn owner_is_gone(owner: &str) -> bool {
    let mut f = owner.rsplitn(3, ':');
    let (Some(start), Some(pid), Some(host)) = (f.next(), f.next(), f.next()) else { return false };
    if host != host_name() {
        return false;
    }
    match (pid.parse::<u32>(), start.parse::<u64>()) {
        (Ok(pid), Ok(start)) => process_start(pid) != Some(start),
        _ => false,
    }
}

impl JobStore {
    /// From now on, calculations this process starts are leased to `owner` for
    /// `seconds` (renewed by [`JobStore::renew_leases`]).
    pub fn take_leases(&mut self, owner: String, seconds: f64) {
        self.lease = Some((owner, seconds));
    }

    pub(crate) fn lease_owner(&self) -> Option<String> {
        self.lease.as_ref().map(|(o, _)| o.clone())
    }

    pub(crate) fn lease_expiry(&self, now: f64) -> Option<f64> {
        self.lease.as_ref().map(|(_, s)| now + s)
    }

    /// Extend the leases of every in-flight calculation this process owns; returns how
    /// many.
    pub fn renew_leases(&mut self) -> Result<usize> {
        let Some((owner, seconds)) = self.lease.clone() else { return Ok(0) };
        let until = now_s() + seconds;
        self.write(|tx| {
            exec(
                tx,
                "UPDATE calculations SET lease_expires_at = ?2
                 WHERE lease_owner = ?1 AND status IN ('running', 'submitted')",
                params![owner, until],
            )
        })
    }

    /// The in-flight calculations this process may reconcile, made its own in one
    /// transaction: its own, unowned ones, and those whose owner's lease ran out or whose
    /// owner (a process of this machine) is gone. Another live orchestrator's are left
    /// alone. Without `take_leases`, every in-flight calculation.
    pub fn claim_in_flight(&mut self) -> Result<Vec<InFlight>> {
        let Some((owner, seconds)) = self.lease.clone() else { return self.in_flight() };
        let now = now_s();
        let owners: Vec<(i64, Option<String>, Option<f64>)> = {
            let mut st = self
                .conn
                .prepare(
                    "SELECT id, lease_owner, lease_expires_at FROM calculations
                     WHERE status IN ('running', 'submitted')",
                )
                .map_err(self.sq())?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(self.sq())?;
            rows.collect::<rusqlite::Result<_>>().map_err(self.sq())?
        };
        let mine: Vec<(i64, Option<String>)> = owners
            .into_iter()
            .filter(|(_, o, until)| match (o, until) {
                (None, _) => true,
                (Some(o), _) if *o == owner => true,
                (Some(_), Some(t)) if *t < now => true,
                (Some(o), _) => owner_is_gone(o),
            })
            .map(|(id, o, _)| (id, o))
            .collect();
        let until = now + seconds;
        self.write(|tx| {
            for (id, previous) in &mine {
                // Taken only if nobody renewed or took it since it was read.
                exec(
                    tx,
                    "UPDATE calculations SET lease_owner = ?2, lease_expires_at = ?3
                     WHERE id = ?1 AND lease_owner IS ?4 AND status IN ('running', 'submitted')",
                    params![id, owner, until, previous],
                )?;
            }
            Ok(())
        })?;
        Ok(self.in_flight()?.into_iter().filter(|f| f.lease_owner.as_deref() == Some(owner.as_str())).collect())
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::new_calc;
    use crate::JobStore;

    /// Two orchestrators on one database: each reconciles only what is its own, unowned,
    /// expired, or owned by a process of this machine that is gone.
    #[test]
    fn leases_keep_two_orchestrators_apart() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = JobStore::open_or_create(dir.path()).unwrap();
        let mut b = JobStore::open_existing(dir.path()).unwrap();
        a.import(&[new_calc(0.0), new_calc(0.1), new_calc(0.2)]).unwrap();
        let me = super::this_process_owner();
        a.take_leases(me.clone(), 60.0);
        b.take_leases("otherhost:1:1".into(), 60.0);
        let ids = a.pending_ids(10).unwrap();
        a.start_attempt(ids[0], "local", "jobs/1").unwrap();
        b.start_attempt(ids[1], "local", "jobs/2").unwrap();
        // Each sees only its own (the other host's owner is alive as far as anyone can tell).
        assert_eq!(a.claim_in_flight().unwrap().iter().map(|f| f.calculation_id).collect::<Vec<_>>(), [ids[0]]);
        assert_eq!(b.claim_in_flight().unwrap().iter().map(|f| f.calculation_id).collect::<Vec<_>>(), [ids[1]]);
        // B's lease runs out (it stopped renewing): A takes its calculation over.
        b.take_leases("otherhost:1:1".into(), -1.0);
        b.renew_leases().unwrap();
        let mut got: Vec<i64> = a.claim_in_flight().unwrap().iter().map(|f| f.calculation_id).collect();
        got.sort();
        assert_eq!(got, [ids[0], ids[1]]);
        assert!(b.claim_in_flight().unwrap().is_empty());
        // An owner of this machine whose process is gone (pid 0 never is ours) is taken at once.
        let host = me.split(':').next().unwrap().to_string();
        let mut c = JobStore::open_existing(dir.path()).unwrap();
        c.take_leases(format!("{host}:999999999:5"), 600.0);
        c.start_attempt(ids[2], "local", "jobs/3").unwrap();
        assert!(a.claim_in_flight().unwrap().iter().any(|f| f.calculation_id == ids[2]));
    }
}
