//! The kernel side of chaos. Each binary in `src/bin` is one eBPF object; this library holds what
//! they share.
#![no_std]
// The BPF target lacks core's atomic read-modify-write methods; the intrinsic works (nightly).
// The legacy build (no atomics) does not use it.
#![allow(internal_features)]
#![cfg_attr(not(chaos_legacy), feature(core_intrinsics))]

pub mod disk;
pub mod errno;
pub mod path;

/// What every eBPF object needs besides its programs: a panic handler (the verifier would refuse
/// a program that could reach one, so it is never called) and the GPL license, which the helpers
/// the programs call (`bpf_probe_read_kernel`, `bpf_override_return`, …) require.
#[macro_export]
macro_rules! gpl_program {
    () => {
        #[cfg(not(test))]
        #[panic_handler]
        fn panic(_info: &core::panic::PanicInfo) -> ! {
            loop {}
        }

        #[unsafe(link_section = "license")]
        #[unsafe(no_mangle)]
        static LICENSE: [u8; 4] = *b"GPL\0";
    };
}
