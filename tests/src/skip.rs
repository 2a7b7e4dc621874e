//! Tests that cannot run here (not root, a package missing) skip with a `SKIP:` line,
//! except under CI (`CI=true`), where they fail naming what is missing: CI runs as root
//! with every package of scripts/setup.sh, so a skip there would hide a broken set-up.
//! Every crate's tests use this one helper (a dev-dependency on `tests`).

/// True when the environment says it is CI (`CI=true` or `CI=1`, as CI services set it).
pub fn in_ci() -> bool {
    matches!(
        std::env::var("CI")
            .map(|v| v.to_ascii_lowercase())
            .as_deref(),
        Ok("true" | "1")
    )
}

/// Reports that `test` cannot run because of `missing` (say what to install): prints
/// `SKIP: <test>: <missing>` and returns, so the caller returns next; under CI it panics
/// instead, failing the test with the same text.
#[track_caller]
pub fn skip(test: &str, missing: &str) {
    if in_ci() {
        panic!("{test} cannot run under CI=true: {missing}");
    }
    println!("SKIP: {test}: {missing}");
}

/// True when the effective user is root.
pub fn is_root() -> bool {
    // Reading /proc avoids unsafe code: the effective uid is the second field of Uid.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2))
                .and_then(|v| v.parse::<u32>().ok())
        })
        == Some(0)
}

/// Whether `test` can run as root; [`skip`]s it otherwise (`why` says what needs root).
#[track_caller]
pub fn require_root(test: &str, why: &str) -> bool {
    if is_root() {
        return true;
    }
    skip(test, &format!("needs root ({why})"));
    false
}

/// Whether `path` exists; [`skip`]s `test` otherwise, naming the path and `package`.
#[track_caller]
pub fn require_file(test: &str, path: &str, package: &str) -> bool {
    if std::path::Path::new(path).exists() {
        return true;
    }
    skip(
        test,
        &format!("{path} not found (apt-get install {package})"),
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_present_file_needs_no_skip() {
        assert!(require_file("self", "/proc/self/status", "procps"));
    }

    #[test]
    fn missing_things_skip_outside_ci_and_fail_inside() {
        let result =
            std::panic::catch_unwind(|| require_file("self", "/nonexistent/tool", "some-package"));
        if in_ci() {
            let message = result.expect_err("fails under CI");
            let text = message
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default();
            assert!(text.contains("/nonexistent/tool"), "{text}");
            assert!(text.contains("apt-get install some-package"), "{text}");
        } else {
            assert_eq!(result.ok(), Some(false));
        }
    }
}
