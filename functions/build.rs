//! The function binaries' build script (shared by the five functions and the benchmark's floor,
//! so the floor is linked as they are).
//!
//! They are position-independent executables by default: ASLR of the executable image is the
//! hardening default a security review expects. `SAFESHIP_NO_PIE=1` at build time links them
//! position-dependent on Linux/glibc, for the benchmark only: a PIE this size carries some 41,000
//! relative relocations that the loader applies at every cold start (by `perf stat`, 1.1 ms of
//! CPU and 270 page faults of a 3.9 ms init).
fn main() {
    println!("cargo:rerun-if-env-changed=SAFESHIP_NO_PIE");
    let target = |key: &str| std::env::var(key).unwrap_or_default();
    let no_pie = std::env::var_os("SAFESHIP_NO_PIE").is_some_and(|v| v != "0");
    if no_pie && target("CARGO_CFG_TARGET_OS") == "linux" && target("CARGO_CFG_TARGET_ENV") == "gnu"
    {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
