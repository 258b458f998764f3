//! Which GPUs a container gets: `--gpus all|LIST`, else Slurm's allocation or the vendor's
//! environment variable (`NVIDIA_VISIBLE_DEVICES` for `--nv`; `AMD_VISIBLE_DEVICES`, then
//! `ROCR_VISIBLE_DEVICES` for `--rocm`; the order is `edits::selector_for`'s), else every discrete GPU of the vendor (an integrated GPU only when there is no
//! discrete one). Pure: the spellings and the selection rules are table-tested.

use super::{Gpu, GpuError, GpuKind};

/// What a `--gpus` value or a `*_VISIBLE_DEVICES` variable asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Nothing said: every discrete GPU (see module docs).
    Default,
    All,
    /// No GPU, but the driver userspace (`NVIDIA_VISIBLE_DEVICES=none`).
    None,
    /// No GPU and no driver at all (`void`, or empty: the toolkit's "behave like runc").
    Void,
    List(Vec<Ident>),
}

/// One GPU named in a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ident {
    /// Position among that vendor's GPUs (PCI order, as `gpurun gpus` shows).
    Index(usize),
    /// `DDDD:BB:DD.F`, normalised to four domain digits and lowercase.
    Pci(String),
    /// A render node minor (`renderD128`, `/dev/dri/renderD128`).
    Render(u32),
    /// `GPU-...` (NVIDIA UUID, ROCm's `GPU-<unique_id hex>`), normalised from AMD's `0x...`.
    Uuid(String),
}

impl std::fmt::Display for Ident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ident::Index(i) => write!(f, "{i}"),
            Ident::Pci(p) => write!(f, "{p}"),
            Ident::Render(m) => write!(f, "renderD{m}"),
            Ident::Uuid(u) => write!(f, "{u}"),
        }
    }
}

/// Parses `--gpus` (`all`, or a comma-separated list of indexes, `A-B` ranges, PCI addresses,
/// render nodes and UUIDs).
pub fn parse_gpus_flag(text: &str) -> Result<Selector, GpuError> {
    parse_list(text.trim(), "--gpus")
}

/// Parses a `*_VISIBLE_DEVICES` value; `None` (unset) is [`Selector::Default`].
pub fn parse_visible_devices(var: &str, value: Option<&str>) -> Result<Selector, GpuError> {
    let Some(value) = value.map(str::trim) else { return Ok(Selector::Default) };
    match value {
        "" | "void" => Ok(Selector::Void),
        "none" | "NoDevFiles" => Ok(Selector::None),
        _ => parse_list(value, var),
    }
}

fn parse_list(text: &str, origin: &str) -> Result<Selector, GpuError> {
    if text.eq_ignore_ascii_case("all") {
        return Ok(Selector::All);
    }
    if text.is_empty() {
        return Err(GpuError::BadSelector { origin: origin.into(), token: String::new() });
    }
    let mut out = Vec::new();
    for token in text.split(',').map(str::trim) {
        let bad = || GpuError::BadSelector { origin: origin.into(), token: token.into() };
        out.extend(parse_ident(token).ok_or_else(bad)?);
    }
    Ok(Selector::List(out))
}

fn parse_ident(token: &str) -> Option<Vec<Ident>> {
    if let Ok(i) = token.parse::<usize>() {
        return Some(vec![Ident::Index(i)]);
    }
    if let Some((a, b)) = token.split_once('-')
        && let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>())
    {
        return (a <= b && b - a < 4096).then(|| (a..=b).map(Ident::Index).collect());
    }
    let node = token.strip_prefix("/dev/dri/").unwrap_or(token);
    if let Some(minor) = node.strip_prefix("renderD").and_then(|m| m.parse().ok()) {
        return Some(vec![Ident::Render(minor)]);
    }
    if token.starts_with("GPU-") || token.starts_with("MIG-") {
        return Some(vec![Ident::Uuid(token.to_string())]);
    }
    if let Some(hex) = token.strip_prefix("0x").or_else(|| token.strip_prefix("0X")) {
        let id = u64::from_str_radix(hex, 16).ok()?;
        return Some(vec![Ident::Uuid(format!("GPU-{id:016x}"))]);
    }
    normalize_pci(token).map(|p| vec![Ident::Pci(p)])
}

/// `07:00.0`, `0000:07:00.0` and nvidia-smi's `00000000:07:00.0` -> `0000:07:00.0`.
pub fn normalize_pci(text: &str) -> Option<String> {
    let text = text.to_ascii_lowercase();
    let (rest, func) = text.rsplit_once('.')?;
    let parts: Vec<&str> = rest.split(':').collect();
    let (domain, bus, dev) = match parts.as_slice() {
        [bus, dev] => ("0", *bus, *dev),
        [domain, bus, dev] => (*domain, *bus, *dev),
        _ => return None,
    };
    let domain = u32::from_str_radix(domain, 16).ok().filter(|d| *d <= 0xffff)?;
    let bus = u8::from_str_radix(bus, 16).ok()?;
    let dev = u8::from_str_radix(dev, 16).ok().filter(|d| *d < 32)?;
    let func = u8::from_str_radix(func, 16).ok().filter(|f| *f < 8)?;
    Some(format!("{domain:04x}:{bus:02x}:{dev:02x}.{func:x}"))
}

fn matches(gpu: &Gpu, ident: &Ident) -> bool {
    match ident {
        Ident::Index(i) => gpu.index == *i,
        Ident::Pci(p) => gpu.pci == *p,
        Ident::Render(m) => gpu.render_minor() == Some(*m),
        Ident::Uuid(u) => gpu.uuid.as_deref() == Some(u) || gpu.unique_id.as_deref() == Some(u),
    }
}

/// Applies a selector to one vendor's GPUs (in index order). Returns the chosen GPUs, sorted and
/// without repeats, and the identifiers that matched none of them.
pub fn select<'a>(gpus: &[&'a Gpu], selector: &Selector) -> (Vec<&'a Gpu>, Vec<Ident>) {
    match selector {
        Selector::All => (gpus.to_vec(), Vec::new()),
        Selector::None | Selector::Void => (Vec::new(), Vec::new()),
        Selector::Default => {
            let discrete: Vec<&Gpu> = gpus.iter().copied().filter(|g| g.kind == GpuKind::Discrete).collect();
            // An APU-only machine still gets its GPU; with a discrete GPU present the iGPU is
            // left out (ROCm enumerating it crashes or slows jobs: ollama/ollama#2054).
            (if discrete.is_empty() { gpus.to_vec() } else { discrete }, Vec::new())
        }
        Selector::List(idents) => {
            let mut chosen: Vec<&Gpu> = Vec::new();
            let mut unmatched = Vec::new();
            for ident in idents {
                match gpus.iter().find(|g| matches(g, ident)) {
                    Some(g) if !chosen.iter().any(|c| c.pci == g.pci && c.render == g.render) => {
                        chosen.push(g)
                    }
                    Some(_) => {}
                    None => unmatched.push(ident.clone()),
                }
            }
            chosen.sort_by_key(|g| g.index);
            (chosen, unmatched)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::{Vendor, test_gpu};

    #[test]
    fn visible_devices_spellings() {
        use Ident::*;
        let table: &[(Option<&str>, Result<Selector, ()>)] = &[
            (None, Ok(Selector::Default)),
            (Some(""), Ok(Selector::Void)),
            (Some("void"), Ok(Selector::Void)),
            (Some("none"), Ok(Selector::None)),
            (Some("all"), Ok(Selector::All)),
            (Some("ALL"), Ok(Selector::All)),
            (Some("0"), Ok(Selector::List(vec![Index(0)]))),
            (Some("1,3"), Ok(Selector::List(vec![Index(1), Index(3)]))),
            (Some(" 0-2 "), Ok(Selector::List(vec![Index(0), Index(1), Index(2)]))),
            (Some("GPU-4d1e6f"), Ok(Selector::List(vec![Uuid("GPU-4d1e6f".into())]))),
            (Some("0xEF2C"), Ok(Selector::List(vec![Uuid("GPU-000000000000ef2c".into())]))),
            (Some("07:00.0"), Ok(Selector::List(vec![Pci("0000:07:00.0".into())]))),
            (Some("00000000:C8:00.0"), Ok(Selector::List(vec![Pci("0000:c8:00.0".into())]))),
            (Some("renderD129"), Ok(Selector::List(vec![Render(129)]))),
            (Some("/dev/dri/renderD128,1"), Ok(Selector::List(vec![Render(128), Index(1)]))),
            (Some("0,,1"), Err(())),
            (Some("gpu0"), Err(())),
            (Some("3-1"), Err(())),
            (Some("07:00"), Err(())),
        ];
        for (value, want) in table {
            let got = parse_visible_devices("NVIDIA_VISIBLE_DEVICES", *value).map_err(|_| ());
            assert_eq!(&got, want, "{value:?}");
        }
        assert!(parse_gpus_flag("").is_err());
        assert_eq!(parse_gpus_flag("all").unwrap(), Selector::All);
    }

    #[test]
    fn default_leaves_the_igpu_out_when_a_dgpu_exists() {
        let dgpu = test_gpu(Vendor::Amd, 0, "0000:07:00.0", 128, GpuKind::Discrete);
        let igpu = test_gpu(Vendor::Amd, 1, "0000:c8:00.0", 129, GpuKind::Integrated);
        let both = [&dgpu, &igpu];
        let pcis = |sel: &Selector, gpus: &[&Gpu]| -> Vec<String> {
            select(gpus, sel).0.iter().map(|g| g.pci.clone()).collect()
        };
        assert_eq!(pcis(&Selector::Default, &both), ["0000:07:00.0"]);
        assert_eq!(pcis(&Selector::All, &both), ["0000:07:00.0", "0000:c8:00.0"]);
        assert_eq!(pcis(&Selector::Default, &[&igpu]), ["0000:c8:00.0"], "APU-only host");
        assert!(pcis(&Selector::None, &both).is_empty() && pcis(&Selector::Void, &both).is_empty());
        let list =
            Selector::List(vec![Ident::Render(129), Ident::Index(1), Ident::Index(0), Ident::Index(7)]);
        let (chosen, unmatched) = select(&both, &list);
        assert_eq!(chosen.iter().map(|g| g.index).collect::<Vec<_>>(), [0, 1], "sorted, no repeats");
        assert_eq!(unmatched, [Ident::Index(7)]);
        let by_pci = Selector::List(vec![Ident::Pci("0000:c8:00.0".into())]);
        assert_eq!(pcis(&by_pci, &both), ["0000:c8:00.0"]);
    }
}
