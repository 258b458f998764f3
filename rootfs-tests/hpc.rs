//! HPC integration: a real single-node Slurm (started by `rootfs-tests/hpc/setup.sh` when this
//! runs as root) and the host's Open MPI launch the built gpurun as the unprivileged user
//! `gpurun-test` (or as the caller, when not root). Covers `srun -n 4` on a cold cache (one
//! unpack, every task runs, SLURM_* and PMI variables inside), a failing task's exit code in
//! `sacct`, `scancel` reaching the workload's SIGTERM trap with nothing left running, an array
//! job sharing one rootfs, `mpirun -np 4 gpurun IMAGE /mpi_ring` and `srun --mpi=pmix` ranks on a
//! cold cache talking through shared memory only, the GPU examples' failure path on a host
//! without GPUs, and 64 concurrent starts of one cached image. Ranks of one job on one node share
//! one container: under `mpirun` and `srun --mpi=pmix` single-copy transfers (CMA), required,
//! work (and fail with `--no-join`), two concurrent steps get one container each, and `scancel`
//! leaves neither a join server nor its socket. Every example under `examples/` (slurm, mpi,
//! rocm, nvidia) is run here.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use support::{TempDir, describe, is_root, output, processes_with, skip};

const USER: &str = "gpurun-test";

/// The tests share one cluster and two cores: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A directory every user can use, with a copy of gpurun the test user can execute (the build
/// tree may sit below a private home) and the test images.
struct World {
    dir: TempDir,
    gpurun: PathBuf,
    busybox_image: PathBuf,
    mpi_image: Option<PathBuf>,
}

fn world() -> Option<&'static World> {
    static WORLD: OnceLock<Option<World>> = OnceLock::new();
    WORLD.get_or_init(make_world).as_ref()
}

fn make_world() -> Option<World> {
    // As root, setup.sh installs Open MPI (and starts Slurm) before the images are built: whether
    // the MPI image exists must not depend on which test happened to run first.
    if is_root() {
        slurm();
    }
    for tool in ["umoci", "skopeo", "busybox"] {
        if !has(tool) {
            skip(&format!("{tool} missing: run rootfs-tests/hpc/setup.sh as root"));
            return None;
        }
    }
    let dir = TempDir::new("hpc");
    chmod(dir.path(), 0o1777);
    let gpurun = dir.path().join("gpurun");
    std::fs::copy(support::gpurun_bin(), &gpurun).unwrap();
    chmod(&gpurun, 0o755);
    let build = |args: &[&str]| {
        let out = output(Command::new(repo().join("examples/mpi/build-image.sh")).args(args));
        assert!(out.status.success(), "build-image.sh {args:?}: {}", describe(&out));
    };
    let busybox_image = dir.path().join("busybox.tar");
    build(&["--busybox", busybox_image.to_str().unwrap()]);
    let mpi_image = if has("mpicc") && has("mpirun") {
        let path = dir.path().join("mpi.tar");
        build(&[path.to_str().unwrap()]);
        Some(path)
    } else {
        None
    };
    Some(World { dir, gpurun, busybox_image, mpi_image })
}

fn has(tool: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|o| o.status.success())
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The Slurm cluster is up (started here when root); `false` after a SKIP line.
/// For a test that submits to Slurm: the suite's lock (one job at a time on the small cluster),
/// the world, and a running cluster; `None` (the test returns) when either is missing.
fn slurm_world() -> Option<(MutexGuard<'static, ()>, &'static World)> {
    let serial = serial();
    let w = world()?;
    slurm().then_some((serial, w))
}

fn slurm() -> bool {
    static UP: OnceLock<Result<(), String>> = OnceLock::new();
    let state = UP.get_or_init(|| {
        if is_root() {
            let out = output(&mut Command::new(repo().join("rootfs-tests/hpc/setup.sh")));
            if !out.status.success() {
                return Err(format!("rootfs-tests/hpc/setup.sh failed: {}", describe(&out)));
            }
        }
        let sinfo = Command::new("sinfo").args(["-h", "-N", "-o", "%T"]).output();
        match sinfo {
            Ok(o) if String::from_utf8_lossy(&o.stdout).contains("idle") => Ok(()),
            _ => Err("no idle Slurm node: run rootfs-tests/hpc/setup.sh as root".into()),
        }
    });
    support::service_up(state)
}

/// `program args` as the test user (when root) in `cwd`, with gpurun's cache in `cache`.
fn as_user(cwd: &Path, cache: &Path, program: &str, args: &[&str]) -> Command {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", USER, "--", program]);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args)
        .current_dir(cwd)
        .env("GPURUN_CACHE_DIR", cache)
        .env("GPURUN_CONFIG", "")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

/// Submits `script` with sbatch as the test user, with $IMAGE (busybox) and $GPURUN set; the job id.
fn submit(w: &World, cache: &Path, script: &Path) -> String {
    let sub = output(
        as_user(w.dir.path(), cache, "sbatch", &["--parsable", "-o", "/dev/null", script.to_str().unwrap()])
            .env("IMAGE", &w.busybox_image)
            .env("GPURUN", &w.gpurun),
    );
    assert!(sub.status.success(), "{}", describe(&sub));
    text(&sub).trim().to_string()
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The published images and leftover staging entries of a cache.
fn cache_entries(cache: &Path) -> (usize, usize) {
    let count = |d: &str| std::fs::read_dir(cache.join(d)).map(|r| r.count()).unwrap_or(0);
    (count("images"), count("staging"))
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `sbatch --wait` on `script` with `IMAGE` (busybox) and `GPURUN` exported; returns the job id
/// and output.
fn sbatch_wait(
    w: &World,
    cache: &Path,
    script: &Path,
    extra: &[&str],
    tag: &str,
) -> (String, Output, String) {
    sbatch_wait_with(w, cache, script, extra, tag, &w.busybox_image, &[])
}

/// [`sbatch_wait`] with another image and extra variables for the job.
fn sbatch_wait_with(
    w: &World,
    cache: &Path,
    script: &Path,
    extra: &[&str],
    tag: &str,
    image: &Path,
    vars: &[(&str, &str)],
) -> (String, Output, String) {
    let log = w.dir.path().join(format!("{tag}-%A-%a.out"));
    let mut args = vec!["--parsable", "--wait", "-o", log.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(script.to_str().unwrap());
    let mut cmd = as_user(w.dir.path(), cache, "sbatch", &args);
    cmd.env("IMAGE", image).env("GPURUN", &w.gpurun).envs(vars.iter().copied());
    let out = output(&mut cmd);
    let job = text(&out).trim().split(';').next().unwrap_or("").to_string();
    let mut logs = String::new();
    let mut files: Vec<_> = std::fs::read_dir(w.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&format!("{tag}-{job}-")))
        .collect();
    files.sort();
    for f in files {
        logs.push_str(&std::fs::read_to_string(f).unwrap_or_default());
    }
    (job, out, logs)
}

#[test]
fn srun_four_tasks_share_one_cold_unpack() {
    let Some((_serial, w)) = slurm_world() else { return };
    let cache = w.dir.path().join("cache-batch");
    let (job, out, logs) = sbatch_wait(w, &cache, &repo().join("examples/slurm/batch.sh"), &[], "batch");
    assert!(out.status.success(), "{}\n{logs}", describe(&out));
    let mut tasks: Vec<&str> = logs.lines().filter(|l| l.starts_with("task ")).collect();
    tasks.sort();
    assert_eq!(tasks.len(), 4, "{logs}");
    for (i, line) in tasks.iter().enumerate() {
        let want = format!("task {i} of 4: job {job} step 0 node ");
        assert!(line.starts_with(&want), "{line:?} should start {want:?}\n{logs}");
        assert!(line.ends_with(&format!("pmi_rank {i} pmi_size 4")), "PMI variables missing: {line}");
    }
    assert_eq!(cache_entries(&cache), (1, 0), "one unpack, no staging debris");
}

#[test]
fn failing_task_exit_code_reaches_sacct() {
    let Some((_serial, w)) = slurm_world() else { return };
    let script = w.dir.path().join("fail.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n#SBATCH --ntasks=2\nsrun \"$GPURUN\" \"$IMAGE\" sh -c 'exit $((SLURM_PROCID == 1 ? 42 : 0))'\n",
    )
    .unwrap();
    let cache = w.dir.path().join("cache-fail");
    let (job, out, logs) = sbatch_wait(w, &cache, &script, &[], "fail");
    assert!(!out.status.success(), "the job must fail: {}\n{logs}", describe(&out));
    let step = format!("{job}.0|FAILED|42:0");
    let mut last = String::new();
    wait_for("sacct to show the step", Duration::from_secs(30), || {
        let o = output(Command::new("sacct").args(["-j", &job, "-n", "-P", "-o", "JobID,State,ExitCode"]));
        last = text(&o);
        last.lines().any(|l| l == step)
    });
    assert!(last.lines().any(|l| l.starts_with(&format!("{job}|FAILED|42:0"))), "job row: {last}");
}

#[test]
fn scancel_reaches_the_workload_trap() {
    let Some((_serial, w)) = slurm_world() else { return };
    let out_dir = w.dir.path().join("cancel-out");
    std::fs::create_dir_all(&out_dir).unwrap();
    chmod(&out_dir, 0o777);
    let script = w.dir.path().join("cancel.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nsrun \"$GPURUN\" -B {}:/out \"$IMAGE\" sh -c 'trap \"echo trapped > /out/trapped; exit 0\" \
             TERM; echo up > /out/started; while :; do sleep 1; done'\n",
            out_dir.display()
        ),
    )
    .unwrap();
    let cache = w.dir.path().join("cache-cancel");
    let job = submit(w, &cache, &script);
    wait_for("the workload to start", Duration::from_secs(60), || out_dir.join("started").exists());
    let c = output(&mut as_user(w.dir.path(), &cache, "scancel", &[&job]));
    assert!(c.status.success(), "{}", describe(&c));
    wait_for("the TERM trap", Duration::from_secs(20), || out_dir.join("trapped").exists());
    wait_for("the job to leave the queue", Duration::from_secs(30), || {
        text(&output(Command::new("squeue").args(["-h", "-j", &job]))).trim().is_empty()
    });
    let gpurun = w.gpurun.to_string_lossy().into_owned();
    wait_for("no gpurun process left", Duration::from_secs(10), || processes_with(&gpurun).is_empty());
}

#[test]
fn array_job_shares_one_rootfs() {
    let Some((_serial, w)) = slurm_world() else { return };
    let cache = w.dir.path().join("cache-array");
    let (job, out, logs) = sbatch_wait(w, &cache, &repo().join("examples/slurm/array.sh"), &[], "array");
    assert!(out.status.success(), "{}\n{logs}", describe(&out));
    for i in 0..4 {
        assert!(logs.contains(&format!("array task {i} of job {job}")), "task {i} missing:\n{logs}");
    }
    assert_eq!(cache_entries(&cache), (1, 0), "one rootfs for the whole array\n{logs}");
}

/// Open MPI's shared-memory BTL: `vader` in Open MPI 4 (Debian 12), `sm` from Open MPI 5 on. The
/// image carries the host's Open MPI, so the host's `ompi_info` speaks for the ranks.
fn shared_memory_btl() -> &'static str {
    let out = Command::new("ompi_info").arg("--version").output().map(|o| text(&o)).unwrap_or_default();
    let major = out.split(" v").nth(1).and_then(|v| v.split('.').next()?.parse::<u32>().ok());
    if major.is_some_and(|m| m >= 5) { "sm" } else { "vader" }
}

/// Variables that leave the ranks nothing but shared memory between them (and `self`): with the
/// ob1 PML and no TCP BTL, MPI_Init fails unless the shared-memory BTL reaches every peer.
fn shared_memory_only() -> Vec<(&'static str, String)> {
    vec![("OMPI_MCA_pml", "ob1".into()), ("OMPI_MCA_btl", format!("self,{}", shared_memory_btl()))]
}

/// The world and its MPI image (built where Open MPI is installed); `None` after a SKIP.
fn mpi_world() -> Option<(&'static World, &'static Path)> {
    let w = world()?;
    let Some(image) = &w.mpi_image else {
        skip("Open MPI missing: run rootfs-tests/hpc/setup.sh as root (openmpi-bin, libopenmpi-dev)");
        return None;
    };
    Some((w, image))
}

/// `examples/mpi/run.sh IMAGE` as the test user (at most 120 s), shared memory only, with `vars`.
fn run_example(w: &World, cache: &Path, image: &Path, vars: &[(String, String)]) -> Output {
    let script = repo().join("examples/mpi/run.sh");
    let mut cmd =
        as_user(w.dir.path(), cache, "timeout", &["120", script.to_str().unwrap(), image.to_str().unwrap()]);
    cmd.env("GPURUN", &w.gpurun).envs(shared_memory_only()).envs(vars.iter().cloned());
    output(&mut cmd)
}

/// The ring's summary and per-rank lines for 4 ranks, 1 MiB messages intact included.
fn assert_ring_ok(out: &Output) {
    let stdout = text(out);
    assert!(out.status.success(), "{}", describe(out));
    let summary = "ring ok: 4 ranks, token 6, allreduce 6 (expected 6), 1 MiB messages: 0 bad ints";
    assert!(stdout.contains(summary), "{}", describe(out));
    assert_eq!(stdout.lines().filter(|l| l.ends_with("token 6, allreduce 6")).count(), 4, "{stdout}");
}

#[test]
fn mpirun_ranks_in_containers_form_a_ring() {
    let _serial = serial();
    let Some((w, image)) = mpi_world() else { return };
    // A cold cache on purpose: the four ranks start together, one unpacks and the others wait.
    // That once deadlocked (a rank waiting for the image lock exclusively while running ranks
    // held it shared and waited for that rank in MPI_Init); unpacking has had its own lock
    // since 3b682e4, so nobody waits for a running container.
    let cache = w.dir.path().join("cache-mpi");
    let out = run_example(w, &cache, image, &[]);
    assert_ring_ok(&out);
    // The ranks share one container (gpurun joins them on mpirun's job), so Open MPI 4's CMA
    // check between them passes and it has nothing to warn about.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("different user namespaces"), "{}", describe(&out));
    assert_eq!(cache_entries(&cache), (1, 0));
}

/// Which MPI plugins this Slurm has (`srun --mpi=list`), one name a line.
fn srun_mpi_plugins() -> String {
    let out = output(Command::new("srun").arg("--mpi=list"));
    format!("{}{}", text(&out), String::from_utf8_lossy(&out.stderr))
}

/// The world and its MPI image where Slurm runs and has the pmix plugin; `None` after a SKIP.
fn pmix_world() -> Option<(&'static World, &'static Path)> {
    let (w, image) = mpi_world()?;
    if !slurm() {
        return None;
    }
    let plugins = srun_mpi_plugins();
    if !plugins.lines().any(|l| l.trim() == "pmix") {
        skip(&format!("this Slurm has no pmix MPI plugin; srun --mpi=list says: {plugins}"));
        return None;
    }
    Some((w, image))
}

#[test]
fn srun_mpi_pmix_ranks_form_a_ring() {
    let _serial = serial();
    let Some((w, image)) = pmix_world() else { return };
    let cache = w.dir.path().join("cache-pmix");
    let script = repo().join("examples/mpi/sbatch-pmix.sh");
    let vars = shared_memory_only();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_job, out, logs) = sbatch_wait_with(w, &cache, &script, &[], "pmix", image, &vars);
    let job_out = Output { status: out.status, stdout: logs.clone().into_bytes(), stderr: out.stderr };
    assert_ring_ok(&job_out);
    // gpurun binds PMIX_SERVER_TMPDIR: the ranks map the server's datastore without errors.
    assert!(!logs.contains("PMIX ERROR"), "{logs}");
    assert_eq!(cache_entries(&cache), (1, 0), "{logs}");
}

#[test]
fn gpu_examples_fail_clearly_without_gpus() {
    let _serial = serial();
    let Some(w) = world() else { return };
    let cache = w.dir.path().join("cache-gpu");
    for (script, flag, vendor) in
        [("rocm/rocminfo.sh", "--rocm", "AMD"), ("nvidia/nvidia-smi.sh", "--nv", "NVIDIA")]
    {
        let path = repo().join("examples").join(script);
        let out = output(
            as_user(w.dir.path(), &cache, path.to_str().unwrap(), &[w.busybox_image.to_str().unwrap()])
                .env("GPURUN", &w.gpurun),
        );
        if out.status.success() {
            continue; // a host with that GPU: the tool ran.
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{script}: {}", describe(&out));
        assert!(err.contains("gpurun: hint:") && err.contains(&format!("gpurun doctor {flag}")), "{err}");
        let doctor = text(&out);
        let lower = doctor.to_lowercase();
        assert!(
            doctor.contains("FAIL") && lower.contains(&vendor.to_lowercase()) && doctor.contains("hint:"),
            "{doctor}"
        );
    }
}

#[test]
fn sixty_four_concurrent_starts_of_one_cached_image() {
    let _serial = serial();
    let Some(w) = world() else { return };
    let cache = w.dir.path().join("cache-64");
    let warm = output(&mut as_user(
        w.dir.path(),
        &cache,
        w.gpurun.to_str().unwrap(),
        &[w.busybox_image.to_str().unwrap(), "true"],
    ));
    assert!(warm.status.success(), "{}", describe(&warm));
    let start = Instant::now();
    let children: Vec<_> = (0..64)
        .map(|i| {
            as_user(
                w.dir.path(),
                &cache,
                w.gpurun.to_str().unwrap(),
                &[w.busybox_image.to_str().unwrap(), "sh", "-c", &format!("echo start {i}")],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "start {i} of 64: {}", describe(&out));
        assert_eq!(text(&out).trim(), format!("start {i}"));
    }
    let took = start.elapsed();
    assert!(took < Duration::from_secs(120), "64 starts took {took:?}");
    assert_eq!(cache_entries(&cache), (1, 0));
}

// ---------------------------------------------------------------------------------------------
// Ranks of one job step on one node share one container (src/join.rs, src/sandbox/join.rs), so
// that MPI's single-copy transfers (CMA) work between unprivileged ranks.

/// The uid the tests' jobs and ranks run as: `gpurun-test` as root, else the caller.
fn test_uid() -> u32 {
    if is_root() {
        support::user_id(USER).expect("the test user's uid")
    } else {
        rustix::process::geteuid().as_raw()
    }
}

/// The name of the socket on which the test user's runs of join key `key` (as gpurun resolves
/// it, the node included) meet. Checked by name, not as every `gpurun-join/<uid>/` socket, so
/// that other runs of the same user on this machine cannot fail the tests.
fn join_socket_of(cache: &Path, key: &str) -> String {
    support::join_socket(test_uid(), key, cache)
}

/// The join socket of the tasks of step `step` of Slurm job `job` on this single-node cluster
/// (its node's name is the tasks' SLURMD_NODENAME).
fn slurm_step_socket(cache: &Path, job: &str, step: u32) -> String {
    let node = text(&output(Command::new("sinfo").args(["-h", "-N", "-o", "%N"]))).trim().to_string();
    join_socket_of(cache, &format!("slurm:{job}.{step}@{node}"))
}

/// The shared-memory BTL's single-copy mechanism set to `cma`: Open MPI then fails instead of
/// copying through the shared segment where CMA does not work between two ranks (different user
/// namespaces).
fn cma_required() -> (String, String) {
    (format!("OMPI_MCA_btl_{}_single_copy_mechanism", shared_memory_btl()), "cma".into())
}

/// `mpirun -np 4 GPURUN opts IMAGE command` as the test user, shared memory only and CMA
/// required, killed after 120 s (exit 124).
fn mpirun_in(w: &World, cache: &Path, image: &Path, opts: &[&str], command: &[&str]) -> Output {
    let mut args = vec!["120", "mpirun", "--oversubscribe", "-np", "4", w.gpurun.to_str().unwrap()];
    args.extend_from_slice(opts);
    args.push(image.to_str().unwrap());
    args.extend_from_slice(command);
    let mut cmd = as_user(w.dir.path(), cache, "timeout", &args);
    cmd.envs(shared_memory_only()).envs([cma_required()]);
    output(&mut cmd)
}

/// `mpirun_in` of four ranks that each print their job's PMIx namespace (gpurun's key) and
/// their mount and user namespace once all four are
/// up: the first, which serves the others the container, must not leave before they joined (its
/// server goes with it; MPI ranks wait for each other in MPI_Init anyway).
fn namespaces_of_ranks(w: &World, cache: &Path, image: &Path, opts: &[&str], tag: &str) -> Output {
    let sync = shared_dir(w, &format!("ranks-up-{tag}"));
    let bind = format!("{}:/sync", sync.display());
    let script = "echo > /sync/$OMPI_COMM_WORLD_RANK; i=0; while [ $(ls /sync | wc -l) -lt 4 ]; do \
                  i=$((i+1)); [ $i -lt 600 ] || exit 9; sleep 0.1; done; \
                  echo $PMIX_NAMESPACE $(readlink /proc/self/ns/mnt) $(readlink /proc/self/ns/user)";
    let opts: Vec<&str> = opts.iter().copied().chain(["-B", &bind]).collect();
    mpirun_in(w, cache, image, &opts, &["sh", "-c", script])
}

/// The host's (this process's) mount namespace, as `readlink /proc/self/ns/mnt` prints it.
fn host_mnt_ns() -> String {
    std::fs::read_link("/proc/self/ns/mnt").unwrap().display().to_string()
}

#[test]
fn mpirun_ranks_share_one_container_so_single_copy_works() {
    let _serial = serial();
    let Some((w, image)) = mpi_world() else { return };
    let cache = w.dir.path().join("cache-mpi-cma");
    // The example as users run it, with CMA required.
    let out = run_example(w, &cache, image, &[cma_required()]);
    assert_ring_ok(&out);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("different user namespaces"),
        "{}",
        describe(&out)
    );
    // The four ranks were in one mount and user namespace, not the host's.
    let out = namespaces_of_ranks(w, &cache, image, &[], "join");
    assert!(out.status.success(), "{}", describe(&out));
    let lines: Vec<String> = text(&out).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 4, "{}", describe(&out));
    assert!(lines.iter().all(|l| *l == lines[0]), "the ranks are in different containers: {lines:?}");
    assert!(!lines[0].contains(&host_mnt_ns()), "the ranks run in the host's mount namespace: {lines:?}");
    let job = lines[0].split(' ').next().unwrap_or_default();
    let socket = join_socket_of(&cache, &format!("ompi:{job}@{}", support::node_name()));
    // With --no-join each rank has its own, and CMA, required, fails: the check above can fail.
    let out = namespaces_of_ranks(w, &cache, image, &["--no-join"], "no-join");
    assert!(out.status.success(), "{}", describe(&out));
    let apart = text(&out);
    let mut apart: Vec<&str> = apart.lines().collect();
    apart.sort();
    apart.dedup();
    assert_eq!(apart.len(), 4, "--no-join ranks share a container: {}", describe(&out));
    let out = mpirun_in(w, &cache, image, &["--no-join"], &["/mpi_ring"]);
    assert!(!out.status.success() && out.status.code() != Some(124), "{}", describe(&out));
    // Open MPI 4 says why ("CMA ... not available due to different user namespaces") unless its
    // show_help messages from four ranks at once come garbled ("ORTE_ERROR_LOG: Data unpack"),
    // as they sometimes do; the BTL's abort is always there.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("different user namespaces") || err.contains("BTL is aborting"),
        "{}",
        describe(&out)
    );
    let gpurun = w.gpurun.to_string_lossy().into_owned();
    wait_for("no gpurun process and no join socket left", Duration::from_secs(10), || {
        processes_with(&gpurun).is_empty() && support::unix_sockets(&socket).is_empty()
    });
}

#[test]
fn srun_mpi_pmix_ranks_share_one_container_so_single_copy_works() {
    let _serial = serial();
    let Some((w, image)) = pmix_world() else { return };
    let cache = w.dir.path().join("cache-pmix-cma");
    let script = repo().join("examples/mpi/sbatch-pmix.sh");
    let vars = shared_memory_only();
    let (cma, value) = cma_required();
    let vars: Vec<(&str, &str)> =
        vars.iter().map(|(k, v)| (*k, v.as_str())).chain([(cma.as_str(), value.as_str())]).collect();
    let (job, out, logs) = sbatch_wait_with(w, &cache, &script, &[], "pmix-cma", image, &vars);
    let job_out = Output { status: out.status, stdout: logs.clone().into_bytes(), stderr: out.stderr };
    assert_ring_ok(&job_out);
    assert!(!logs.contains("different user namespaces") && !logs.contains("PMIX ERROR"), "{logs}");
    let socket = slurm_step_socket(&cache, &job, 0);
    wait_for("no join socket left", Duration::from_secs(10), || support::unix_sockets(&socket).is_empty());
}

/// A directory every user may write, under the world's directory.
fn shared_dir(w: &World, name: &str) -> PathBuf {
    let dir = w.dir.path().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    chmod(&dir, 0o777);
    dir
}

/// The files of `dir` not starting with a dot, by name, with their content trimmed.
fn files_in(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = support::dir_entries(dir)
        .into_iter()
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            (!name.starts_with('.'))
                .then(|| (name, std::fs::read_to_string(&p).unwrap_or_default().trim().into()))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn scancel_of_joined_ranks_leaves_no_server_and_no_socket() {
    let Some((_serial, w)) = slurm_world() else { return };
    let out_dir = shared_dir(w, "join-cancel-out");
    let seconds = format!("{}", 700_000 + std::process::id() % 99_999);
    // Plain srun tasks are no MPI ranks: --pid-ns host makes them join on their job step. One
    // place more than there are tasks keeps the leader's server waiting, so that scancel has it
    // to take down too. Each task writes its mount namespace (renamed into place: whole).
    let script = w.dir.path().join("join-cancel.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n#SBATCH --ntasks=4\nsrun -n 4 \"$GPURUN\" --pid-ns host --join-count 5 -B {}:/out \"$IMAGE\" \
             sh -c 'readlink /proc/self/ns/mnt > /out/.$SLURM_PROCID && mv /out/.$SLURM_PROCID /out/$SLURM_PROCID; \
             exec sleep {seconds}'\n",
            out_dir.display()
        ),
    )
    .unwrap();
    let cache = w.dir.path().join("cache-join-cancel");
    let job = submit(w, &cache, &script);
    let in_queue = || !text(&output(Command::new("squeue").args(["-h", "-j", &job]))).trim().is_empty();
    wait_for("the four tasks to start", Duration::from_secs(90), || {
        files_in(&out_dir).len() == 4 || !in_queue()
    });
    let ranks = files_in(&out_dir);
    assert_eq!(ranks.len(), 4, "the job ended before its four tasks were up: {ranks:?}");
    assert!(
        ranks.iter().all(|(_, ns)| *ns == ranks[0].1),
        "the tasks are in different containers: {ranks:?}"
    );
    assert_ne!(ranks[0].1, host_mnt_ns(), "{ranks:?}");
    let gpurun = w.gpurun.to_string_lossy().into_owned();
    let socket = slurm_step_socket(&cache, &job, 0);
    assert_eq!(support::unix_sockets(&socket).len(), 1, "the leader's server listens while a place is open");
    let c = output(&mut as_user(w.dir.path(), &cache, "scancel", &[&job]));
    assert!(c.status.success(), "{}", describe(&c));
    let marker = format!("sleep\0{seconds}");
    let start = Instant::now();
    loop {
        let left = (processes_with(&gpurun), processes_with(&marker), support::unix_sockets(&socket));
        if left.0.is_empty() && left.1.is_empty() && left.2.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "left after scancel (gpurun, tasks, sockets): {left:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for("the job to leave the queue", Duration::from_secs(30), || !in_queue());
}

#[test]
fn two_concurrent_steps_get_one_container_each() {
    let Some((_serial, w)) = slurm_world() else { return };
    let out_dir = shared_dir(w, "join-steps-out");
    // Two steps of two tasks at once; every task waits (at most 60 s) until all four wrote their
    // step and mount namespace, so both steps certainly run at the same time.
    let task = "echo \"$SLURM_STEP_ID $(readlink /proc/self/ns/mnt)\" > /out/.$SLURM_STEP_ID.$SLURM_PROCID && \
                mv /out/.$SLURM_STEP_ID.$SLURM_PROCID /out/$SLURM_STEP_ID.$SLURM_PROCID; i=0; \
                while [ $(ls /out | wc -l) -lt 4 ]; do i=$((i+1)); [ $i -lt 600 ] || exit 9; sleep 0.1; done";
    let srun = format!(
        "srun --exact -n 2 \"$GPURUN\" --pid-ns host -B {}:/out \"$IMAGE\" sh -c '{task}'",
        out_dir.display()
    );
    let script = w.dir.path().join("join-steps.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\n#SBATCH --ntasks=4\n{srun} & a=$!\n{srun} & b=$!\nwait $a && wait $b\n"),
    )
    .unwrap();
    let cache = w.dir.path().join("cache-join-steps");
    let (job, out, logs) = sbatch_wait(w, &cache, &script, &[], "join-steps");
    assert!(out.status.success(), "{}\n{logs}", describe(&out));
    let tasks = files_in(&out_dir);
    assert_eq!(tasks.len(), 4, "{tasks:?}\n{logs}");
    let mut steps: Vec<(&str, &str)> = tasks.iter().filter_map(|(_, line)| line.split_once(' ')).collect();
    steps.sort();
    assert_eq!(steps.len(), 4, "{tasks:?}");
    let (first, second) = (steps[0], steps[3]);
    assert_ne!(first.0, second.0, "one step ran all four tasks: {steps:?}");
    assert_eq!((steps[1].0, steps[2].0), (first.0, second.0), "not two tasks per step: {steps:?}");
    assert_eq!(steps[1].1, first.1, "the tasks of step {} are in different containers: {steps:?}", first.0);
    assert_eq!(steps[2].1, second.1, "the tasks of step {} are in different containers: {steps:?}", second.0);
    assert_ne!(first.1, second.1, "two steps share one container: {steps:?}");
    let sockets = [first.0, second.0].map(|step| slurm_step_socket(&cache, &job, step.parse().unwrap()));
    wait_for("no join socket left", Duration::from_secs(10), || {
        sockets.iter().all(|s| support::unix_sockets(s).is_empty())
    });
}
