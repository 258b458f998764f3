//! The subcommands that manage images and the cache: `inspect`, `unpack`, `images`, `rm`,
//! `prune`. Each returns its output as text for `main` to print, so tests and the man page see
//! exactly one formatting path.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;

use crate::cache::{Cache, CacheError, SourceMemo, TagMemo};
use crate::cli::{
    ImagesArgs, InspectArgs, LoginArgs, LogoutArgs, PruneArgs, PullArgs, RmArgs, SelectArgs, UnpackArgs,
};
use crate::host::ProcessEnv;
use crate::image::source::registry::auth::{self, Credentials, Secret};
use crate::image::source::registry::{self, Client, Reference, RegistryError};
use crate::image::source::{FileIdentity, identity_probe};
use crate::image::{self, ImageArg, ImageError, Selection};
use crate::prepare::{self, PrepareError, Stage};
use crate::ui::Ui;

/// Failures of the cache-management commands.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    #[error("no cached image matches {0:?}")]
    NoMatch(String),
    #[error("{target:?} matches several cached images: {}", .ids.join(", "))]
    AmbiguousId { target: String, ids: Vec<String> },
    #[error("image {0} is in use by a running container")]
    InUse(String),
    #[error("{registry}")]
    Login { registry: String, source: Box<RegistryError> },
    #[error("{0}")]
    Credentials(#[from] auth::AuthError),
    #[error("{0}")]
    Input(String),
}

impl CommandError {
    pub fn hint(&self) -> Option<String> {
        match self {
            CommandError::Image(e) => e.hint(),
            CommandError::NoMatch(_) => Some("list cached images with `gpurun images`".into()),
            CommandError::AmbiguousId { .. } => Some("give more characters of the id".into()),
            CommandError::InUse(_) => Some("wait for the container to exit, then retry".into()),
            CommandError::Cache(e) => e.hint(),
            CommandError::Prepare(e) => e.hint(),
            CommandError::Login { registry, source } => source.hint(registry),
            CommandError::Credentials(_) | CommandError::Input(_) => None,
        }
    }
}

pub fn selection(s: &SelectArgs) -> Selection {
    Selection { reference: s.reference.clone(), platform: s.platform.clone() }
}

pub fn unpack(args: &UnpackArgs, st: &Stage) -> Result<String, CommandError> {
    let image = ImageArg::classify(&args.image)?;
    let p = prepare::prepare(
        &image,
        &selection(&args.select),
        &Stage { pull: args.select.pull.unwrap_or(st.pull), ..*st },
    )?;
    Ok(format!("{}\n", p.rootfs.display()))
}

/// `gpurun pull REF`: into the cache (always asking the registry, unless `--pull` says
/// otherwise); prints the image id.
pub fn pull(args: &PullArgs, st: &Stage) -> Result<String, CommandError> {
    let text = if args.image.starts_with(registry::reference::SCHEME) {
        args.image.clone()
    } else {
        format!("{}{}", registry::reference::SCHEME, args.image)
    };
    let image = ImageArg::classify(std::path::Path::new(&text))?;
    if let (Some(out), ImageArg::Registry(reference)) = (&args.output, &image) {
        return export(reference, &selection(&args.select), out, st);
    }
    let pull = args.select.pull.unwrap_or(crate::cli::PullPolicy::Always);
    let p = prepare::prepare(&image, &selection(&args.select), &Stage { pull, ..*st })?;
    Ok(format!("sha256:{}\n", p.id.unwrap_or_default()))
}

/// `gpurun pull REF -o FILE`: the image as an OCI archive; prints its id.
fn export(
    reference: &Reference,
    sel: &Selection,
    out: &std::path::Path,
    st: &Stage,
) -> Result<String, CommandError> {
    if let Some(other) = &sel.reference {
        let why = format!(
            "--ref {other} chooses an image inside an archive; for a registry, name the tag in the reference"
        );
        return Err(ImageError::BadReference { reference: reference.to_string(), why }.into());
    }
    let source = registry::RegistrySource::open(reference, st.net)?;
    let resolved = image::ImageSource::resolve(&source, sel)?;
    let tag = reference.tag.as_deref().unwrap_or("latest");
    let size = registry::export::write_archive(&source, &resolved, out, tag)?;
    st.ui.info(&format!("wrote {} ({}) as {tag}", out.display(), human(size)));
    Ok(format!("sha256:{}\n", resolved.id.hex))
}

/// `gpurun login REGISTRY`: the credentials are checked against the registry, then stored.
pub fn login(args: &LoginArgs, net: &registry::Options) -> Result<String, CommandError> {
    let reference = login_target(&args.registry)?;
    let username = match &args.username {
        Some(u) => u.clone(),
        None => prompt_line("Username: ")?,
    };
    let password = if args.password_stdin { read_stdin_password()? } else { prompt_password("Password: ")? };
    if username.is_empty() || password.is_empty() {
        return Err(CommandError::Input("a user name and a password are needed".into()));
    }
    let creds = Credentials { username, password: Secret::new(password) };
    let client = Client::new(&reference, net)
        .map_err(|source| CommandError::Login {
            registry: reference.registry.clone(),
            source: Box::new(source),
        })?
        .with_credentials(creds.clone());
    client.ping().map_err(|source| CommandError::Login {
        registry: reference.registry.clone(),
        source: Box::new(source),
    })?;
    let file = auth::login_file(&net.env)?;
    auth::store(&file, &reference.registry, Some(&creds))?;
    Ok(format!("Login Succeeded (credentials for {} in {})\n", reference.registry, file.display()))
}

/// `gpurun logout REGISTRY`: removes the entry from the file `login` writes.
pub fn logout(args: &LogoutArgs, env: &ProcessEnv) -> Result<String, CommandError> {
    let reference = login_target(&args.registry)?;
    let file = auth::login_file(env)?;
    if auth::store(&file, &reference.registry, None)? {
        Ok(format!("Removed login credentials for {} from {}\n", reference.registry, file.display()))
    } else {
        Err(CommandError::Input(format!("not logged in to {} (in {})", reference.registry, file.display())))
    }
}

/// A registry named as users write it (`HOST[:PORT]`, `docker.io`, `https://HOST/`), as a
/// reference to any repository there (login checks `/v2/`, which needs none).
fn login_target(text: &str) -> Result<Reference, CommandError> {
    let host = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://")).unwrap_or(text);
    let host = host.trim_end_matches('/').trim_end_matches("/v1").trim_end_matches("/v2");
    let host = if host.contains(['.', ':']) || host == "localhost" { host } else { "docker.io" };
    Reference::parse(&format!("{host}/library/x"))
        .map_err(|why| CommandError::Input(format!("registry {text:?}: {why}")))
}

fn prompt_line(prompt: &str) -> Result<String, CommandError> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(CommandError::Input("no user name: give --username".into()));
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| CommandError::Input(e.to_string()))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Asks on the terminal with echo off (and restores it, also on error).
fn prompt_password(prompt: &str) -> Result<String, CommandError> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CommandError::Input("no terminal to ask for the password: use --password-stdin".into()));
    }
    let saved = tcgetattr(&stdin).map_err(|e| CommandError::Input(format!("terminal: {e}")))?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&stdin, OptionalActions::Now, &quiet)
        .map_err(|e| CommandError::Input(format!("terminal: {e}")))?;
    let line = prompt_line(prompt);
    let _ = tcsetattr(&stdin, OptionalActions::Now, &saved);
    eprintln!();
    line
}

fn read_stdin_password() -> Result<String, CommandError> {
    use std::io::Read;
    let mut text = String::new();
    std::io::stdin()
        .take(64 << 10)
        .read_to_string(&mut text)
        .map_err(|e| CommandError::Input(e.to_string()))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

pub fn inspect(args: &InspectArgs, net: &registry::Options) -> Result<String, CommandError> {
    let arg = ImageArg::classify(&args.image)?;
    if let ImageArg::Squash(path) = &arg {
        let i = image::unpack::inspect_squash(path)?;
        return Ok(if args.json {
            serde_json::to_string_pretty(&i).unwrap_or_default() + "\n"
        } else {
            squash_text(&i)
        });
    }
    let i = image::inspect(&arg, &selection(&args.select), net)?;
    if args.json {
        return Ok(serde_json::to_string_pretty(&i).unwrap_or_default() + "\n");
    }
    let c = &i.config;
    let mut out = String::new();
    let _ = writeln!(out, "Id:          {}", i.id);
    let _ = writeln!(
        out,
        "Format:      {}",
        serde_json::to_value(i.format).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
    );
    let _ = writeln!(out, "Reference:   {}", i.reference.as_deref().unwrap_or("-"));
    let _ = writeln!(out, "Platform:    {}", i.platform);
    let _ = writeln!(out, "User:        {}", c.user.as_deref().unwrap_or("-"));
    let _ = writeln!(out, "WorkingDir:  {}", c.working_dir.as_deref().unwrap_or("-"));
    let _ = writeln!(out, "Entrypoint:  {}", serde_json::to_string(&c.entrypoint).unwrap_or_default());
    let _ = writeln!(out, "Cmd:         {}", serde_json::to_string(&c.cmd).unwrap_or_default());
    let _ = writeln!(out, "Env:");
    for e in &c.env {
        let _ = writeln!(out, "  {}", printable(e));
    }
    let _ = writeln!(out, "Labels:");
    for (k, v) in &c.labels {
        let _ = writeln!(out, "  {}={}", printable(k), printable(v));
    }
    let _ = writeln!(out, "Layers:");
    for (n, l) in i.layers.iter().enumerate() {
        let id = l.digest.as_deref().unwrap_or(&l.diff_id);
        let _ = writeln!(
            out,
            "  {:>3}  {id}  {:>10}  {}",
            n + 1,
            human(l.size),
            l.media_type.as_deref().unwrap_or("tar")
        );
    }
    Ok(out)
}

/// `text` with control characters (an image's escape sequences would drive the terminal) shown
/// as `?`; tabs stay. Every value `inspect` prints from an image goes through it.
fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() && c != '\t' { '?' } else { c }).collect()
}

/// `inspect`'s text for a SIF or SquashFS file.
fn squash_text(i: &image::unpack::SquashInspection) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Id:          {}", i.id.as_deref().unwrap_or("-"));
    let _ = writeln!(out, "Format:      {}", i.format);
    if let Some(sb) = &i.squashfs {
        let _ = writeln!(
            out,
            "SquashFS:    {} compression, {} blocks, {} inodes, {}",
            sb.compression.name(),
            human(u64::from(sb.block_size)),
            sb.inode_count,
            human(sb.bytes_used)
        );
    }
    if let Some(why) = &i.not_runnable {
        let _ = writeln!(out, "Runnable:    no: {why}");
    }
    if let Some(sif) = &i.sif {
        let _ = writeln!(out, "SIF:         version {}, {}, uuid {}", sif.version, sif.arch, sif.uuid);
        let _ = writeln!(out, "Created:     {} (unix time)", sif.created);
        let _ = writeln!(out, "Objects:");
        for o in &sif.objects {
            let mut what = o.kind.clone();
            if let Some(p) = &o.partition {
                what = format!("{what} ({}, {}, {})", p.fs, p.kind, p.arch);
            }
            if let Some(s) = &o.signature {
                what = format!("{what} ({}, {}, entity {}, signs {})", s.format, s.hash, s.entity, s.signs);
            }
            if let Some(f) = &o.sbom_format {
                what = format!("{what} ({f})");
            }
            let group = o.group.map(|g| format!("group {g}")).unwrap_or_else(|| "-".into());
            let _ = writeln!(out, "  {:>3}  {:<8} {:>10}  {what}", o.id, group, human(o.size));
        }
    }
    if let Some(labels) = i.labels.as_ref().and_then(|l| l.as_object()) {
        let _ = writeln!(out, "Labels:");
        for (k, v) in labels {
            let v = v.as_str().map(String::from).unwrap_or_else(|| v.to_string());
            let _ = writeln!(out, "  {}={}", printable(k), printable(&v));
        }
    }
    if let Some(d) = &i.definition {
        let _ = writeln!(out, "Definition:");
        for line in d.lines() {
            let _ = writeln!(out, "  {}", printable(line));
        }
    }
    out
}

pub fn images(args: &ImagesArgs, cache: &Cache) -> Result<String, CommandError> {
    let list = cache.list()?;
    if args.json {
        return Ok(serde_json::to_string_pretty(&list).unwrap_or_default() + "\n");
    }
    // Columns as wide as their longest value: a long reference must not run into the source.
    let reference = |r: &crate::cache::ImageRecord| r.reference.clone().unwrap_or_else(|| "-".into());
    let pw = list.iter().map(|r| r.platform.len()).chain([8]).max().unwrap_or(8) + 2;
    let rw = list.iter().map(|r| reference(r).len()).chain([9]).max().unwrap_or(9) + 2;
    let mut out =
        format!("{:<14}{:>10}  {:<pw$}{:<rw$}{}\n", "ID", "SIZE", "PLATFORM", "REFERENCE", "SOURCE");
    for r in &list {
        let _ = writeln!(
            out,
            "{:<14}{:>10}  {:<pw$}{:<rw$}{}",
            &r.id[..12.min(r.id.len())],
            human(r.size),
            r.platform,
            reference(r),
            r.source.display()
        );
    }
    Ok(out)
}

pub fn rm(args: &RmArgs, cache: &Cache) -> Result<String, CommandError> {
    let mut out = String::new();
    for target in &args.targets {
        for id in ids_for(target, cache)? {
            let Some(_lock) = cache.try_lock_exclusive(&id)? else { return Err(CommandError::InUse(id)) };
            cache.remove(&id)?;
            forget_memos(cache, |m| m.id == id);
            forget_tags(cache, |m| m.id == id);
            let _ = writeln!(out, "removed {id}");
        }
    }
    Ok(out)
}

/// Ids named by `target`: a source archive path, a `docker://` reference, or a unique id prefix.
fn ids_for(target: &str, cache: &Cache) -> Result<Vec<String>, CommandError> {
    let list = cache.list()?;
    if target.starts_with(registry::reference::SCHEME) {
        let name = Reference::parse(target)
            .map_err(|why| ImageError::BadReference { reference: target.into(), why })?;
        let name = name.to_string();
        let ids: BTreeSet<String> =
            tags(cache).into_iter().filter(|(_, m)| m.reference == name).map(|(_, m)| m.id).collect();
        return if ids.is_empty() {
            Err(CommandError::NoMatch(target.to_owned()))
        } else {
            Ok(ids.into_iter().collect())
        };
    }
    if let Ok(canon) = fs::canonicalize(target) {
        // The record names the archive that first unpacked the image; the memos name every
        // archive that has been run since (a copy, another format of the same image).
        let published: BTreeSet<&str> = list.iter().map(|r| r.id.as_str()).collect();
        let ids: BTreeSet<String> = list
            .iter()
            .filter(|r| r.source == canon)
            .map(|r| r.id.clone())
            .chain(
                memos(cache)
                    .into_iter()
                    .filter(|(_, m)| m.path == canon && published.contains(m.id.as_str()))
                    .map(|(_, m)| m.id),
            )
            .collect();
        if !ids.is_empty() {
            return Ok(ids.into_iter().collect());
        }
    }
    let wanted = target.strip_prefix("sha256:").unwrap_or(target);
    let hits: Vec<String> = list.iter().filter(|r| r.id.starts_with(wanted)).map(|r| r.id.clone()).collect();
    match hits.len() {
        0 => Err(CommandError::NoMatch(target.to_owned())),
        1 => Ok(hits),
        _ => Err(CommandError::AmbiguousId { target: target.to_owned(), ids: hits }),
    }
}

fn memos(cache: &Cache) -> Vec<(std::path::PathBuf, SourceMemo)> {
    let Ok(rd) = fs::read_dir(cache.sources_dir()) else { return Vec::new() };
    rd.flatten().filter_map(|e| SourceMemo::read(&e.path()).ok().map(|m| (e.path(), m))).collect()
}

fn forget_memos(cache: &Cache, pred: impl Fn(&SourceMemo) -> bool) {
    for (path, memo) in memos(cache) {
        if pred(&memo) {
            let _ = fs::remove_file(path);
        }
    }
}

fn tags(cache: &Cache) -> Vec<(std::path::PathBuf, TagMemo)> {
    let Ok(rd) = fs::read_dir(cache.refs_dir()) else { return Vec::new() };
    rd.flatten().filter_map(|e| TagMemo::read(&e.path()).ok().map(|m| (e.path(), m))).collect()
}

fn forget_tags(cache: &Cache, pred: impl Fn(&TagMemo) -> bool) {
    for (path, memo) in tags(cache) {
        if pred(&memo) {
            let _ = fs::remove_file(path);
        }
    }
}

/// True when the memo's archive is still the file it describes.
fn memo_current(m: &SourceMemo) -> bool {
    let probe = identity_probe(&m.path);
    fs::metadata(&probe).is_ok_and(|meta| FileIdentity::of(&meta) == m.identity)
}

pub fn prune(args: &PruneArgs, cache: &Cache, ui: &Ui) -> Result<String, CommandError> {
    let mut out = String::new();
    prune_staging(cache, &mut out, ui)?;
    forget_memos(cache, |m| !memo_current(m));
    // A pulled tag keeps its image, as an unchanged archive does; `--all` removes both.
    let live: BTreeSet<String> = memos(cache)
        .into_iter()
        .map(|(_, m)| m.id)
        .chain(tags(cache).into_iter().map(|(_, m)| m.id))
        .collect();
    let mut freed = 0;
    for rec in cache.list()? {
        if !args.all && live.contains(&rec.id) {
            continue;
        }
        match cache.try_lock_exclusive(&rec.id)? {
            Some(_lock) => {
                cache.remove(&rec.id)?;
                forget_memos(cache, |m| m.id == rec.id);
                forget_tags(cache, |m| m.id == rec.id);
                freed += rec.size;
                let _ = writeln!(
                    out,
                    "removed {} ({}, {})",
                    &rec.id[..12.min(rec.id.len())],
                    human(rec.size),
                    rec.source.display()
                );
            }
            None => ui.warn(&format!("{} is in use; kept", rec.id)),
        }
    }
    freed += prune_blobs(cache, &mut out, ui)?;
    let _ = writeln!(out, "freed {}", human(freed));
    Ok(out)
}

/// Layer blobs no cached image uses, and leftovers of killed downloads. Only while no pull is
/// downloading (the store's lock, which pulls on every node sharing the cache hold while they
/// download): then every temporary file is a leftover. Returns the bytes freed.
fn prune_blobs(cache: &Cache, out: &mut String, ui: &Ui) -> Result<u64, CommandError> {
    if !cache.blobs_dir().is_dir() {
        return Ok(0);
    }
    let Some(_lock) = cache.lock_blobs(true)? else {
        ui.warn("the blob store is in use by a running pull; its blobs are kept");
        return Ok(0);
    };
    let used: BTreeSet<String> =
        cache.list()?.iter().flat_map(|r| r.layers.iter().filter_map(|l| l.digest.clone())).collect();
    let mut freed = 0;
    for alg in fs::read_dir(cache.blobs_dir()).into_iter().flatten().flatten() {
        let name = alg.file_name().to_string_lossy().into_owned();
        for f in fs::read_dir(alg.path()).into_iter().flatten().flatten() {
            let file = f.file_name().to_string_lossy().into_owned();
            if name != "tmp" && used.contains(&format!("{name}:{file}")) {
                continue;
            }
            let size = f.metadata().map(|m| m.len()).unwrap_or(0);
            if fs::remove_file(f.path()).is_ok() {
                freed += size;
                let short: String = file.chars().take(12).collect();
                let what = if name == "tmp" { "download leftover" } else { "blob" };
                let _ = writeln!(out, "removed {what} {short} ({})", human(size));
            }
        }
    }
    Ok(freed)
}

/// Staging directories whose image lock is free belong to killed unpacks.
fn prune_staging(cache: &Cache, out: &mut String, ui: &Ui) -> Result<(), CommandError> {
    let dir = cache.staging_dir();
    let Ok(rd) = fs::read_dir(&dir) else { return Ok(()) };
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let id = name.split('.').next().unwrap_or_default().to_owned();
        // Unpack leftovers are guarded by the unpack lock, removal leftovers by the use lock.
        let lock = if name.contains(".removing") {
            cache.try_lock_exclusive(&id)?
        } else {
            cache.try_lock_unpack(&id)?
        };
        if let Some(_lock) = lock {
            // One leftover that cannot be removed must not keep prune from the others.
            match crate::fsutil::remove_tree(&entry.path()) {
                Ok(()) => {
                    let _ = writeln!(out, "removed leftover {}", entry.path().display());
                }
                Err(e) => ui.warn(&format!("could not remove leftover {}: {e}", entry.path().display())),
            }
        }
    }
    Ok(())
}

/// Sizes as people read them (decimal units, as `docker images` prints).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[u]) }
}
