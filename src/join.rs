//! Which runs share one container: the ranks of one job step on one node join one set of
//! namespaces (user and mount), so that Open MPI's and UCX's single-copy transfers (CMA,
//! `process_vm_readv`) work between them; the kernel allows those only within one user namespace
//! (ptrace(2), "ptrace access mode checking"). Apptainer has no such mode (apptainer#1583);
//! Charliecloud has `ch-run --join`, pyxis runs a step's tasks in one container.
//!
//! This module decides the *key* (which runs belong together) and the *count* (how many are
//! expected on this node) from the command line and the launcher's variables. It is pure: the
//! rendezvous itself is `sandbox::join`'s.
//!
//! Joining needs the host PID namespace, where gpurun execs the workload in place and a joined
//! rank is simply a process that entered the namespaces (a private PID namespace would need its
//! init to outlive every rank that joined it).

use serde::Serialize;

use crate::host::ProcessEnv;

/// Whether this run joins others, under which key, and why (`--dry-run` prints it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JoinChoice {
    /// `None`: this run has a container of its own.
    pub key: Option<String>,
    /// How many runs of this key are expected on this node, this one included; the first one
    /// serves the others until that many have joined (`None`: until none came for a while).
    pub count: Option<u32>,
    pub reason: String,
    /// Asked for with `--join`: a run that ends up alone says so as a warning, not only in the
    /// debug log.
    pub explicit: bool,
}

/// What the command line says about joining.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinArgs {
    pub key: Option<String>,
    pub count: Option<u32>,
    pub off: bool,
}

/// Why a join cannot be honoured as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error(
        "{flag}: runs can share a container only in the host PID namespace, and this one has its own ({why})"
    )]
    PrivatePid { flag: &'static str, why: String },
    #[error("--join-count {0}: no launcher's job id to join on here (neither Slurm's nor Open MPI's)")]
    CountWithoutKey(u32),
    #[error("--join {0:?}: the key must be 1 to 200 printable characters")]
    BadKey(String),
}

impl JoinError {
    pub fn hint(&self) -> String {
        match self {
            JoinError::PrivatePid { flag: "--join", .. } => {
                "drop --pid-ns private (or -p, -C): --join implies --pid-ns host".into()
            }
            JoinError::PrivatePid { .. } => "add --pid-ns host, or --join KEY (which implies it)".into(),
            JoinError::CountWithoutKey(_) => {
                "name the group with --join KEY (the same KEY for every rank)".into()
            }
            JoinError::BadKey(_) => "e.g. --join \"$JOB_ID\" with an identifier your launcher sets".into(),
        }
    }
}

/// Decides the join for a run in the host PID namespace (`host_pid`) or in a private one (for
/// `pid_reason`, as the request decided it). `--join KEY` names
/// the group; without it, a rank started by Open MPI's `mpirun` joins on the launcher's job
/// (`PMIX_NAMESPACE`, with `OMPI_COMM_WORLD_LOCAL_SIZE` ranks on this node), a Slurm task on
/// its job step and node (`SLURM_JOB_ID`, `SLURM_STEP_ID`, `SLURMD_NODENAME`, with its share of
/// `SLURM_STEP_TASKS_PER_NODE`). Open MPI is asked first: its ranks inside a Slurm allocation
/// carry the step of its daemons, one task per node. `--join-count` replaces the count.
pub fn resolve(
    args: &JoinArgs,
    host_pid: bool,
    pid_reason: &str,
    env: &ProcessEnv,
) -> Result<JoinChoice, JoinError> {
    if let Some(key) = &args.key
        && (key.is_empty() || key.len() > 200 || key.chars().any(char::is_control))
    {
        return Err(JoinError::BadKey(key.clone()));
    }
    let off = |reason: &str| Ok(JoinChoice { reason: reason.into(), ..JoinChoice::default() });
    if args.off {
        return off("--no-join");
    }
    if !host_pid {
        return match (&args.key, args.count) {
            (Some(_), _) => Err(JoinError::PrivatePid { flag: "--join", why: pid_reason.into() }),
            (None, Some(n)) if open_mpi(env).or_else(|| slurm(env)).is_none() => {
                Err(JoinError::CountWithoutKey(n))
            }
            (None, Some(_)) => Err(JoinError::PrivatePid { flag: "--join-count", why: pid_reason.into() }),
            (None, None) => off("a private PID namespace (joining needs the host's)"),
        };
    }
    let node = env.non_empty("SLURMD_NODENAME").map(str::to_string).unwrap_or_else(hostname);
    if let Some(key) = &args.key {
        if args.count == Some(1) {
            return off("--join-count 1: one run on this node");
        }
        return Ok(JoinChoice {
            key: Some(format!("user:{key}@{node}")),
            count: args.count,
            reason: "--join".into(),
            explicit: true,
        });
    }
    let Some((key, count, reason)) = open_mpi(env).or_else(|| slurm(env)) else {
        return match args.count {
            Some(n) => Err(JoinError::CountWithoutKey(n)),
            None => off("no launcher's job id (Open MPI's or Slurm's): give --join KEY"),
        };
    };
    match args.count.or(count) {
        // Alone on this node (a single task, e.g. `srun --pty`; Hydra's proxy step): nothing to
        // share, and a shared container would lose its console.
        Some(1) => off(&format!("{reason}, one run on this node")),
        count => Ok(JoinChoice { key: Some(format!("{key}@{node}")), count, reason, explicit: false }),
    }
}

/// Open MPI's `mpirun` (ORTE in 4, PRRTE in 5): the job's PMIx namespace and its local size.
fn open_mpi(env: &ProcessEnv) -> Option<(String, Option<u32>, String)> {
    let local = env.non_empty("OMPI_COMM_WORLD_LOCAL_SIZE")?;
    let (var, job) = ["PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid"]
        .into_iter()
        .find_map(|v| Some((v, env.non_empty(v)?)))?;
    let reason = format!("auto: Open MPI's mpirun ({var}={job}, OMPI_COMM_WORLD_LOCAL_SIZE={local})");
    Some((format!("ompi:{job}"), local.parse().ok().filter(|n| *n > 0), reason))
}

/// A Slurm task: its job step, and how many tasks of it run on this node. MPICH's and Intel
/// MPI's Hydra start a node's ranks below one proxy task of a step: there its
/// `MPI_LOCALNRANKS` counts them.
fn slurm(env: &ProcessEnv) -> Option<(String, Option<u32>, String)> {
    let job = env.non_empty("SLURM_JOB_ID")?;
    let step = env.non_empty("SLURM_STEP_ID").or_else(|| env.non_empty("SLURM_STEPID"))?;
    let hydra = env.non_empty("PMI_RANK").and(env.non_empty("MPI_LOCALNRANKS"));
    let count = hydra.and_then(|n| n.parse().ok().filter(|n| *n > 0)).or_else(|| {
        let spec = env.non_empty("SLURM_STEP_TASKS_PER_NODE")?;
        let node = env.non_empty("SLURM_NODEID").and_then(|n| n.parse().ok()).unwrap_or(0);
        tasks_on_node(spec, node)
    });
    let reason = format!("auto: Slurm job {job} step {step}");
    Some((format!("slurm:{job}.{step}"), count, reason))
}

/// The `node`-th entry of Slurm's compressed tasks-per-node list (`2(x3),1`: 2, 2, 2, 1).
pub fn tasks_on_node(spec: &str, node: usize) -> Option<u32> {
    let mut seen = 0usize;
    for part in spec.split(',') {
        let (tasks, repeat) = match part.split_once("(x") {
            Some((t, r)) => (t, r.strip_suffix(')')?.parse::<usize>().ok()?),
            None => (part, 1),
        };
        let tasks: u32 = tasks.trim().parse().ok()?;
        seen = seen.checked_add(repeat)?;
        if node < seen {
            return (tasks > 0).then_some(tasks);
        }
    }
    None
}

fn hostname() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> ProcessEnv {
        pairs.iter().map(|(k, v)| (*k, *v)).collect()
    }

    fn auto(pairs: &[(&str, &str)]) -> JoinChoice {
        resolve(&JoinArgs::default(), true, "test", &env(pairs)).unwrap()
    }

    #[test]
    fn tasks_per_node_lists() {
        assert_eq!(tasks_on_node("4", 0), Some(4));
        assert_eq!(tasks_on_node("2(x3),1", 0), Some(2));
        assert_eq!(tasks_on_node("2(x3),1", 2), Some(2));
        assert_eq!(tasks_on_node("2(x3),1", 3), Some(1));
        assert_eq!(tasks_on_node("2(x3),1", 4), None);
        assert_eq!(tasks_on_node("3,x", 1), None);
        assert_eq!(tasks_on_node("2(x", 0), None);
    }

    #[test]
    fn slurm_keys_on_job_step_and_node() {
        let vars = [
            ("SLURM_JOB_ID", "17"),
            ("SLURM_STEP_ID", "2"),
            ("SLURMD_NODENAME", "n1"),
            ("SLURM_STEP_TASKS_PER_NODE", "4(x2),3"),
            ("SLURM_NODEID", "2"),
        ];
        let c = auto(&vars);
        assert_eq!(c.key.as_deref(), Some("slurm:17.2@n1"));
        assert_eq!(c.count, Some(3));
        assert!(!c.explicit);
        let other_step = auto(&[("SLURM_JOB_ID", "17"), ("SLURM_STEP_ID", "3"), ("SLURMD_NODENAME", "n1")]);
        assert_ne!(other_step.key, c.key, "two steps of one job never join each other");
        assert_eq!(other_step.count, None);
    }

    #[test]
    fn open_mpi_wins_over_the_slurm_step_of_its_daemons() {
        let c = auto(&[
            ("SLURM_JOB_ID", "17"),
            ("SLURM_STEP_ID", "0"),
            ("SLURM_STEP_TASKS_PER_NODE", "1"),
            ("SLURMD_NODENAME", "n1"),
            ("PMIX_NAMESPACE", "1742536705"),
            ("OMPI_COMM_WORLD_LOCAL_SIZE", "4"),
        ]);
        assert_eq!((c.key.as_deref(), c.count), (Some("ompi:1742536705@n1"), Some(4)));
        // srun --mpi=pmix sets PMIX_NAMESPACE but not Open MPI's local size: Slurm's step counts.
        let c = auto(&[
            ("SLURM_JOB_ID", "17"),
            ("SLURM_STEP_ID", "0"),
            ("SLURM_STEP_TASKS_PER_NODE", "4"),
            ("SLURMD_NODENAME", "n1"),
            ("PMIX_NAMESPACE", "slurm.pmix.17.0"),
        ]);
        assert_eq!((c.key.as_deref(), c.count), (Some("slurm:17.0@n1"), Some(4)));
    }

    #[test]
    fn explicit_off_and_errors() {
        let slurm = env(&[("SLURM_JOB_ID", "1"), ("SLURM_STEP_ID", "0")]);
        let (host, private) = ((true, "test"), (false, "--pid-ns private"));
        let resolve = |args: &JoinArgs, (host_pid, why): &(bool, &str), env: &ProcessEnv| {
            resolve(args, *host_pid, why, env)
        };
        let off = resolve(&JoinArgs { off: true, ..Default::default() }, &host, &slurm).unwrap();
        assert_eq!((off.key, off.reason.as_str()), (None, "--no-join"));
        let alone = resolve(&JoinArgs::default(), &private, &slurm).unwrap();
        assert_eq!(alone.key, None, "a private PID namespace never joins by itself");
        let explicit = JoinArgs { key: Some("k".into()), count: Some(3), off: false };
        assert!(matches!(
            resolve(&explicit, &private, &slurm),
            Err(JoinError::PrivatePid { flag: "--join", .. })
        ));
        let c = resolve(&explicit, &host, &env(&[("SLURMD_NODENAME", "n1")])).unwrap();
        assert_eq!((c.key.as_deref(), c.count, c.explicit), (Some("user:k@n1"), Some(3), true));
        let count_only = JoinArgs { count: Some(2), ..Default::default() };
        assert_eq!(resolve(&count_only, &host, &ProcessEnv::default()), Err(JoinError::CountWithoutKey(2)));
        assert!(matches!(resolve(&count_only, &private, &slurm), Err(JoinError::PrivatePid { .. })));
        let plain = ProcessEnv::default();
        assert_eq!(resolve(&count_only, &private, &plain), Err(JoinError::CountWithoutKey(2)));
        let c = resolve(&count_only, &host, &slurm).unwrap();
        assert_eq!(c.count, Some(2), "--join-count replaces the launcher's count");
        let bad = JoinArgs { key: Some("a\nb".into()), ..Default::default() };
        assert!(matches!(resolve(&bad, &host, &slurm), Err(JoinError::BadKey(_))));
        assert_eq!(auto(&[("PMI_RANK", "0")]).key, None, "Hydra gives no job id");
        let single = [("SLURM_JOB_ID", "5"), ("SLURM_STEP_ID", "0"), ("SLURM_STEP_TASKS_PER_NODE", "1")];
        assert_eq!(auto(&single).key, None, "one task on the node: nothing to share, the console kept");
        let hydra = [single.as_slice(), &[("PMI_RANK", "3"), ("MPI_LOCALNRANKS", "8")]].concat();
        assert_eq!(auto(&hydra).count, Some(8), "Hydra's ranks below its one proxy task");
    }
}
