//! The few facts gpurun needs from an ELF file, read with the `object` crate: class and machine
//! (a 32-bit or foreign library must never be bound for a 64-bit workload), `DT_NEEDED` (the
//! dependency closure), `PT_INTERP` (an image without glibc needs the host's loader), and glibc
//! symbol versions (a host library needing `GLIBC_2.38` cannot load against an image's 2.36).
//! Pure: callers pass bytes.

use object::Endianness;
use object::elf;
use object::read::elf::{Dyn, FileHeader, ProgramHeader};

/// A glibc version such as 2.36, ordered numerically.
pub type GlibcVersion = (u32, u32);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElfInfo {
    pub class64: bool,
    pub machine: u16,
    pub needed: Vec<String>,
    pub interpreter: Option<String>,
    /// The newest `GLIBC_x.y` this file asks for (from `.gnu.version_r`).
    pub glibc_required: Option<GlibcVersion>,
    /// The newest `GLIBC_x.y` this file defines (from `.gnu.version_d`): libc.so.6's own version.
    pub glibc_defined: Option<GlibcVersion>,
}

#[derive(Debug, thiserror::Error)]
#[error("not a readable ELF file: {0}")]
pub struct ElfError(#[from] object::read::Error);

/// `"GLIBC_2.34"` -> (2, 34); other version names -> None.
pub fn parse_glibc_version(name: &str) -> Option<GlibcVersion> {
    let rest = name.strip_prefix("GLIBC_")?;
    let mut parts = rest.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Reads an ELF file's header, dynamic section and version sections.
pub fn parse_elf(data: &[u8]) -> Result<ElfInfo, ElfError> {
    // e_ident[EI_CLASS] (offset 4) says 32 or 64 bit.
    match data.get(4) {
        Some(&c) if c == elf::ELFCLASS64.0 => parse_generic::<elf::FileHeader64<Endianness>>(data, true),
        _ => parse_generic::<elf::FileHeader32<Endianness>>(data, false),
    }
}

/// The ELF class and machine of the build target, compared against candidates.
pub fn native_machine() -> (bool, u16) {
    let machine = if cfg!(target_arch = "x86_64") {
        elf::EM_X86_64
    } else if cfg!(target_arch = "aarch64") {
        elf::EM_AARCH64
    } else if cfg!(target_arch = "powerpc64") {
        elf::EM_PPC64
    } else if cfg!(target_arch = "riscv64") {
        elf::EM_RISCV
    } else if cfg!(target_arch = "x86") {
        elf::EM_386
    } else {
        elf::EM_NONE
    };
    (cfg!(target_pointer_width = "64"), machine.0)
}

fn parse_generic<Elf: FileHeader<Endian = Endianness>>(
    data: &[u8],
    class64: bool,
) -> Result<ElfInfo, ElfError> {
    let header = Elf::parse(data)?;
    let endian = header.endian()?;
    let mut info = ElfInfo { class64, machine: header.e_machine(endian).0, ..ElfInfo::default() };
    for ph in header.program_headers(endian, data)? {
        if let Some(interp) = ph.interpreter(endian, data)? {
            info.interpreter = Some(String::from_utf8_lossy(interp).into_owned());
        }
    }
    let sections = header.sections(endian, data)?;
    for section in sections.iter() {
        let Some((dyns, link)) = object::read::elf::SectionHeader::dynamic(section, endian, data)? else {
            continue;
        };
        let strings = sections.strings(endian, data, link)?;
        for d in dyns {
            if d.d_tag(endian) == elf::DT_NEEDED {
                let name = d.string(endian, strings)?;
                info.needed.push(String::from_utf8_lossy(name).into_owned());
            }
        }
    }
    if let Some((mut iter, link)) = sections.gnu_verneed(endian, data)? {
        let strings = sections.strings(endian, data, link)?;
        while let Some((_, mut aux)) = iter.next()? {
            while let Some(a) = aux.next()? {
                let name = String::from_utf8_lossy(a.name(endian, strings)?).into_owned();
                info.glibc_required = info.glibc_required.max(parse_glibc_version(&name));
            }
        }
    }
    if let Some((mut iter, link)) = sections.gnu_verdef(endian, data)? {
        let strings = sections.strings(endian, data, link)?;
        while let Some((_, mut aux)) = iter.next()? {
            if let Some(a) = aux.next()? {
                let name = String::from_utf8_lossy(a.name(endian, strings)?).into_owned();
                info.glibc_defined = info.glibc_defined.max(parse_glibc_version(&name));
            }
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_version_names() {
        let table = [
            ("GLIBC_2.34", Some((2, 34))),
            ("GLIBC_2.2.5", Some((2, 2))),
            ("GLIBCXX_3.4", None),
            ("GLIBC_PRIVATE", None),
            ("", None),
        ];
        for (name, want) in table {
            assert_eq!(parse_glibc_version(name), want, "{name}");
        }
        assert!(Some((2, 36)) > Some((2, 4)) && None < Some((2, 0)), "numeric, not lexical, order");
    }

    #[test]
    fn reads_the_test_binary_itself() {
        let me = std::fs::read("/proc/self/exe").unwrap();
        let info = parse_elf(&me).unwrap();
        assert_eq!((info.class64, info.machine), native_machine());
        if info.interpreter.is_some() {
            assert!(info.needed.iter().any(|n| n.starts_with("libc.so")), "{:?}", info.needed);
            assert!(info.glibc_required.is_some());
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_elf(b"#!/bin/sh\n").is_err());
    }
}
