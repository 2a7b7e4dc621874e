use std::collections::HashSet;
use std::io::Read;

use super::*;

fn read_all_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in fs::read_dir(dir).expect("readable dir").flatten() {
        let path = entry.path();
        let mut text = String::new();
        if path.extension().is_some_and(|e| e == "gz") {
            let file = File::open(&path).expect("open gz");
            flate2::read::GzDecoder::new(file)
                .read_to_string(&mut text)
                .expect("valid gzip");
        } else {
            text = fs::read_to_string(&path).expect("read file");
        }
        lines.extend(text.lines().map(str::to_owned));
    }
    lines
}

fn write_lines(config: RotationConfig, count: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut file = RotatingFile::new(dir.path().join("hubble-events.log"), config);
    for i in 0..count {
        let line = format!("{{\"n\":{i:06},\"pad\":\"{}\"}}\n", "x".repeat(40));
        file.write_line(line.as_bytes()).expect("write");
    }
    file.close().expect("close");
    dir
}

#[test]
fn rotation_keeps_every_line_exactly_once() {
    let config = RotationConfig {
        max_size_bytes: 4096,
        max_backups: 0,
        compress: false,
    };
    let dir = write_lines(config, 2000);
    let files = fs::read_dir(dir.path()).expect("dir").count();
    assert!(files > 20, "expected many rotations, got {files} files");
    let lines = read_all_lines(dir.path());
    assert_eq!(lines.len(), 2000);
    let unique: HashSet<&String> = lines.iter().collect();
    assert_eq!(unique.len(), 2000, "duplicated lines");
    for entry in fs::read_dir(dir.path()).expect("dir").flatten() {
        let size = entry.metadata().expect("metadata").len();
        assert!(size <= 4096, "{} has {size} bytes", entry.path().display());
    }
}

#[test]
fn backups_are_named_like_lumberjack_and_pruned() {
    let config = RotationConfig {
        max_size_bytes: 1024,
        max_backups: 3,
        compress: false,
    };
    let dir = write_lines(config, 200);
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names.contains(&"hubble-events.log".to_owned()));
    let pattern =
        regex::Regex::new(r"^hubble-events-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3}\.log$")
            .expect("valid regex");
    for name in names.iter().filter(|n| *n != "hubble-events.log") {
        assert!(pattern.is_match(name), "{name}");
    }
    // The newest lines survive pruning.
    let lines = read_all_lines(dir.path());
    assert!(lines.iter().any(|l| l.contains("\"n\":000199")));
}

#[test]
fn compressed_backups_hold_the_same_lines() {
    let config = RotationConfig {
        max_size_bytes: 2048,
        max_backups: 0,
        compress: true,
    };
    let dir = write_lines(config, 500);
    let gz = fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "gz"))
        .count();
    assert!(gz > 5, "expected gzipped backups, found {gz}");
    let plain_backups = fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .count();
    assert_eq!(plain_backups, 1, "only the live file stays uncompressed");
    let lines = read_all_lines(dir.path());
    assert_eq!(lines.len(), 500);
    assert_eq!(lines.iter().collect::<HashSet<_>>().len(), 500);
}

#[test]
fn a_full_disk_is_reported_not_fatal() {
    let mut file = RotatingFile::new(
        "/dev/full",
        RotationConfig {
            max_size_bytes: u64::MAX,
            max_backups: 0,
            compress: false,
        },
    );
    let mut lost = 0;
    for _ in 0..3 {
        match file.write_line(b"{}\n").and_then(|_| file.flush()) {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(
                    e.error.raw_os_error(),
                    Some(28),
                    "ENOSPC expected: {}",
                    e.error
                );
                lost += e.lines;
            }
        }
    }
    assert_eq!(lost, 3);
}
