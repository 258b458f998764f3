//! CLI arguments plus the host's facts become a validated [`RunRequest`] here, before anything
//! forks or unshares: conflicting flags, missing bind sources, malformed `--env` and `--env-file`
//! entries each fail with one clear message. This module reads the host (bind sources, env files,
//! the caller's account) but never the image and never changes anything.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::cli::{PidNsMode, RunArgs, Verb};
use crate::gpu::{GpuError, GpuRequest, cdi, select};
use crate::host::{HostFacts, NodeKind, ProcessEnv};

/// One `-B SRC[:DST[:ro|rw]]`, resolved: `source` is canonical on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BindSpec {
    pub source: PathBuf,
    pub dest: PathBuf,
    pub read_only: bool,
    pub kind: NodeKind,
}

/// `--home SRC[:DST]`, checked: SRC an existing directory, DST absolute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HomeSpec {
    pub source: PathBuf,
    pub dest: PathBuf,
}

/// A validated run request: the CLI's intent with every host-side input checked.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunRequest {
    pub image: PathBuf,
    /// COMMAND and its arguments (empty: the image's ENTRYPOINT and CMD).
    pub command: Vec<String>,
    /// `--run`: `command` replaces CMD after the ENTRYPOINT.
    pub run_entrypoint: bool,
    /// Apptainer's `exec` verb chose run mode (it requires a command for Apptainer images).
    pub exec_verb: bool,
    pub pwd: Option<PathBuf>,
    pub fakeroot: bool,
    pub binds: Vec<BindSpec>,
    pub contain: bool,
    pub no_home: bool,
    pub writable_tmpfs: bool,
    /// `--root-mode`: how the container root is made (see `plan::RootKind`).
    pub root_mode: crate::cli::RootMode,
    /// `--env-file` contents, file by file, line by line.
    pub env_file_vars: Vec<(String, String)>,
    /// `--env` values, in command-line order.
    pub env_vars: Vec<(String, String)>,
    pub cleanenv: bool,
    /// `--no-env`: host variables kept out (`NAME`, or `PREFIX*`).
    pub no_env: Vec<String>,
    /// `--home SRC[:DST]`: the home directory to bind, and where.
    pub home: Option<HomeSpec>,
    pub dry_run: bool,
    /// `--rocm`, `--nv`, `--gpus` and `--device`, parsed (discovery happens later, in `gpu`).
    pub gpu: GpuRequest,
    /// `--pid-ns`, with `auto` decided.
    pub pid_ns: PidNsChoice,
    /// `--join`, `--join-count` and `--no-join`, with the launcher's variables read.
    pub join: crate::join::JoinChoice,
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
pub fn resolve_pid_ns(mode: PidNsMode, env: &ProcessEnv) -> PidNsChoice {
    let choice = |mode, reason: String| PidNsChoice { mode, reason };
    match mode {
        PidNsMode::Private => choice(PidNamespace::Private, "--pid-ns private".into()),
        PidNsMode::Host => choice(PidNamespace::Host, "--pid-ns host".into()),
        PidNsMode::Auto => {
            let rank = MPI_RANK_VARS.iter().find(|(var, _)| env.get(var).is_some());
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
    #[error("--home {spec:?}: {reason}")]
    BadHome { spec: String, reason: String },
    #[error("--home and --no-home contradict each other")]
    HomeAndNoHome,
    #[error("no image {0:?}: that is a variable assignment")]
    ImageIsAssignment(String),
    #[error("--shell works with `gpurun shell` only")]
    ShellWithoutShell,
    #[error(transparent)]
    Join(#[from] crate::join::JoinError),
    #[error("{option}: gpurun has no such option")]
    Foreign { option: &'static str, instead: &'static str },
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
            RequestError::Foreign { instead, .. } => Some((*instead).into()),
            RequestError::ImageIsAssignment(a) => {
                Some(format!("set it with --env {a} (-e is --cleanenv, as in Apptainer)"))
            }
            RequestError::BadHome { .. } => {
                Some("the form is SRC[:DST]: an existing host directory, and an absolute path inside".into())
            }
            RequestError::Gpu(e) => e.hint(),
            RequestError::Join(e) => Some(e.hint()),
            _ => None,
        }
    }
}

impl RunRequest {
    /// Validates `args` against the host. Relative bind sources resolve against `host.cwd`.
    pub fn from_args(args: &RunArgs, host: &HostFacts) -> Result<RunRequest, RequestError> {
        let image = args.image.clone().ok_or(RequestError::NoImage)?;
        // `gpurun -e NAME=VALUE IMAGE` (gpurun's -e before it became Apptainer's --cleanenv).
        if let Some(text) = image.to_str().filter(|t| parse_env_assignment(t).is_some() && !image.exists()) {
            return Err(RequestError::ImageIsAssignment(text.into()));
        }
        let gpu = gpu_request(args)?;
        if let Some(pwd) = &args.pwd
            && !pwd.is_absolute()
        {
            return Err(RequestError::RelativePwd(pwd.clone()));
        }
        foreign_option(args)?;
        let command = command_line(args, &host.env)?;
        let binds = parse_binds(&args.binds, host.cwd.as_deref())?;
        let mut env_vars = Vec::new();
        for e in args.env.iter().flat_map(|e| split_env_list(e)) {
            env_vars.push(parse_env_assignment(&e).ok_or(RequestError::BadEnv(e))?);
        }
        if args.home.is_some() && args.no_home {
            return Err(RequestError::HomeAndNoHome);
        }
        let home = args.home.as_deref().map(|h| parse_home(h, host.cwd.as_deref())).transpose()?;
        let pid_ns = match (args.pid || args.containall, args.pid_ns) {
            (true, None) => PidNsMode::Private,
            (_, mode) => mode.unwrap_or(PidNsMode::Auto),
        };
        let mut pid_ns_choice = resolve_pid_ns(pid_ns, &host.env);
        if pid_ns == PidNsMode::Auto && args.join.is_some() {
            pid_ns_choice = PidNsChoice { mode: PidNamespace::Host, reason: "auto: --join".into() };
        }
        let join_args =
            crate::join::JoinArgs { key: args.join.clone(), count: args.join_count, off: args.no_join };
        let host_pid = pid_ns_choice.mode == PidNamespace::Host;
        let join = crate::join::resolve(&join_args, host_pid, &pid_ns_choice.reason, &host.env)?;
        let mut env_file_vars = Vec::new();
        for file in &args.env_files {
            env_file_vars.extend(read_env_file(file)?);
        }
        Ok(RunRequest {
            image,
            command,
            run_entrypoint: args.run || args.verb == Some(Verb::Run),
            exec_verb: args.verb == Some(Verb::Exec),
            pwd: args.pwd.clone(),
            fakeroot: args.fakeroot,
            binds,
            contain: args.contain || args.containall,
            no_home: args.no_home,
            writable_tmpfs: args.writable_tmpfs,
            root_mode: args.root_mode.unwrap_or_default(),
            env_file_vars,
            env_vars,
            cleanenv: args.cleanenv || args.containall,
            no_env: args.no_env.iter().filter(|v| !v.is_empty()).cloned().collect(),
            home,
            dry_run: args.dry_run,
            gpu,
            pid_ns: pid_ns_choice,
            join,
        })
    }
}

/// COMMAND as UTF-8; for `gpurun shell`, the shell first (`--shell`, `$APPTAINER_SHELL`,
/// `$SINGULARITY_SHELL`, else `/bin/sh`) with the arguments after IMAGE as its own.
fn command_line(args: &RunArgs, env: &ProcessEnv) -> Result<Vec<String>, RequestError> {
    let mut command = args
        .command
        .iter()
        .map(|a| a.clone().into_string().map_err(RequestError::NonUtf8Argument))
        .collect::<Result<Vec<_>, _>>()?;
    if args.verb != Some(Verb::Shell) {
        return match args.shell {
            Some(_) => Err(RequestError::ShellWithoutShell),
            None => Ok(command),
        };
    }
    let from_env = |name: &str| env.non_empty(name).map(str::to_string);
    let shell = args
        .shell
        .clone()
        .or_else(|| from_env("APPTAINER_SHELL"))
        .or_else(|| from_env("SINGULARITY_SHELL"))
        .unwrap_or_else(|| "/bin/sh".into());
    command.insert(0, shell);
    Ok(command)
}

/// Apptainer options without a gpurun equivalent: refused, saying what to write instead.
fn foreign_option(args: &RunArgs) -> Result<(), RequestError> {
    let f = &args.foreign;
    let refuse = |option, instead| Err(RequestError::Foreign { option, instead });
    if f.nvccli {
        return refuse("--nvccli", "use --nv: gpurun finds the driver's devices and libraries itself");
    }
    if f.writable {
        return refuse(
            "--writable",
            "the cached image is shared and never written; --writable-tmpfs gives a writable root whose changes vanish at exit",
        );
    }
    if !f.overlay.is_empty() {
        return refuse(
            "--overlay",
            "bind a host directory where you need to write (-B DIR:/path), or use --writable-tmpfs",
        );
    }
    if f.net {
        return refuse("--net", "gpurun always uses the host's network, as Apptainer does without --net");
    }
    if f.ipc {
        return refuse("--ipc", "gpurun shares the host's IPC namespace (MPI's shared memory needs it)");
    }
    if f.workdir.is_some() {
        return refuse(
            "--workdir",
            "--contain gives empty private /tmp and $HOME tmpfs; bind a scratch directory with -B DIR:/tmp to keep them on disk",
        );
    }
    if f.hostname.is_some() {
        return refuse("--hostname", "gpurun keeps the host's hostname (no UTS namespace)");
    }
    if !f.mount.is_empty() {
        return refuse("--mount", "use -B SRC[:DST[:ro|rw]]");
    }
    Ok(())
}

/// `--env` values are comma-separated lists, as in Apptainer (`--env A=1,B=2`); a piece without
/// `=` continues the previous value (`--env LIST=a,b` sets LIST to `a,b`).
fn split_env_list(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for piece in text.split(',') {
        match out.last_mut() {
            Some(last) if !piece.contains('=') => {
                last.push(',');
                last.push_str(piece);
            }
            _ => out.push(piece.to_string()),
        }
    }
    out
}

/// `--home SRC[:DST]`: SRC (relative to the caller's directory) must be a directory; DST is
/// absolute and defaults to SRC.
fn parse_home(spec: &str, cwd: Option<&Path>) -> Result<HomeSpec, RequestError> {
    let bad = |reason: String| RequestError::BadHome { spec: spec.into(), reason };
    let (src, dest) = match spec.split_once(':') {
        Some((s, d)) => (s, Some(d)),
        None => (spec, None),
    };
    let joined = match cwd {
        Some(cwd) if Path::new(src).is_relative() => cwd.join(src),
        _ => PathBuf::from(src),
    };
    let source = joined.canonicalize().map_err(|e| bad(format!("{}: {e}", joined.display())))?;
    if !source.is_dir() {
        return Err(bad(format!("{} is not a directory", source.display())));
    }
    let dest = match dest {
        Some(d) if Path::new(d).components().count() < 2 => {
            return Err(bad("the home inside cannot be the container's root".into()));
        }
        Some(d) if Path::new(d).is_absolute() && !d.contains("/..") => PathBuf::from(d),
        Some(d) => return Err(bad(format!("the home inside, {d:?}, must be an absolute path"))),
        None if source == Path::new("/") => return Err(bad("the home cannot be /".into())),
        None => source.clone(),
    };
    Ok(HomeSpec { source, dest })
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
        gfx_override: !args.no_gfx_override,
        shared: false,
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

    /// Apptainer's command lines mean what they mean in Apptainer (issue 9).
    #[test]
    fn apptainer_spellings() {
        let parse = |line: &str| {
            let args = std::iter::once("gpurun")
                .chain(line.split_whitespace())
                .map(std::ffi::OsString::from)
                .collect();
            let cli = crate::cli::parse(args);
            assert!(cli.command.is_none(), "{line}: run mode");
            let host = HostFacts { cwd: Some("/".into()), ..HostFacts::default() };
            RunRequest::from_args(&cli.run, &host)
        };
        let r = parse("-C img true").unwrap();
        assert!(r.contain && r.cleanenv && r.pid_ns.mode == PidNamespace::Private, "-C is --containall");
        let r = parse("-e img true").unwrap();
        assert!(r.cleanenv && !r.contain, "-e is --cleanenv");
        let r = parse("--env A=1,B=2 --env LIST=a,b,C=3 img true").unwrap();
        let want = [("A", "1"), ("B", "2"), ("LIST", "a,b"), ("C", "3")]
            .map(|(a, b)| (a.to_string(), b.to_string()));
        assert_eq!(r.env_vars, want);
        assert_eq!(parse("-p img true").unwrap().pid_ns.mode, PidNamespace::Private);
        let r = parse("exec --nv img python -c x").unwrap();
        assert_eq!(
            (r.command.as_slice(), r.gpu.nv),
            (&["python".to_string(), "-c".into(), "x".into()][..], true)
        );
        let r = parse("run img a b").unwrap();
        assert!(r.run_entrypoint && r.command == ["a", "b"]);
        assert_eq!(parse("shell img").unwrap().command, ["/bin/sh"]);
        assert_eq!(parse("shell -s /bin/bash img -l").unwrap().command, ["/bin/bash", "-l"]);
        assert!(matches!(parse("-s /bin/bash img"), Err(RequestError::ShellWithoutShell)));
        let r = parse("--no-env SECRET,AWS_* -H /tmp:/home/me -f -u img true").unwrap();
        assert_eq!(r.no_env, ["SECRET", "AWS_*"]);
        let tmp = Path::new("/tmp").canonicalize().unwrap();
        assert_eq!(r.home, Some(HomeSpec { source: tmp, dest: "/home/me".into() }));
        assert!(r.fakeroot);
        assert!(matches!(parse("-H /tmp:rel img true"), Err(RequestError::BadHome { .. })));
        assert!(matches!(parse("-H /tmp:/ img true"), Err(RequestError::BadHome { .. })));
        assert!(matches!(parse("-H / img true"), Err(RequestError::BadHome { .. })));
        assert!(matches!(parse("-H /tmp --no-home img true"), Err(RequestError::HomeAndNoHome)));
        for (line, option) in [
            ("--nvccli img true", "--nvccli"),
            ("-w img true", "--writable"),
            ("--overlay o.img img true", "--overlay"),
            ("--net img true", "--net"),
            ("-W /w img true", "--workdir"),
        ] {
            let err = parse(line).unwrap_err();
            assert!(matches!(&err, RequestError::Foreign { option: o, .. } if *o == option), "{line}: {err}");
            assert!(err.hint().is_some_and(|h| !h.is_empty()), "{line}: says what to write instead");
        }
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
        let env = |names: &[&str]| names.iter().map(|n| (*n, "0")).collect::<ProcessEnv>();
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
        assert_eq!(resolve_pid_ns(PidNsMode::Host, &ProcessEnv::default()).mode, PidNamespace::Host);
    }
}
