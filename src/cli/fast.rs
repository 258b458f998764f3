//! A fast path for the command line every job runs: `gpurun [RUN OPTIONS] IMAGE [COMMAND...]`.
//! Building clap's command tree and parsing with it costs about a quarter of a millisecond on a
//! cold start (most of it page faults in clap's code), a twentieth of a warm start. This parser
//! accepts only the unambiguous spellings of the run options (`--name VALUE`, `--name=VALUE`,
//! `-X VALUE`, single flags) and gives up (`None`) on anything else: subcommands, help, version,
//! `--`, bundled or attached short options, repeated single-valued options, hyphenated values,
//! options after IMAGE, non-UTF-8 option values. clap then parses as before and reports errors
//! in its own words. The unit tests check that whenever this returns a value, clap parses the
//! same command line to the same value.

use std::ffi::OsString;
use std::path::PathBuf;

use super::{Cli, GlobalArgs, PidNsMode, RootMode, RunArgs};

/// Subcommand names and aliases: a first positional argument with one of these names is not an
/// IMAGE for clap either.
pub(super) const SUBCOMMANDS: &[&str] = &[
    "inspect", "unpack", "pull", "login", "logout", "images", "ls", "rm", "prune", "gpus", "doctor", "help",
    "exec", "run", "shell",
];

/// Parses `args` (with the program name first) like `Cli::parse_from`, or returns `None` when
/// clap must decide.
pub fn parse(args: &[OsString]) -> Option<Cli> {
    let mut global = GlobalArgs { quiet: false, verbose: 0, cache_dir: None };
    let mut run = RunArgs::default();
    let mut rest = args.iter().skip(1);
    let image = loop {
        let token = rest.next()?.to_str()?;
        if !token.starts_with('-') {
            break token;
        }
        let (name, inline) = match token.split_once('=') {
            Some((n, v)) if token.starts_with("--") => (n, Some(v)),
            _ => (token, None),
        };
        let mut value = || -> Option<String> {
            let v = match inline {
                Some(v) => v,
                None => rest.next()?.to_str()?,
            };
            (!v.is_empty() && !v.starts_with('-')).then(|| v.to_string())
        };
        if !option(name, &mut value, &mut global, &mut run)? {
            return None;
        }
    };
    if SUBCOMMANDS.contains(&image) || (global.quiet && global.verbose > 0) {
        return None;
    }
    run.image = Some(PathBuf::from(image));
    run.command = rest.cloned().collect();
    if run.command.first().is_some_and(|c| c.to_string_lossy().starts_with('-')) {
        return None;
    }
    Some(Cli { global, command: None, run })
}

/// Applies one option; `Some(false)` for a repeated single-valued option, `None` for an unknown
/// one or a missing value.
fn option(
    name: &str,
    value: &mut dyn FnMut() -> Option<String>,
    global: &mut GlobalArgs,
    run: &mut RunArgs,
) -> Option<bool> {
    let set = |flag: &mut bool| !std::mem::replace(flag, true);
    let once = |slot: &mut Option<String>, v: String| slot.replace(v).is_none();
    let once_path = |slot: &mut Option<PathBuf>, v: String| slot.replace(v.into()).is_none();
    Some(match name {
        "-q" | "--quiet" => set(&mut global.quiet),
        "-v" | "--verbose" => {
            global.verbose = global.verbose.saturating_add(1);
            true
        }
        "--cache-dir" => once_path(&mut global.cache_dir, value()?),
        "--ref" => once(&mut run.select.reference, value()?),
        "--platform" => once(&mut run.select.platform, value()?),
        "--rocm" => set(&mut run.rocm),
        "--nv" => set(&mut run.nv),
        "--gpus" => once(&mut run.gpus, value()?),
        "--no-gfx-override" => set(&mut run.no_gfx_override),
        "--device" => push(&mut run.devices, value()?),
        "--run" => set(&mut run.run),
        "--pwd" => once_path(&mut run.pwd, value()?),
        "-f" | "--fakeroot" => set(&mut run.fakeroot),
        "-B" | "--bind" => {
            let v = value()?;
            let parts: Vec<&str> = v.split(',').collect();
            if parts.iter().any(|p| p.is_empty()) {
                return None;
            }
            run.binds.extend(parts.into_iter().map(str::to_string));
            true
        }
        "-c" | "--contain" => set(&mut run.contain),
        "--no-home" => set(&mut run.no_home),
        "--writable-tmpfs" => set(&mut run.writable_tmpfs),
        "--env" => push(&mut run.env, value()?),
        "--env-file" => {
            run.env_files.push(value()?.into());
            true
        }
        "-e" | "--cleanenv" => set(&mut run.cleanenv),
        "-C" | "--containall" => set(&mut run.containall),
        "--dry-run" => set(&mut run.dry_run),
        "--root-mode" => {
            let mode = match value()?.as_str() {
                "auto" => RootMode::Auto,
                "overlay" => RootMode::Overlay,
                "bind" => RootMode::Bind,
                _ => return None,
            };
            run.root_mode.replace(mode).is_none()
        }
        "--pid-ns" => {
            let mode = match value()?.as_str() {
                "auto" => PidNsMode::Auto,
                "private" => PidNsMode::Private,
                "host" => PidNsMode::Host,
                _ => return None,
            };
            run.pid_ns.replace(mode).is_none()
        }
        _ => return None,
    })
}

fn push(list: &mut Vec<String>, value: String) -> bool {
    list.push(value);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(line: &str) -> Vec<OsString> {
        std::iter::once("gpurun").chain(line.split_whitespace()).map(OsString::from).collect()
    }

    /// Whenever the fast path answers, clap must agree; returns whether it answered.
    fn agrees(args: &[OsString]) -> bool {
        let fast = parse(args);
        if let Some(fast) = &fast {
            let clap = Cli::try_parse_from(super::super::normalize_args(args.to_vec()))
                .unwrap_or_else(|e| panic!("fast path accepted what clap rejects: {args:?}: {e}"));
            assert_eq!(format!("{fast:?}"), format!("{clap:?}"), "{args:?}");
        }
        fast.is_some()
    }

    #[test]
    fn common_job_lines_take_the_fast_path() {
        for line in [
            "img.tar",
            "img.tar /bin/true",
            "img.tar sh -c 'echo -n x' -la --help",
            "--nv img.tar python train.py --epochs 3",
            "--rocm --gpus 0,1 img.tar rocminfo",
            "-B /data,/scratch:/s:ro -B /apps:/apps img.tar ls",
            "--bind=/a:/b --env A=1 --env B=2,C=3 --env-file /etc/hostname img.tar env",
            "-c --no-home --writable-tmpfs -C -e --dry-run --fakeroot --run img.tar x",
            "-f --cleanenv --containall img.tar x",
            "-q --cache-dir /tmp/c --ref busybox:latest --platform linux/amd64 img.tar",
            "-v -v --pwd /tmp --device nvidia.com/gpu=0 --device x=1 img.tar",
            "--pid-ns host img.tar ./solver",
            "--pid-ns=private img.tar",
        ] {
            assert!(agrees(&args(line)), "{line}");
        }
    }

    #[test]
    fn everything_else_is_left_to_clap() {
        for line in [
            "",
            "--help",
            "--version",
            "-V",
            "images",
            "-q images",
            "ls",
            "help",
            "-- img.tar",
            "-qv img.tar",
            "-q -v img.tar",
            "-Bx img.tar",
            "-B=/x img.tar",
            "--nv --nv img.tar",
            "--gpus 0 --gpus 1 img.tar",
            "--env -x img.tar",
            "--bind a,,b img.tar",
            "--bind ,a img.tar",
            "img.tar --nv ls",
            "img.tar -- ls",
            "--unknown img.tar",
            "--env",
            "--pwd",
            "--gpus= img.tar",
            "--pid-ns HOST img.tar",
            "--pid-ns host --pid-ns auto img.tar",
            "exec img.tar ls",
            "run img.tar",
            "shell img.tar",
            "-H /h img.tar",
            "--no-env X img.tar",
        ] {
            assert!(!agrees(&args(line)), "{line}");
        }
    }

    #[test]
    fn non_utf8_values_go_to_clap() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'/', 0xff]);
        let mut a = args("--pwd");
        a.push(bad.clone());
        a.push("img.tar".into());
        assert!(!agrees(&a));
        let mut b = args("img.tar");
        b.push(bad);
        assert!(agrees(&b), "a non-UTF-8 COMMAND argument is fine");
    }

    /// Every combination of three tokens from a pool, and every 7th of four: the fast path never
    /// disagrees with clap.
    #[test]
    fn differential_against_clap() {
        let pool = [
            "--nv",
            "--rocm",
            "-B",
            "/a:/b",
            "-e",
            "--env",
            "X=1",
            "--gpus",
            "all",
            "img.tar",
            "ls",
            "-c",
            "-q",
            "-v",
            "--",
            "images",
            "--pwd=/p",
            "--env=Y=2",
            "--bind",
            "-la",
            "--ref",
            "r:1",
            "--dry-run",
            "-C",
        ];
        let n = pool.len();
        let mut answered = 0;
        for i in 0..n * n * n * n {
            let (a, b, c, d) = (i % n, i / n % n, i / n / n % n, i / n / n / n);
            let line = match d {
                0 => format!("{} {} {}", pool[a], pool[b], pool[c]),
                _ if i % 7 == 0 => format!("{} {} {} {}", pool[a], pool[b], pool[c], pool[d]),
                _ => continue,
            };
            answered += usize::from(agrees(&args(&line)));
        }
        assert!(answered > 500, "the fast path answered only {answered} lines");
    }
}
