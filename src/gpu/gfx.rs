//! gfx targets and their ISA families: which target an AMD GPU without code in the image can run
//! as (`HSA_OVERRIDE_GFX_VERSION`), decided from what the image carries ([`super::devcode`]).
//!
//! The families are LLVM's generic processors (AMDGPUUsage, "Generic processor code objects"):
//! `gfx9-generic`, `gfx10-1-generic`, `gfx10-3-generic`, `gfx11-generic`, `gfx12-generic`,
//! `gfx9-4-generic` each name the targets that run one common code object. Within a family a GPU
//! runs code built for the family's base target ("gfx1103 as gfx1100", "gfx1035 as gfx1030"),
//! which is what users of the Radeon 780M and 680M do by hand. Pure: table-tested below.

use std::collections::BTreeSet;

/// One ISA family: its generic target, its members, and the targets a member without code of its
/// own runs as, best first (the base targets official ROCm builds ship code for).
pub struct Family {
    pub generic: &'static str,
    pub members: &'static [&'static str],
    pub runs_as: &'static [&'static str],
}

pub const FAMILIES: &[Family] = &[
    Family {
        generic: "gfx9-generic",
        members: &["gfx900", "gfx902", "gfx904", "gfx906", "gfx909", "gfx90c"],
        runs_as: &["gfx900"],
    },
    Family {
        generic: "gfx9-4-generic",
        members: &["gfx940", "gfx941", "gfx942", "gfx950"],
        runs_as: &["gfx942"],
    },
    Family {
        generic: "gfx10-1-generic",
        members: &["gfx1010", "gfx1011", "gfx1012", "gfx1013"],
        runs_as: &["gfx1010"],
    },
    Family {
        generic: "gfx10-3-generic",
        members: &["gfx1030", "gfx1031", "gfx1032", "gfx1033", "gfx1034", "gfx1035", "gfx1036"],
        runs_as: &["gfx1030"],
    },
    Family {
        generic: "gfx11-generic",
        members: &["gfx1100", "gfx1101", "gfx1102", "gfx1103", "gfx1150", "gfx1151", "gfx1152", "gfx1153"],
        runs_as: &["gfx1100", "gfx1101", "gfx1102"],
    },
    Family { generic: "gfx12-generic", members: &["gfx1200", "gfx1201"], runs_as: &["gfx1200", "gfx1201"] },
];

/// Every target name gpurun recognises in file names and bundle ids (LLVM's AMDGPU processors
/// that ROCm has built for, plus the families' generic names). Longest-prefix matching against
/// this list reads MIOpen's `gfx90a6e.kdb` (gfx90a, 110 CUs in hex) as gfx90a, not gfx90a6e.
const OTHER_TARGETS: &[&str] =
    &["gfx700", "gfx701", "gfx702", "gfx801", "gfx802", "gfx803", "gfx805", "gfx810", "gfx908", "gfx90a"];

/// Family members that run their family's generic code but are never run as another target:
/// gfx950 (MI350) adds to gfx942's ISA, and an image for it carries its own code.
const NEVER_OVERRIDDEN: &[&str] = &["gfx950"];

pub fn family_of(target: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.members.contains(&target))
}

/// `HSA_OVERRIDE_GFX_VERSION`'s spelling of a target: major, minor, stepping in decimal
/// (gfx1100 -> 11.0.0, gfx90c -> 9.0.12); `None` for a name that is not `gfx` + digits + two hex.
pub fn hsa_version(target: &str) -> Option<String> {
    let digits = target.strip_prefix("gfx")?;
    if digits.len() < 3 || !digits.is_ascii() {
        return None;
    }
    let (major, rest) = digits.split_at(digits.len() - 2);
    let major: u32 = major.parse().ok()?;
    let minor = u32::from_str_radix(&rest[..1], 16).ok()?;
    let step = u32::from_str_radix(&rest[1..], 16).ok()?;
    Some(format!("{major}.{minor}.{step}"))
}

/// The gfx target named at the start of `text` (`gfx1100`, `gfx11-generic`, `gfx90a` of
/// `gfx90a6e`), by longest match against the known names, else the whole `gfx` + hex run when it
/// is 3 or 4 characters long (a target newer than this table).
pub fn target_at(text: &str) -> Option<String> {
    let known = FAMILIES
        .iter()
        .flat_map(|f| f.members.iter().chain(std::iter::once(&f.generic)))
        .chain(OTHER_TARGETS.iter())
        .filter(|t| text.starts_with(**t))
        .max_by_key(|t| t.len());
    if let Some(t) = known {
        return Some(t.to_string());
    }
    let run = text.strip_prefix("gfx")?.bytes().take_while(u8::is_ascii_hexdigit).count();
    (3..=4).contains(&run).then(|| text[..3 + run].to_string())
}

/// Every target named anywhere in `text` (a file name, a bundle entry id).
pub fn targets_in(text: &str) -> Vec<String> {
    text.match_indices("gfx").filter_map(|(i, _)| target_at(&text[i..])).collect()
}

/// What one GPU needs from the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// The image has code for its target, or its family's generic code object.
    Native,
    /// None of its own, but for this member of its family.
    RunAs(&'static str),
    /// Nothing it can run (or its target is unknown to the family table).
    NoCode,
}

/// What `target` needs given the image's targets; `prefer` (the targets other selected GPUs run
/// natively) wins among the family's candidates, so one GPU's override leaves the other's code.
pub fn need(target: &str, image: &BTreeSet<String>, prefer: &BTreeSet<String>) -> Need {
    let family = family_of(target);
    if image.contains(target) || family.is_some_and(|f| image.contains(f.generic)) {
        return Need::Native;
    }
    let Some(family) = family.filter(|_| !NEVER_OVERRIDDEN.contains(&target)) else { return Need::NoCode };
    let mut candidates = family.runs_as.iter().filter(|t| **t != target && image.contains(**t));
    let first = candidates.clone().next();
    match candidates.find(|t| prefer.contains(**t)).or(first) {
        Some(t) => Need::RunAs(t),
        None => Need::NoCode,
    }
}

/// A selected GPU, for [`decide`]: a label for messages and its target.
#[derive(Debug, Clone)]
pub struct Selected {
    pub label: String,
    pub target: String,
}

/// The override one run gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// The target the GPUs run as, and its `HSA_OVERRIDE_GFX_VERSION` value.
    pub target: &'static str,
    pub version: String,
    /// The GPUs without code of their own (labels).
    pub lacking: Vec<String>,
    /// GPUs of the family with code of their own that run as `target` too (labels).
    pub moved: Vec<String>,
}

/// What [`decide`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub apply: Option<Override>,
    /// GPUs with nothing to run in the image (labels with targets), for a warning.
    pub no_code: Vec<String>,
}

/// One `HSA_OVERRIDE_GFX_VERSION` covers every GPU of the process: it is set when the GPUs that
/// lack code all run as one target and every other selected GPU belongs to that target's family
/// (it runs that code too). Otherwise the GPUs need different overrides, and the caller must
/// select one: `Err` says which.
pub fn decide(gpus: &[Selected], image: &BTreeSet<String>) -> Result<Decision, String> {
    let mut out = Decision::default();
    if image.is_empty() {
        return Ok(out);
    }
    let needs: Vec<Need> = gpus
        .iter()
        .map(|g| {
            let prefer: BTreeSet<String> = gpus
                .iter()
                .filter(|o| o.target != g.target && image.contains(&o.target))
                .map(|o| o.target.clone())
                .collect();
            need(&g.target, image, &prefer)
        })
        .collect();
    let mut run_as: Option<&'static str> = None;
    for (g, n) in gpus.iter().zip(&needs) {
        match n {
            Need::RunAs(t) if run_as.is_some_and(|r| r != *t) => {
                return Err(format!(
                    "{} would run as {t}, another selected GPU as {}",
                    g.label,
                    run_as.unwrap_or_default()
                ));
            }
            Need::RunAs(t) => run_as = Some(t),
            Need::NoCode => out.no_code.push(g.label.clone()),
            Need::Native => {}
        }
    }
    let Some(target) = run_as else { return Ok(out) };
    let family = family_of(target).map(|f| f.members).unwrap_or_default();
    // Every GPU of the process runs as `target`: one outside its family (with code of its own or
    // none) would be handed code for another ISA.
    let runs_as_target = |t: &str| t == target || (family.contains(&t) && !NEVER_OVERRIDDEN.contains(&t));
    if let Some(g) = gpus.iter().find(|g| !runs_as_target(&g.target)) {
        return Err(format!(
            "{} is not of {target}'s family, and another selected GPU must run as {target}",
            g.label
        ));
    }
    let labels = |pick: &dyn Fn(&Selected, &Need) -> bool| -> Vec<String> {
        gpus.iter().zip(&needs).filter(|(g, n)| pick(g, n)).map(|(g, _)| g.label.clone()).collect()
    };
    let lacking = labels(&|_, n| matches!(n, Need::RunAs(_)));
    let moved = labels(&|g, n| *n == Need::Native && g.target != target);
    out.no_code.clear();
    let version = hsa_version(target).unwrap_or_default();
    out.apply = Some(Override { target, version, lacking, moved });
    Ok(out)
}

/// The override `gpurun doctor` suggests for a target when the image is not known: its family's
/// first base target, for members that are not one themselves.
pub fn usual_override(target: &str) -> Option<String> {
    let family = family_of(target)?;
    let base = family.runs_as.first()?;
    (!family.runs_as.contains(&target)).then(|| hsa_version(base)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn gpu(label: &str, target: &str) -> Selected {
        Selected { label: label.into(), target: target.into() }
    }

    #[test]
    fn versions_and_names() {
        assert_eq!(hsa_version("gfx1100").as_deref(), Some("11.0.0"));
        assert_eq!(hsa_version("gfx1030").as_deref(), Some("10.3.0"));
        assert_eq!(hsa_version("gfx90c").as_deref(), Some("9.0.12"));
        assert_eq!(hsa_version("gfx900").as_deref(), Some("9.0.0"));
        assert_eq!(hsa_version("gfx11-generic"), None);
        assert_eq!(target_at("gfx90a6e.kdb").as_deref(), Some("gfx90a"));
        assert_eq!(target_at("gfx1030_36.kdb").as_deref(), Some("gfx1030"));
        assert_eq!(target_at("gfx11-generic:xnack-").as_deref(), Some("gfx11-generic"));
        assert_eq!(target_at("gfx1250.co").as_deref(), Some("gfx1250"));
        assert_eq!(target_at("gfxabcdef"), None);
        assert_eq!(
            targets_in("TensileLibrary_Type_HH_Contraction_l_Ailk_Bljk_Cijk_Dijk_gfx1100.co"),
            ["gfx1100"]
        );
        assert_eq!(targets_in("hipv4-amdgcn-amd-amdhsa--gfx90a:xnack+"), ["gfx90a"]);
        assert_eq!(usual_override("gfx1103").as_deref(), Some("11.0.0"));
        assert_eq!(usual_override("gfx1035").as_deref(), Some("10.3.0"));
        assert_eq!(usual_override("gfx1100"), None);
        assert_eq!(usual_override("gfx908"), None);
    }

    #[test]
    fn needs() {
        let none = BTreeSet::new();
        assert_eq!(need("gfx1103", &set(&["gfx1100"]), &none), Need::RunAs("gfx1100"));
        assert_eq!(need("gfx1103", &set(&["gfx1103"]), &none), Need::Native);
        assert_eq!(need("gfx1103", &set(&["gfx11-generic"]), &none), Need::Native);
        assert_eq!(need("gfx1035", &set(&["gfx1030", "gfx906"]), &none), Need::RunAs("gfx1030"));
        assert_eq!(need("gfx1103", &set(&["gfx1030", "gfx906"]), &none), Need::NoCode);
        assert_eq!(need("gfx908", &set(&["gfx90a"]), &none), Need::NoCode);
        assert_eq!(need("gfx1102", &set(&["gfx1101", "gfx1100"]), &none), Need::RunAs("gfx1100"));
        // Another selected GPU's own target is preferred.
        assert_eq!(
            need("gfx1103", &set(&["gfx1100", "gfx1102"]), &set(&["gfx1102"])),
            Need::RunAs("gfx1102")
        );
        assert_eq!(need("gfx90c", &set(&["gfx900"]), &none), Need::RunAs("gfx900"));
    }

    #[test]
    fn one_override_per_process() {
        let apu = gpu("GPU 1 (gfx1103)", "gfx1103");
        let rx7600 = gpu("GPU 0 (gfx1102)", "gfx1102");
        let mi50 = gpu("GPU 2 (gfx906)", "gfx906");
        // The APU alone, image built for gfx1100.
        let d = decide(std::slice::from_ref(&apu), &set(&["gfx1100"])).unwrap();
        let o = d.apply.unwrap();
        assert_eq!((o.target, o.version.as_str(), o.lacking.len()), ("gfx1100", "11.0.0", 1));
        // Both Navi 3 GPUs run the gfx1100 code.
        let d = decide(&[rx7600.clone(), apu.clone()], &set(&["gfx1100"])).unwrap();
        assert_eq!(d.apply.unwrap().lacking.len(), 2);
        // The dGPU has its own code: the APU runs as it, the dGPU stays itself.
        let d = decide(&[rx7600.clone(), apu.clone()], &set(&["gfx1100", "gfx1102"])).unwrap();
        assert_eq!(d.apply.unwrap().target, "gfx1102");
        // Nothing to do.
        assert_eq!(decide(std::slice::from_ref(&rx7600), &set(&["gfx1102"])).unwrap(), Decision::default());
        assert_eq!(decide(std::slice::from_ref(&apu), &BTreeSet::new()).unwrap(), Decision::default());
        // No code for its family: a warning, no override.
        let d = decide(std::slice::from_ref(&apu), &set(&["gfx906"])).unwrap();
        assert_eq!((d.apply, d.no_code.len()), (None, 1));
        // An MI50 with its own code beside an APU that must be overridden: refused; without
        // code of its own too (it would be handed gfx11 code).
        let e = decide(&[mi50.clone(), apu.clone()], &set(&["gfx906", "gfx1100"])).unwrap_err();
        assert!(e.contains("GPU 2 (gfx906)") && e.contains("gfx1100"), "{e}");
        let e = decide(&[mi50, apu.clone()], &set(&["gfx1100"])).unwrap_err();
        assert!(e.contains("GPU 2 (gfx906)"), "{e}");
        // A family member with its own code that runs as the override is named.
        let strix = gpu("GPU 4 (gfx1150)", "gfx1150");
        let o = decide(&[strix, apu.clone()], &set(&["gfx1100", "gfx1150"])).unwrap().apply.unwrap();
        assert_eq!((o.target, o.moved.as_slice()), ("gfx1100", ["GPU 4 (gfx1150)".to_string()].as_slice()));
        // gfx950 is recognised, runs the family's generic code, and is never overridden.
        let mi350 = gpu("GPU 5 (gfx950)", "gfx950");
        assert_eq!(need("gfx950", &set(&["gfx9-4-generic"]), &BTreeSet::new()), Need::Native);
        assert_eq!(need("gfx950", &set(&["gfx942"]), &BTreeSet::new()), Need::NoCode);
        assert_eq!(decide(&[mi350], &set(&["gfx942"])).unwrap().no_code.len(), 1);
        // Two GPUs needing two different overrides.
        let rembrandt = gpu("GPU 3 (gfx1035)", "gfx1035");
        let e = decide(&[apu, rembrandt], &set(&["gfx1030", "gfx1100"])).unwrap_err();
        assert!(e.contains("gfx1030") && e.contains("gfx1100"), "{e}");
    }
}
