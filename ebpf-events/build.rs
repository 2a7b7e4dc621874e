//! Compiles the tc programs in `bpf/` with clang when the `loader` feature is
//! on. Without that feature nothing is compiled, so the ABI and the decoder
//! build on machines without clang.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The compiler the programs are built and verified with (Debian's package
/// of the same name).
const CLANG: &str = "clang-19";

/// Where Debian keeps the architecture-specific kernel headers (`asm/`).
const MULTIARCH_INCLUDE: &str = "/usr/include/x86_64-linux-gnu";

fn main() {
    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-changed=bpf/events.h");
    println!("cargo:rerun-if-changed=bpf/datapath.c");
    println!("cargo:rerun-if-changed=bpf/sock.c");
    println!("cargo:rerun-if-changed=bpf/proxy.c");
    println!("cargo:rerun-if-changed=bpf/lb_maps.h");
    println!("cargo:rerun-if-changed=bpf/lb_tc.c");
    println!("cargo:rerun-if-env-changed=CLANG");
    if env::var_os("CARGO_FEATURE_LOADER").is_none() {
        return;
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = env::var("CLANG").unwrap_or_else(|_| CLANG.to_string());
    compile(
        &clang,
        Path::new("bpf/datapath.c"),
        &out_dir.join("datapath.o"),
    );
}

fn compile(clang: &str, source: &Path, output: &Path) {
    let mut command = Command::new(clang);
    command
        .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
        .arg("-Ibpf")
        .arg(format!("-I{MULTIARCH_INCLUDE}"))
        .arg("-c")
        .arg(source)
        .arg("-o")
        .arg(output);
    let status = match command.status() {
        Ok(status) => status,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            panic!(
                "`{clang}` was not found; the `loader` feature compiles the eBPF programs with it. \
                 Install it with `apt-get install clang-19 libbpf-dev` (or set CLANG to another \
                 clang that targets bpf)."
            )
        }
        Err(error) => panic!("could not run `{clang}`: {error}"),
    };
    if !status.success() {
        panic!(
            "`{clang}` failed to compile {} ({status}); the headers come from \
             `apt-get install clang-19 libbpf-dev`",
            source.display()
        );
    }
}
