//! CLI arguments plus the host's facts become a validated [`RunRequest`] here, before anything
//! forks or unshares: conflicting flags, missing bind sources, malformed `--env` and `--env-file`
//! entries each fail with one clear message. This module reads the host (bind sources, env files,
//! the caller's account) but never the image and never changes anything.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::cli::{PidNsMode, RunArgs};
use crate::gpu::{GpuError, GpuRequest, cdi, select};

/// Everything the planner needs to know about the host, gathered once, as plain data.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostFacts {
    /// Effective user and group id of the caller.
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (they stay in effect inside the container).
    pub groups: Vec<u32>,
    pub user_name: String,
    pub group_name: String,
    /// `$HOME`, else the passwd entry's home, else `/`.
    pub home: PathBuf,
    /// Whether `home` is a directory on the host (it is bound only then).
    pub home_is_dir: bool,
    /// The current directory; `None` when it has been removed or cannot be read.
    pub cwd: Option<PathBuf>,
    /// The host environment (variables whose name or value is not UTF-8 are left out).
    pub env: Vec<(String, String)>,
    /// Host paths the default mounts use, each present or not.
    pub has_etc_hosts: bool,
    pub has_resolv_conf: bool,
    pub has_dev_shm: bool,
    pub has_infiniband: bool,
    /// The caller's terminal when stdin, stdout or stderr is one on the host's devpts
    /// (`/dev/pts/N`): bound at `/dev/console`, so that `ttyname()` finds it in the container's
    /// own devpts-less `/dev` scan (`tty`, password prompts, tmux).
    pub terminal: Option<PathBuf>,
    /// `PMIX_SERVER_TMPDIR`, when it names a directory (a PMIx server's, e.g. `srun --mpi=pmix`).
    pub pmix_server_tmpdir: Option<PathBuf>,
    /// The entries of [`crate::plan::PROC_READ_ONLY`] that exist in the host's `/proc`.
    pub proc_read_only: Vec<PathBuf>,
    /// Subordinate id ranges and the setuid helpers, when `--fakeroot` can use them.
    pub subids: Option<SubIds>,
    /// An empty private directory the sandbox mounts its staging tmpfs on (the cache's `mnt`,
    /// set once the cache is open; see `plan`).
    pub staging: PathBuf,
}

/// Subordinate ids from `/etc/subuid` and `/etc/subgid`, with `newuidmap`/`newgidmap`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubIds {
    pub uid_start: u32,
    pub uid_count: u32,
    pub gid_start: u32,
    pub gid_count: u32,
    pub newuidmap: PathBuf,
    pub newgidmap: PathBuf,
}

impl HostFacts {
    /// Which of the `/proc` paths the host PID namespace mode makes read-only exist here; only
    /// that mode needs them (`/proc` lookups are not free on every start).
    pub fn probe_proc_read_only(&mut self) {
        self.proc_read_only = crate::plan::PROC_READ_ONLY
            .iter()
            .map(|(path, _)| PathBuf::from(path))
            .filter(|p| p.symlink_metadata().is_ok())
            .collect();
    }

    /// Reads the caller's identity, environment and the host paths the default mounts need.
    /// `fakeroot` adds the subordinate-id lookup (skipped otherwise: it is not on the hot path).
    pub fn gather(fakeroot: bool) -> HostFacts {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let accounts = crate::account::Files::default();
        let user = accounts.user(uid);
        let group_name = accounts.group_name(gid);
        let env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let home = env
            .iter()
            .find(|(k, v)| k == "HOME" && v.starts_with('/'))
            .map(|(_, v)| PathBuf::from(v))
            .or_else(|| user.as_ref().map(|u| u.home.clone()))
            .unwrap_or_else(|| PathBuf::from("/"));
        let user_name = user.as_ref().map(|u| u.name.clone()).unwrap_or_else(|| format!("user{uid}"));
        let pmix_server_tmpdir = env
            .iter()
            .find(|(k, _)| k == "PMIX_SERVER_TMPDIR")
            .map(|(_, v)| Path::new(v).components().collect::<PathBuf>())
            .filter(|p| p.is_absolute() && p.is_dir());
        let subids = if fakeroot && uid != 0 { find_subids(&user_name, uid) } else { None };
        HostFacts {
            uid,
            gid,
            groups: nix::unistd::getgroups()
                .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
                .unwrap_or_default(),
            group_name: group_name.unwrap_or_else(|| format!("group{gid}")),
            user_name,
            home_is_dir: home.is_dir(),
            home,
            cwd: std::env::current_dir().ok(),
            env,
            has_etc_hosts: Path::new("/etc/hosts").is_file(),
            has_resolv_conf: Path::new("/etc/resolv.conf").is_file(),
            has_dev_shm: Path::new("/dev/shm").is_dir(),
            has_infiniband: Path::new("/dev/infiniband").is_dir(),
            terminal: terminal(),
            pmix_server_tmpdir,
            proc_read_only: Vec::new(),
            subids,
            staging: PathBuf::new(),
        }
    }
}

/// The host path of the first of stdin, stdout and stderr that is a pseudo-terminal, when
/// that path names this very terminal (same device numbers: a pty from another devpts
/// instance, passed in from a nested container, may share the name of a different one here).
fn terminal() -> Option<PathBuf> {
    use std::io::IsTerminal;
    use std::os::unix::fs::MetadataExt;
    let fd =
        [std::io::stdin().is_terminal(), std::io::stdout().is_terminal(), std::io::stderr().is_terminal()]
            .iter()
            .position(|&t| t)?;
    let path = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let name = path.strip_prefix("/dev/pts").ok()?.to_str()?;
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None; // not a pty slave (e.g. /dev/pts/ptmx)
    }
    let open = std::fs::metadata(format!("/proc/self/fd/{fd}")).ok()?;
    let named = std::fs::metadata(&path).ok()?;
    (open.rdev() == named.rdev() && open.dev() == named.dev()).then_some(path)
}

/// The first `/etc/subuid` and `/etc/subgid` ranges for the caller, if both exist along with
/// the setuid helpers that can install them.
fn find_subids(user: &str, uid: u32) -> Option<SubIds> {
    let (uid_start, uid_count) = parse_subid(&std::fs::read_to_string("/etc/subuid").ok()?, user, uid)?;
    let (gid_start, gid_count) = parse_subid(&std::fs::read_to_string("/etc/subgid").ok()?, user, uid)?;
    let find = |name: &str| {
        ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
            .iter()
            .map(|d| Path::new(d).join(name))
            .find(|p| p.is_file())
    };
    Some(SubIds {
        uid_start,
        uid_count,
        gid_start,
        gid_count,
        newuidmap: find("newuidmap")?,
        newgidmap: find("newgidmap")?,
    })
}

/// The first `NAME:START:COUNT` (or `UID:START:COUNT`) line for the caller in a subid file.
pub fn parse_subid(text: &str, user: &str, uid: u32) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let mut parts = line.trim().split(':');
        let who = parts.next()?;
        if who != user && who.parse::<u32>().ok() != Some(uid) {
            return None;
        }
        let start = parts.next()?.parse().ok()?;
        let count: u32 = parts.next()?.parse().ok()?;
        (count > 0).then_some((start, count))
    })
}

/// Whether a bind source is a directory or a single file (its mount point must match).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    Dir,
    File,
}

/// One `-B SRC[:DST[:ro|rw]]`, resolved: `source` is canonical on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BindSpec {
    pub source: PathBuf,
    pub dest: PathBuf,
    pub read_only: bool,
    pub kind: NodeKind,
}

/// A validated run request: the CLI's intent with every host-side input checked.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunRequest {
    pub image: PathBuf,
    /// COMMAND and its arguments (empty: the image's ENTRYPOINT and CMD).
    pub command: Vec<String>,
    /// `--run`: `command` replaces CMD after the ENTRYPOINT.
    pub run_entrypoint: bool,
    pub pwd: Option<PathBuf>,
    pub fakeroot: bool,
    pub binds: Vec<BindSpec>,
    pub contain: bool,
    pub no_home: bool,
    pub writable_tmpfs: bool,
    /// `--env-file` contents, file by file, line by line.
    pub env_file_vars: Vec<(String, String)>,
    /// `--env` values, in command-line order.
    pub env_vars: Vec<(String, String)>,
    pub cleanenv: bool,
    pub dry_run: bool,
    /// `--rocm`, `--nv`, `--gpus` and `--device`, parsed (discovery happens later, in `gpu`).
    pub gpu: GpuRequest,
    /// `--pid-ns`, with `auto` decided.
    pub pid_ns: PidNsChoice,
}

/// Whether the workload gets a PID namespace of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PidNamespace {
    /// A new PID namespace with gpurun's init as PID 1.
    #[default]
    Private,
    /// The host's: no init, gpurun execs the workload in place.
    Host,
}

/// The PID namespace decided for a run and why (`gpurun --dry-run` prints both).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PidNsChoice {
    pub mode: PidNamespace,
    pub reason: String,
}

/// Variables whose presence makes `--pid-ns auto` choose the host PID namespace: each is the
/// rank of a process started by an MPI launcher, and nothing else sets it. Open MPI's
/// shared-memory transport needs real PIDs (it skips a segment whose creator PID is its own and
/// uses PIDs for single-copy transfers), so ranks must not each be PID 2 of their own namespace.
/// `SLURM_PROCID` is deliberately absent: plain `srun` sets it for every task, MPI or not, and
/// non-MPI steps keep the init (signal forwarding, no stray processes).
pub const MPI_RANK_VARS: &[(&str, &str)] = &[
    ("OMPI_COMM_WORLD_RANK", "Open MPI's mpirun (see mpirun(1), environment variables)"),
    ("PMIX_RANK", "a PMIx launcher: Open MPI 5's mpirun (PRRTE), srun --mpi=pmix"),
    ("PMI_RANK", "a PMI-1/PMI-2 launcher: srun --mpi=pmi2, MPICH's and Intel MPI's mpiexec (Hydra)"),
];

/// Decides `auto` from the caller's environment; `private` and `host` are taken as given.
pub fn resolve_pid_ns(mode: PidNsMode, env: &[(String, String)]) -> PidNsChoice {
    let choice = |mode, reason: String| PidNsChoice { mode, reason };
    match mode {
        PidNsMode::Private => choice(PidNamespace::Private, "--pid-ns private".into()),
        PidNsMode::Host => choice(PidNamespace::Host, "--pid-ns host".into()),
        PidNsMode::Auto => {
            let rank = MPI_RANK_VARS.iter().find(|(var, _)| env.iter().any(|(name, _)| name == var));
            match rank {
                Some((var, who)) => {
                    choice(PidNamespace::Host, format!("auto: {var} is set, an MPI rank started by {who}"))
                }
                None => choice(PidNamespace::Private, "auto: not an MPI rank".into()),
            }
        }
    }
}

/// Why the command line cannot become a run request.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("no IMAGE given")]
    NoImage,
    #[error("--gpus selects among the GPUs of --rocm or --nv; give one of them")]
    GpusWithoutVendor,
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error("--pwd {0}: the working directory must be an absolute path inside the container")]
    RelativePwd(PathBuf),
    #[error("--bind {spec:?}: {reason}")]
    BadBind { spec: String, reason: String },
    #[error("--bind {spec:?}: source {source_path} is not usable")]
    BindSource {
        spec: String,
        source_path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--bind: two binds onto {0}")]
    DuplicateBind(PathBuf),
    #[error("--env {0:?}: expected NAME=VALUE with NAME made of letters, digits and '_'")]
    BadEnv(String),
    #[error("--env-file {file}: cannot read it")]
    EnvFileRead {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--env-file {file}, line {line}: expected NAME=VALUE, got {text:?}")]
    EnvFileSyntax { file: PathBuf, line: usize, text: String },
    #[error("command argument {0:?} is not valid UTF-8")]
    NonUtf8Argument(OsString),
}

impl RequestError {
    /// How to fix it, where there is more to say than the message.
    pub fn hint(&self) -> Option<String> {
        match self {
            RequestError::BindSource { .. } => {
                Some("check the path exists on the host (binds are never created on the host)".into())
            }
            RequestError::BadBind { .. } => {
                Some("the form is SRC[:DST[:ro|rw]] with an absolute DST, e.g. -B /scratch:/data:ro".into())
            }
            RequestError::GpusWithoutVendor => Some("e.g. gpurun --rocm --gpus 0 IMAGE ...".into()),
            RequestError::Gpu(e) => e.hint(),
            _ => None,
        }
    }
}

impl RunRequest {
    /// Validates `args` against the host. Relative bind sources resolve against `host.cwd`.
    pub fn from_args(args: &RunArgs, host: &HostFacts) -> Result<RunRequest, RequestError> {
        let image = args.image.clone().ok_or(RequestError::NoImage)?;
        let gpu = gpu_request(args)?;
        if let Some(pwd) = &args.pwd {
            if !pwd.is_absolute() {
                return Err(RequestError::RelativePwd(pwd.clone()));
            }
        }
        let command = args
            .command
            .iter()
            .map(|a| a.clone().into_string().map_err(RequestError::NonUtf8Argument))
            .collect::<Result<Vec<_>, _>>()?;
        let binds = parse_binds(&args.binds, host.cwd.as_deref())?;
        let env_vars = args
            .env
            .iter()
            .map(|e| parse_env_assignment(e).ok_or_else(|| RequestError::BadEnv(e.clone())))
            .collect::<Result<_, _>>()?;
        let mut env_file_vars = Vec::new();
        for file in &args.env_files {
            env_file_vars.extend(read_env_file(file)?);
        }
        Ok(RunRequest {
            image,
            command,
            run_entrypoint: args.run,
            pwd: args.pwd.clone(),
            fakeroot: args.fakeroot,
            binds,
            contain: args.contain,
            no_home: args.no_home,
            writable_tmpfs: args.writable_tmpfs,
            env_file_vars,
            env_vars,
            cleanenv: args.cleanenv,
            dry_run: args.dry_run,
            gpu,
            pid_ns: resolve_pid_ns(args.pid_ns.unwrap_or(PidNsMode::Auto), &host.env),
        })
    }
}

/// The GPU flags, syntax-checked: `--gpus` needs a vendor flag; CDI names must be well formed.
fn gpu_request(args: &RunArgs) -> Result<GpuRequest, RequestError> {
    if args.gpus.is_some() && !args.rocm && !args.nv {
        return Err(RequestError::GpusWithoutVendor);
    }
    let gpus = args.gpus.as_deref().map(select::parse_gpus_flag).transpose()?;
    for name in &args.devices {
        cdi::parse_name(name).map_err(GpuError::from)?;
    }
    Ok(GpuRequest {
        rocm: args.rocm,
        nv: args.nv,
        gpus,
        cdi: args.devices.clone(),
        lists: args.gpu_lists.clone(),
    })
}

/// Parses every `-B` value (clap already split the commas) and checks the sources exist.
fn parse_binds(specs: &[String], cwd: Option<&Path>) -> Result<Vec<BindSpec>, RequestError> {
    let mut binds: Vec<BindSpec> = Vec::new();
    for spec in specs.iter().filter(|s| !s.is_empty()) {
        let bind = parse_bind(spec, cwd)?;
        if binds.iter().any(|b| b.dest == bind.dest) {
            return Err(RequestError::DuplicateBind(bind.dest));
        }
        binds.push(bind);
    }
    Ok(binds)
}

fn parse_bind(spec: &str, cwd: Option<&Path>) -> Result<BindSpec, RequestError> {
    let bad = |reason: &str| RequestError::BadBind { spec: spec.into(), reason: reason.into() };
    let parts: Vec<&str> = spec.split(':').collect();
    if parts.len() > 3 || parts[0].is_empty() {
        return Err(bad("expected SRC[:DST[:ro|rw]]"));
    }
    let read_only = match parts.get(2) {
        None | Some(&"rw") => false,
        Some(&"ro") => true,
        Some(_) => return Err(bad("the only options are ro and rw")),
    };
    let raw_source = Path::new(parts[0]);
    let joined = match cwd {
        Some(cwd) if raw_source.is_relative() => cwd.join(raw_source),
        _ => raw_source.to_path_buf(),
    };
    let source = joined.canonicalize().map_err(|source| RequestError::BindSource {
        spec: spec.into(),
        source_path: joined.clone(),
        source,
    })?;
    let dest = match parts.get(1) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => source.clone(),
    };
    if !dest.is_absolute() || dest.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(bad("DST must be an absolute path without '..'"));
    }
    let dest: PathBuf = dest.components().collect();
    if dest == Path::new("/") || dest.starts_with("/proc") {
        return Err(bad("cannot bind onto / or /proc"));
    }
    if dest == Path::new("/dev") {
        return Err(bad(
            "cannot bind onto /dev: gpurun builds it; bind single nodes (-B /dev/fuse) or select GPUs with --gpus/--device",
        ));
    }
    let kind = if source.is_dir() { NodeKind::Dir } else { NodeKind::File };
    Ok(BindSpec { source, dest, read_only, kind })
}

/// `NAME=VALUE` with a portable variable name; `None` when malformed.
pub fn parse_env_assignment(text: &str) -> Option<(String, String)> {
    let (name, value) = text.split_once('=')?;
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    Some((name.to_string(), value.to_string()))
}

/// Reads an env file: `NAME=VALUE` lines, blank lines and `#` comments ignored, an optional
/// `export ` prefix, and one level of matching single or double quotes removed. Values are not
/// shell-expanded (unlike Apptainer, which sources the file): what you write is what you get.
fn read_env_file(file: &Path) -> Result<Vec<(String, String)>, RequestError> {
    let text = std::fs::read_to_string(file)
        .map_err(|source| RequestError::EnvFileRead { file: file.into(), source })?;
    parse_env_file(&text).map_err(|(line, text)| RequestError::EnvFileSyntax {
        file: file.into(),
        line,
        text,
    })
}

/// The pure part of [`read_env_file`]; the error is (1-based line number, line text).
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut vars = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
        let (name, value) = parse_env_assignment(line).ok_or_else(|| (index + 1, raw.to_string()))?;
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .filter(|_| value.len() >= 2)
            .map(str::to_string)
            .unwrap_or(value);
        vars.push((name, unquoted));
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_assignment_rules() {
        assert_eq!(parse_env_assignment("A_1=x=y"), Some(("A_1".into(), "x=y".into())));
        assert_eq!(parse_env_assignment("EMPTY="), Some(("EMPTY".into(), String::new())));
        assert_eq!(parse_env_assignment("1A=x"), None);
        assert_eq!(parse_env_assignment("NOVALUE"), None);
        assert_eq!(parse_env_assignment("A-B=x"), None);
    }

    #[test]
    fn env_file_syntax() {
        let vars = parse_env_file("# c\n\nexport A=1\nB=\"two words\"\nC='x'\nD=\"\n").unwrap();
        let expect = [("A", "1"), ("B", "two words"), ("C", "x"), ("D", "\"")];
        assert_eq!(vars, expect.map(|(a, b)| (a.to_string(), b.to_string())));
        assert_eq!(parse_env_file("A=1\nnot an assignment\n"), Err((2, "not an assignment".into())));
    }

    #[test]
    fn bind_syntax_and_sources() {
        let tmp = std::env::temp_dir().canonicalize().unwrap();
        let b = parse_bind(&format!("{}:/data:ro", tmp.display()), None).unwrap();
        assert_eq!((b.dest.as_path(), b.read_only, b.kind), (Path::new("/data"), true, NodeKind::Dir));
        let same = parse_bind(tmp.to_str().unwrap(), None).unwrap();
        assert_eq!(same.dest, tmp);
        assert!(matches!(parse_bind("/nonexistent-gpurun:/x", None), Err(RequestError::BindSource { .. })));
        assert!(matches!(parse_bind("/:/x:rx", None), Err(RequestError::BadBind { .. })));
        assert!(matches!(parse_bind("/:rel", None), Err(RequestError::BadBind { .. })));
        assert!(matches!(parse_bind("/:/", None), Err(RequestError::BadBind { .. })));
        let dup = parse_binds(&["/:/x".into(), "/tmp:/x/".into()], None);
        assert!(matches!(dup, Err(RequestError::DuplicateBind(_))));
    }

    #[test]
    fn gpu_flags() {
        let host = HostFacts::default();
        let args = |f: &dyn Fn(&mut RunArgs)| {
            let mut a = RunArgs { image: Some("img".into()), ..RunArgs::default() };
            f(&mut a);
            RunRequest::from_args(&a, &host)
        };
        assert!(matches!(args(&|a| a.gpus = Some("0".into())), Err(RequestError::GpusWithoutVendor)));
        assert!(matches!(
            args(&|a| {
                a.rocm = true;
                a.gpus = Some("x".into())
            }),
            Err(RequestError::Gpu(_))
        ));
        assert!(matches!(args(&|a| a.devices = vec!["nvidia-gpu".into()]), Err(RequestError::Gpu(_))));
        let req = args(&|a| {
            a.nv = true;
            a.gpus = Some("all".into())
        })
        .unwrap();
        assert_eq!(req.gpu.gpus, Some(select::Selector::All));
    }

    #[test]
    fn pid_ns_auto_means_host_for_mpi_ranks_only() {
        let env = |names: &[&str]| names.iter().map(|n| (n.to_string(), "0".to_string())).collect::<Vec<_>>();
        let auto = |names: &[&str]| resolve_pid_ns(PidNsMode::Auto, &env(names));
        assert_eq!(auto(&[]).mode, PidNamespace::Private);
        assert_eq!(auto(&["SLURM_PROCID", "SLURM_NTASKS"]).mode, PidNamespace::Private, "plain srun");
        for var in ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"] {
            let choice = auto(&["SLURM_PROCID", var]);
            assert_eq!(choice.mode, PidNamespace::Host, "{var}");
            assert!(choice.reason.contains(var), "{}", choice.reason);
        }
        let mpi = env(&["PMIX_RANK"]);
        assert_eq!(resolve_pid_ns(PidNsMode::Private, &mpi).mode, PidNamespace::Private, "explicit wins");
        assert_eq!(resolve_pid_ns(PidNsMode::Host, &[]).mode, PidNamespace::Host);
    }

    #[test]
    fn subid_lines() {
        let text = "other:1:2\nalice:100000:65536\n1000:5:5\n";
        assert_eq!(parse_subid(text, "alice", 7), Some((100000, 65536)));
        assert_eq!(parse_subid(text, "bob", 1000), Some((5, 5)));
        assert_eq!(parse_subid(text, "bob", 1), None);
    }
}
