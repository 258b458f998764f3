//! A recording [`Sys`] for tests: it performs nothing, appends one [`Call`] per request, and can
//! be told to fail a given call so error paths are testable without a kernel.

use std::io;
use std::path::{Path, PathBuf};

use super::{MountFlags, Propagation, Sys};

/// One recorded request, with owned arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Unshare(libc::c_int),
    WriteProc(PathBuf, String),
    Mount { source: String, target: PathBuf, fstype: Option<String>, flags: MountFlags, data: Option<String> },
    SetPropagation(PathBuf, Propagation),
    MakeReadOnly { target: PathBuf, recursive: bool },
    PivotRoot(PathBuf, PathBuf),
    Detach(PathBuf),
    Chdir(PathBuf),
    Mkdir(PathBuf, u32),
    CreateFile(PathBuf, u32),
    WriteFile(PathBuf, Vec<u8>, u32),
    Symlink(PathBuf, PathBuf),
    Remove(PathBuf),
    FuseMount { program: PathBuf, options: String, target: PathBuf },
}

/// Records calls in order; `fail_at` makes the call with that index fail with `EPERM`.
#[derive(Debug, Default)]
pub struct Recording {
    pub calls: Vec<Call>,
    pub fail_at: Option<usize>,
}

impl Recording {
    fn record(&mut self, call: Call) -> io::Result<()> {
        let index = self.calls.len();
        self.calls.push(call);
        if self.fail_at == Some(index) { Err(io::Error::from_raw_os_error(libc::EPERM)) } else { Ok(()) }
    }
}

impl Sys for Recording {
    fn unshare(&mut self, flags: libc::c_int) -> io::Result<()> {
        self.record(Call::Unshare(flags))
    }
    fn write_proc(&mut self, path: &Path, contents: &str) -> io::Result<()> {
        self.record(Call::WriteProc(path.into(), contents.into()))
    }
    fn mount(
        &mut self,
        source: &std::ffi::OsStr,
        target: &Path,
        fstype: Option<&str>,
        flags: MountFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        self.record(Call::Mount {
            source: source.to_string_lossy().into_owned(),
            target: target.into(),
            fstype: fstype.map(Into::into),
            flags,
            data: data.map(Into::into),
        })
    }
    fn set_propagation(&mut self, target: &Path, propagation: Propagation) -> io::Result<()> {
        self.record(Call::SetPropagation(target.into(), propagation))
    }
    fn make_read_only(&mut self, target: &Path, recursive: bool) -> io::Result<()> {
        self.record(Call::MakeReadOnly { target: target.into(), recursive })
    }
    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        self.record(Call::PivotRoot(new_root.into(), put_old.into()))
    }
    fn detach(&mut self, target: &Path) -> io::Result<()> {
        self.record(Call::Detach(target.into()))
    }
    fn chdir(&mut self, path: &Path) -> io::Result<()> {
        self.record(Call::Chdir(path.into()))
    }
    fn mkdir(&mut self, path: &Path, mode: u32) -> io::Result<()> {
        self.record(Call::Mkdir(path.into(), mode))
    }
    fn create_file(&mut self, path: &Path, mode: u32) -> io::Result<()> {
        self.record(Call::CreateFile(path.into(), mode))
    }
    fn write_file(&mut self, path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
        self.record(Call::WriteFile(path.into(), contents.to_vec(), mode))
    }
    fn symlink(&mut self, target: &Path, link: &Path) -> io::Result<()> {
        self.record(Call::Symlink(target.into(), link.into()))
    }
    fn remove(&mut self, path: &Path) -> io::Result<()> {
        self.record(Call::Remove(path.into()))
    }
    fn fuse_mount(&mut self, program: &Path, options: &str, target: &Path) -> io::Result<()> {
        self.record(Call::FuseMount {
            program: program.into(),
            options: options.into(),
            target: target.into(),
        })
    }
}
