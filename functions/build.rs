//! The function binaries' build script: links them as position-dependent executables on
//! Linux/glibc (Lambda's provided.al2023 and this machine).
//!
//! A position-independent executable of this size carries some 41,000 relative relocations
//! (the SDK's tables of vtables and strings) that the dynamic loader applies at every cold start,
//! copy-on-writing about 600 KB of `.data.rel.ro`: by `perf stat`, 1.1 ms of CPU and 270 page
//! faults of a 3.9 ms init. The cost is ASLR of the executable image alone (heap, stack, mmap
//! and shared libraries stay randomised). `SAFESHIP_PIE=1` at build time links a PIE again.
fn main() {
    println!("cargo:rerun-if-env-changed=SAFESHIP_PIE");
    let target = |key: &str| std::env::var(key).unwrap_or_default();
    let pie = std::env::var_os("SAFESHIP_PIE").is_some_and(|v| v != "0");
    if target("CARGO_CFG_TARGET_OS") == "linux" && target("CARGO_CFG_TARGET_ENV") == "gnu" && !pie {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
