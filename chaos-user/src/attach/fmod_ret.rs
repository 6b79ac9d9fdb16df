//! fmod_ret: an LSM program's own instructions run on the hook's `security_*` function as a
//! BPF_MODIFY_RETURN tracing program, which the kernel accepts whether or not `bpf` is in the
//! active LSM list (it needs only trampolines): the rung below BPF LSM on Ubuntu, RHEL, Amazon
//! Linux and Container-Optimized OS kernels. The same calls load an fentry or fexit program once
//! per function it goes on (aya loads a program once): `chaos signal`'s on its syscall,
//! `chaos delay`'s on each delayed syscall.
//!
//! aya 0.14 and aya-obj 0.3 neither parse an `fmod_ret/` section nor load BPF_MODIFY_RETURN
//! programs. Rather than carry a patched loader, chaos loads the programs aya has already parsed
//! (section `lsm/HOOK`) a second way: aya-obj relocates the object against the maps aya created
//! for the run, and three bpf(2) calls of this module load the program (BPF_PROG_LOAD, type
//! tracing, attach type BPF_MODIFY_RETURN, attach BTF ID the function's), attach it
//! (BPF_RAW_TRACEPOINT_OPEN) and pin its link (BPF_OBJ_PIN). The program is the LSM one,
//! unchanged: the function's arguments are the hook's, in the same order.

use std::{
    collections::HashSet,
    ffi::CString,
    io,
    os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd},
    path::Path,
};

use aya::{Btf, Ebpf, maps::Map};
use aya_obj::{
    Object,
    btf::BtfKind,
    generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_insn, bpf_prog_type},
};

use super::AttachError;

/// The object relocated against the maps of a loaded run: the instructions the kernel gets.
pub struct Relocated {
    object: Object,
}

impl Relocated {
    /// Parses `bytes` (the object `ebpf` was loaded from) and points its map references at
    /// `ebpf`'s maps, its calls at their functions.
    pub fn new(bytes: &[u8], ebpf: &Ebpf, btf: &Btf) -> Result<Self, String> {
        let mut object = Object::parse(bytes).map_err(|err| err.to_string())?;
        object.relocate_btf(btf).map_err(|err| err.to_string())?;
        let fds: Vec<(String, i32)> = ebpf
            .maps()
            .filter_map(|(name, map)| Some((name.to_owned(), map_fd(map)?)))
            .collect();
        let text_sections: HashSet<usize> = object.functions.keys().map(|&(s, _)| s).collect();
        let maps: Vec<(&str, i32, &aya_obj::Map)> = object
            .maps
            .iter()
            .filter_map(|(name, map)| {
                let fd = fds.iter().find(|(n, _)| n == name)?.1;
                Some((name.as_str(), fd, map))
            })
            .collect();
        // The borrow of `object.maps` ends with the relocation: relocate a clone of the list.
        let maps: Vec<(String, i32, aya_obj::Map)> = maps
            .into_iter()
            .map(|(name, fd, map)| (name.to_owned(), fd, map.clone()))
            .collect();
        object
            .relocate_maps(
                maps.iter().map(|(name, fd, map)| (name.as_str(), *fd, map)),
                &text_sections,
            )
            .map_err(|err| err.to_string())?;
        object
            .relocate_calls(&text_sections)
            .map_err(|err| err.to_string())?;
        Ok(Relocated { object })
    }

    /// The instructions of `program`, linked with the functions it calls.
    fn instructions(&self, program: &str) -> Option<&[bpf_insn]> {
        let program = self.object.programs.get(program)?;
        let function = self.object.functions.get(&program.function_key())?;
        Some(&function.instructions)
    }
}

/// The fd of a loaded map of the kinds the objects use.
fn map_fd(map: &Map) -> Option<i32> {
    let data = match map {
        Map::Array(data)
        | Map::HashMap(data)
        | Map::PerCpuArray(data)
        | Map::CgroupArray(data)
        | Map::RingBuf(data) => data,
        _ => return None,
    };
    Some(data.fd().as_fd().as_raw_fd())
}

/// Loads `program` of `relocated` as an fmod_ret program on the kernel function `function`.
pub fn load(
    relocated: &Relocated,
    btf: &Btf,
    program: &'static str,
    function: &str,
) -> Result<OwnedFd, AttachError> {
    load_tracing(
        relocated,
        btf,
        program,
        function,
        bpf_attach_type::BPF_MODIFY_RETURN,
    )
}

/// Loads `program` of `relocated` as a tracing program of `attach_type` (BPF_MODIFY_RETURN,
/// BPF_TRACE_FENTRY, BPF_TRACE_FEXIT) on `function`.
pub fn load_tracing(
    relocated: &Relocated,
    btf: &Btf,
    program: &'static str,
    function: &str,
    attach_type: bpf_attach_type,
) -> Result<OwnedFd, AttachError> {
    let how = match attach_type {
        bpf_attach_type::BPF_TRACE_FENTRY => "fentry",
        bpf_attach_type::BPF_TRACE_FEXIT => "fexit",
        _ => "fmod_ret",
    };
    let failed = |reason: String| AttachError::PastAya {
        program,
        how,
        function: function.to_owned(),
        reason,
    };
    let instructions = relocated
        .instructions(program)
        .ok_or(AttachError::MissingProgram(program))?;
    let btf_id = btf
        .id_by_type_name_kind(function, BtfKind::Func)
        .map_err(|err| failed(format!("not in the kernel's BTF: {err}")))?;
    prog_load(
        program,
        bpf_prog_type::BPF_PROG_TYPE_TRACING,
        attach_type as u32,
        btf_id,
        instructions,
    )
    .map_err(|(err, log)| failed(format!("{err}; verifier output: {}", log.trim())))
}

/// Loads `instructions` as a program of `prog_type` and lets go of it: what the verifier says
/// of them, without an object, maps or the kernel's BTF (the feature probes' way).
pub fn try_instructions(
    prog_type: bpf_prog_type,
    attach_type: Option<bpf_attach_type>,
    instructions: &[bpf_insn],
) -> Result<(), String> {
    let attach_type = attach_type.map_or(0, |t| t as u32);
    prog_load("chaos_probe", prog_type, attach_type, 0, instructions)
        .map(drop)
        .map_err(|(err, log)| {
            // The verifier's reason is its last line but for the statistics it ends with.
            let reason = log.lines().rev().map(str::trim).find(|line| {
                !line.is_empty()
                    && !line.starts_with("processed ")
                    && !line.starts_with("verification time")
                    && !line.starts_with("stack depth")
            });
            match reason {
                Some(reason) => format!("{err}: {reason}"),
                None => err.to_string(),
            }
        })
}

/// BPF_PROG_LOAD; on failure the error and the verifier's log.
fn prog_load(
    name: &str,
    prog_type: bpf_prog_type,
    attach_type: u32,
    attach_btf_id: u32,
    instructions: &[bpf_insn],
) -> Result<OwnedFd, (io::Error, String)> {
    let license = CString::new("GPL").expect("no NUL");
    let mut log = vec![0u8; 1 << 20];
    // SAFETY: an all-zero bpf_attr is the documented "unset" value of every field.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing the BPF_PROG_LOAD member of the union, which the call reads.
    let load = unsafe { &mut attr.__bindgen_anon_3 };
    load.prog_type = prog_type as u32;
    load.expected_attach_type = attach_type;
    load.attach_btf_id = attach_btf_id;
    load.insns = instructions.as_ptr() as u64;
    load.insn_cnt = instructions.len() as u32;
    load.license = license.as_ptr() as u64;
    for (slot, byte) in load.prog_name.iter_mut().zip(name.bytes().take(15)) {
        *slot = byte as core::ffi::c_char;
    }
    load.log_level = 1;
    load.log_buf = log.as_mut_ptr() as u64;
    load.log_size = log.len() as u32;
    bpf_fd(bpf_cmd::BPF_PROG_LOAD, &mut attr).map_err(|err| {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        (err, String::from_utf8_lossy(&log[..end]).into_owned())
    })
}

/// Attaches a loaded fmod_ret, fentry or fexit program; the returned link keeps it attached.
pub fn attach(program: &OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: as in `load`.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.raw_tracepoint.prog_fd = program.as_raw_fd() as u32;
    bpf_fd(bpf_cmd::BPF_RAW_TRACEPOINT_OPEN, &mut attr)
}

/// Pins `link` at `path` (bpffs): it then outlives this process.
pub fn pin(link: &OwnedFd, path: &Path) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
    // SAFETY: as in `load`.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing the BPF_OBJ_PIN member of the union, which the call reads.
    let pin = unsafe { &mut attr.__bindgen_anon_4 };
    pin.bpf_fd = link.as_raw_fd() as u32;
    pin.pathname = path.as_ptr() as u64;
    bpf(bpf_cmd::BPF_OBJ_PIN, &mut attr).map(drop)
}

/// bpf(2) for a command that returns a new file descriptor, which the caller then owns.
fn bpf_fd(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<OwnedFd> {
    let fd = bpf(cmd, attr)?;
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// bpf(2).
fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a whole bpf_attr for the kernel to read (and, for some commands, write),
    // with its size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            std::ptr::from_mut(attr),
            size_of::<bpf_attr>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}
