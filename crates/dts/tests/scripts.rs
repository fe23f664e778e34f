//! The README's two commands install what a fresh machine lacks from one
//! shared list (`scripts/build-deps.sh`), before anything is built.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().and_then(Path::parent).unwrap()
}

#[test]
fn run_and_test_install_build_deps_before_building() {
    for script in ["scripts/run.sh", "scripts/test.sh"] {
        let text = std::fs::read_to_string(root().join(script)).unwrap();
        let sourced = text.find("scripts/build-deps.sh\"").unwrap_or_else(|| panic!("{script} sources build-deps.sh"));
        let ensured = text.find("\nensure_build_deps").unwrap_or_else(|| panic!("{script} calls ensure_build_deps"));
        // The first command (not comment) that runs cargo.
        let mut offset = 0;
        let mut built = None;
        for line in text.split_inclusive('\n') {
            if built.is_none() && !line.trim_start().starts_with('#') && line.contains("cargo ") {
                built = Some(offset);
            }
            offset += line.len();
        }
        let built = built.unwrap_or_else(|| panic!("{script} runs cargo"));
        assert!(sourced < ensured && ensured < built, "{script}: dependencies come before the build");
    }
}

/// On a machine without cmake (or a compiler), the function asks apt for
/// them; a fake `apt-get` records the request.
#[test]
fn a_machine_without_cmake_gets_it_installed() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = dir.path().join("apt.log");
    let fake = format!("#!/bin/bash\necho \"$@\" >> {}\n", log.display());
    std::fs::write(bin.join("apt-get"), fake).unwrap();
    std::fs::write(bin.join("sudo"), "#!/bin/bash\n\"$@\"\n").unwrap();
    std::fs::write(bin.join("id"), "#!/bin/bash\necho 1000\n").unwrap();
    for f in ["apt-get", "sudo", "id"] {
        Command::new("/bin/chmod").arg("+x").arg(bin.join(f)).status().unwrap();
    }
    let script = format!(". {}/scripts/build-deps.sh; ensure_build_deps", root().display());
    // Only the fakes on PATH: no cmake, no compiler, no cargo.
    let out = Command::new("/bin/bash").arg("-c").arg(script).env("PATH", &bin).output().unwrap();
    let asked = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(asked.lines().any(|l| l.starts_with("install") && l.contains("cmake")), "{asked}");
    assert!(asked.contains("build-essential"), "{asked}");
    assert!(!out.status.success(), "cargo is still missing afterwards");
    assert!(String::from_utf8_lossy(&out.stderr).contains("install Rust"), "{out:?}");
}
