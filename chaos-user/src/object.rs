//! The eBPF objects built by `build.rs`, embedded in the binary.

use aya::include_bytes_aligned;

/// Faults on calls: cgroup sock_addr, LSM, tracepoint and kprobe programs sharing the target,
/// fault and counter maps.
pub static ERRNO: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/errno"));

/// The same, built without BPF atomics for kernels before 5.12 (`--cfg chaos_legacy`).
pub static ERRNO_LEGACY: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/errno-legacy"));

/// Network faults: TC and cgroup_skb programs sharing the fault and counter maps.
pub static NET: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/net"));

/// Tiny harmless programs that `chaos probe` loads to learn what the kernel allows.
pub static PROBE: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/probe"));

/// The embedded objects by name, as `chaos_common::names` names them.
pub fn by_name(name: &str) -> Option<&'static [u8]> {
    match name {
        "errno" => Some(ERRNO),
        "errno-legacy" => Some(ERRNO_LEGACY),
        "net" => Some(NET),
        "probe" => Some(PROBE),
        _ => None,
    }
}

/// The name of the embedded object `bytes` (one of the above).
pub fn name_of(bytes: &[u8]) -> &'static str {
    ["errno", "errno-legacy", "net", "probe"]
        .into_iter()
        .find(|&name| by_name(name).is_some_and(|object| std::ptr::eq(object, bytes)))
        .unwrap_or("")
}

/// Each preallocated hash map of the object `bytes` (one of the above) with the programs that
/// use it, as build.rs found them in the object's relocations.
pub fn hash_map_users(bytes: &[u8]) -> &'static [(&'static str, &'static [&'static str])] {
    macro_rules! users {
        ($name:literal) => {
            include!(concat!(env!("OUT_DIR"), "/", $name, ".hash-maps.rs"))
        };
    }
    if std::ptr::eq(bytes, ERRNO) {
        users!("errno")
    } else if std::ptr::eq(bytes, ERRNO_LEGACY) {
        users!("errno-legacy")
    } else if std::ptr::eq(bytes, NET) {
        users!("net")
    } else if std::ptr::eq(bytes, PROBE) {
        users!("probe")
    } else {
        &[]
    }
}

/// Every name the loader uses is in the objects it loads, with the section it expects: a rename
/// on either side fails here, on any machine, not at load time in a guest.
#[cfg(test)]
mod tests {
    use chaos_common::{
        hook::{self, Hook},
        names::{self, Object},
        ops::OPS,
    };
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

    use super::by_name;

    /// (symbol, section) of every symbol of the object.
    fn symbols(object: &Object) -> Vec<(String, String)> {
        let bytes = by_name(object.name).expect("an embedded object");
        if let Err(err) = aya_obj::Object::parse(bytes) {
            panic!("aya cannot parse the {} object: {err}", object.name);
        }
        let file = object::File::parse(bytes).expect("an ELF object");
        file.symbols()
            .filter_map(|symbol| {
                let section = file.section_by_index(symbol.section_index()?).ok()?;
                Some((
                    symbol.name().ok()?.to_owned(),
                    section.name().ok()?.to_owned(),
                ))
            })
            .collect()
    }

    fn check(object: &Object, hooks: &[Hook]) {
        let symbols = symbols(object);
        let section_of = |name: &str| {
            symbols
                .iter()
                .find(|(symbol, _)| symbol == name)
                .map(|(_, section)| section.as_str())
        };
        for hook in hooks {
            let (kind, attach) = hook.section();
            let expected = format!("{kind}{attach}");
            assert_eq!(
                section_of(hook.program()),
                Some(expected.as_str()),
                "program {} of the {} object",
                hook.program(),
                object.name
            );
        }
        for map in object.maps {
            let section = section_of(map);
            assert!(
                matches!(section, Some("maps" | ".maps")),
                "map {map} of the {} object is in {section:?}",
                object.name
            );
        }
        for global in object.globals {
            let section = section_of(global).unwrap_or_default();
            assert!(
                [".bss", ".data", ".rodata"]
                    .iter()
                    .any(|s| section.starts_with(s)),
                "global {global} of the {} object is in {section:?}",
                object.name
            );
        }
    }

    /// Every hook of the errno objects: each operation's rungs, and the bookkeeping ones.
    fn errno_hooks() -> Vec<Hook> {
        OPS.iter()
            .flat_map(|op| op.rungs)
            .flat_map(|rung| rung.hooks)
            .chain(&hook::ERRNO_EXTRA)
            .copied()
            .collect()
    }

    #[test]
    fn the_errno_object_has_every_program_map_and_global_the_loader_names() {
        check(&names::ERRNO, &errno_hooks());
    }

    #[test]
    fn the_legacy_errno_object_has_the_same_names() {
        check(&names::ERRNO_LEGACY, &errno_hooks());
    }

    #[test]
    fn the_net_object_has_every_program_and_map_the_loader_names() {
        check(&names::NET, &hook::NET);
    }

    #[test]
    fn the_probe_object_has_every_program_the_probe_names() {
        check(&names::PROBE, &hook::PROBE);
    }

    /// The loader makes a hash map no program of a run uses one entry long: every program of
    /// the errno objects must be found to use the targets' map, which user space fills for
    /// every run, and the per-call maps their own programs only.
    #[test]
    fn the_hash_map_users_are_read_from_the_objects() {
        for bytes in [super::ERRNO, super::ERRNO_LEGACY] {
            let users = super::hash_map_users(bytes);
            let of = |map: &str| {
                users
                    .iter()
                    .find(|(name, _)| *name == map)
                    .map(|(_, programs)| *programs)
                    .unwrap_or_else(|| panic!("hash map {map} in the table"))
            };
            for hook in errno_hooks() {
                assert!(
                    of(names::MAP_TARGET_PIDS).contains(&hook.program()),
                    "{} uses the targets' map",
                    hook.program()
                );
            }
            assert!(of(names::MAP_DELAYED).contains(&hook::DELAY.program()));
            assert!(!of(names::MAP_DELAYED).contains(&"cgroup_connect4"));
        }
        assert!(
            super::hash_map_users(super::NET)
                .iter()
                .all(|(_, programs)| programs.is_empty()),
            "no net program uses a hash map"
        );
    }

    /// CO-RE relocations in an object's `.BTF.ext`, counted from its header and records.
    fn core_relocations(bytes: &[u8]) -> u32 {
        let file = object::File::parse(bytes).expect("an ELF object");
        let Some(section) = file.section_by_name(".BTF.ext") else {
            return 0;
        };
        let ext = section.data().expect(".BTF.ext data");
        assert_eq!(ext[..2], 0xeb9f_u16.to_le_bytes(), "the .BTF.ext magic");
        let word = |at: usize| u32::from_le_bytes(ext[at..at + 4].try_into().unwrap());
        let header_len = word(4) as usize;
        // Headers of 32 bytes or more end with core_relo_off and core_relo_len.
        if header_len < 32 || word(28) == 0 {
            return 0;
        }
        let (start, len) = (header_len + word(24) as usize, word(28) as usize);
        let record_size = word(start) as usize;
        let (mut at, mut count) = (start + 4, 0);
        // Per ELF section: its name's offset, its record count, the records.
        while at < start + len {
            let records = word(at + 4);
            count += records;
            at += 8 + records as usize * record_size;
        }
        count
    }

    /// The patched aya loader (vendor/README.md) gets no kernel BTF, which it would only use
    /// for CO-RE relocations: no object may carry one.
    #[test]
    fn no_object_needs_the_kernel_btf_to_relocate() {
        for object in [
            &names::ERRNO,
            &names::ERRNO_LEGACY,
            &names::NET,
            &names::PROBE,
        ] {
            let bytes = by_name(object.name).expect("an embedded object");
            assert_eq!(core_relocations(bytes), 0, "the {} object", object.name);
        }
    }
}
