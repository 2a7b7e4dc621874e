//! A size-rotated file, named and pruned as lumberjack (upstream's writer) does.
//!
//! When a line would push the file past its maximum size, the file is renamed to
//! `<stem>-<UTC time as 2006-01-02T15-04-05.000><ext>` and a new one is started; lines
//! are never split across files. Rotated files are optionally gzipped (`.gz` appended)
//! and the oldest beyond the backup count are removed, both on a background thread.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use chrono::{DateTime, Duration, Utc};

/// How a [`RotatingFile`] rotates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationConfig {
    /// Size at which the file rotates, in bytes.
    pub max_size_bytes: u64,
    /// Rotated files kept; older ones are removed. 0 keeps all.
    pub max_backups: usize,
    /// Whether rotated files are gzipped.
    pub compress: bool,
}

/// The timestamp layout of rotated file names (lumberjack's, in strftime terms).
const BACKUP_TIME_FORMAT: &str = "%Y-%m-%dT%H-%M-%S%.3f";
/// Lines are gathered up to this many bytes before one `write` to the file.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Lines that did not reach the file, and why.
#[derive(Debug)]
pub struct LostLines {
    pub lines: u64,
    pub error: io::Error,
}

/// A file that rotates by size.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    config: RotationConfig,
    file: Option<File>,
    /// Bytes in the file plus bytes buffered for it.
    size: u64,
    buffer: Vec<u8>,
    buffered_lines: u64,
    mill: Option<(mpsc::Sender<PathBuf>, JoinHandle<()>)>,
}

impl RotatingFile {
    /// Prepares to write to `path`; the file is opened (appending) on the first write.
    pub fn new(path: impl Into<PathBuf>, config: RotationConfig) -> Self {
        Self {
            path: path.into(),
            config,
            file: None,
            size: 0,
            buffer: Vec::with_capacity(WRITE_BUFFER_BYTES),
            buffered_lines: 0,
            mill: None,
        }
    }

    /// The current file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `line` (which should end with a newline), rotating first if it would not
    /// fit. Lines are buffered; returns how many lines reached the file during this call.
    /// On error, the lines lost (this one included) are reported and the file is
    /// closed, so that the next write opens it again.
    pub fn write_line(&mut self, line: &[u8]) -> Result<u64, LostLines> {
        let len = line.len() as u64;
        if self.file.is_none() {
            self.open().map_err(|error| LostLines { lines: 1, error })?;
        }
        let mut flushed = 0;
        if self.size > 0 && self.size + len > self.config.max_size_bytes {
            flushed = self.flush().map_err(|mut lost| {
                lost.lines += 1;
                lost
            })?;
            if let Err(error) = self.rotate() {
                self.file = None;
                return Err(LostLines { lines: 1, error });
            }
        }
        self.buffer.extend_from_slice(line);
        self.buffered_lines += 1;
        self.size += len;
        if self.buffer.len() >= WRITE_BUFFER_BYTES {
            flushed += self.flush()?;
        }
        Ok(flushed)
    }

    /// Writes buffered lines to the file; returns how many lines that was.
    pub fn flush(&mut self) -> Result<u64, LostLines> {
        if self.buffer.is_empty() {
            return Ok(0);
        }
        let result = match self.file.as_mut() {
            Some(file) => file.write_all(&self.buffer),
            None => Err(io::Error::other("flow log file is not open")),
        };
        let lines = std::mem::take(&mut self.buffered_lines);
        let bytes = self.buffer.len() as u64;
        self.buffer.clear();
        match result {
            Ok(()) => Ok(lines),
            Err(error) => {
                self.file = None;
                self.size = self.size.saturating_sub(bytes);
                Err(LostLines { lines, error })
            }
        }
    }

    fn open(&mut self) -> io::Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }

    /// Renames the current file to a backup name and starts a new one.
    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        let backup = unique_backup_name(&self.path, Utc::now());
        match fs::rename(&self.path, &backup) {
            Ok(()) => self.send_to_mill(backup),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.open()
    }

    fn send_to_mill(&mut self, backup: PathBuf) {
        if self.mill.is_none() {
            let (tx, rx) = mpsc::channel::<PathBuf>();
            let path = self.path.clone();
            let config = self.config.clone();
            let handle = std::thread::spawn(move || {
                for backup in rx {
                    mill(&path, &config, &backup);
                }
            });
            self.mill = Some((tx, handle));
        }
        if let Some((tx, _)) = &self.mill {
            // The mill only stops when its sender is dropped, so this cannot fail.
            let _ = tx.send(backup);
        }
    }

    /// Flushes the file and waits for pending compression and cleanup.
    /// Returns how many buffered lines reached the file.
    pub fn close(&mut self) -> Result<u64, LostLines> {
        let flushed = self.flush();
        self.file = None;
        if let Some((tx, handle)) = self.mill.take() {
            drop(tx);
            let _ = handle.join();
        }
        flushed
    }
}

impl Drop for RotatingFile {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// `<dir>/<stem>-<time><ext>`, moved forward a millisecond at a time until no file
/// (plain or gzipped) has that name, so that no rotation overwrites another.
fn unique_backup_name(path: &Path, mut time: DateTime<Utc>) -> PathBuf {
    loop {
        let candidate = backup_name(path, time);
        let gz = gz_name(&candidate);
        if !candidate.exists() && !gz.exists() {
            return candidate;
        }
        time += Duration::milliseconds(1);
    }
}

fn split_name(path: &Path) -> (String, String) {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match file_name.rfind('.') {
        Some(dot) if dot > 0 => (file_name[..dot].to_owned(), file_name[dot..].to_owned()),
        _ => (file_name, String::new()),
    }
}

fn backup_name(path: &Path, time: DateTime<Utc>) -> PathBuf {
    let (stem, ext) = split_name(path);
    let name = format!("{stem}-{}{ext}", time.format(BACKUP_TIME_FORMAT));
    path.with_file_name(name)
}

fn gz_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".gz");
    PathBuf::from(name)
}

/// Compresses `backup` if asked, then removes the oldest backups beyond the limit.
fn mill(path: &Path, config: &RotationConfig, backup: &Path) {
    if config.compress {
        if let Err(e) = compress(backup) {
            tracing::error!(file = %backup.display(), error = %e, "cannot compress rotated flow log");
        }
    }
    if config.max_backups > 0 {
        let mut backups = list_backups(path);
        backups.sort();
        let excess = backups.len().saturating_sub(config.max_backups);
        for (_, old) in backups.into_iter().take(excess) {
            if let Err(e) = fs::remove_file(&old) {
                tracing::warn!(file = %old.display(), error = %e, "cannot remove old flow log");
            }
        }
    }
}

fn compress(backup: &Path) -> io::Result<()> {
    let target = gz_name(backup);
    let result = (|| {
        let mut input = File::open(backup)?;
        let output = File::create(&target)?;
        let mut encoder = flate2::write::GzEncoder::new(output, flate2::Compression::default());
        io::copy(&mut input, &mut encoder)?;
        encoder.finish()?.sync_all()
    })();
    match result {
        Ok(()) => fs::remove_file(backup),
        Err(e) => {
            let _ = fs::remove_file(&target);
            Err(e)
        }
    }
}

/// Every rotated file of `path` with the time in its name, plain or gzipped.
pub(crate) fn list_backups(path: &Path) -> Vec<(String, PathBuf)> {
    let (stem, ext) = split_name(path);
    let prefix = format!("{stem}-");
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir.to_path_buf(),
        None => PathBuf::from("."),
    };
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rest = name.strip_prefix(&prefix)?;
            let time = rest
                .strip_suffix(".gz")
                .unwrap_or(rest)
                .strip_suffix(ext.as_str())?;
            chrono::NaiveDateTime::parse_from_str(time, BACKUP_TIME_FORMAT).ok()?;
            Some((time.to_owned(), entry.path()))
        })
        .collect()
}

#[cfg(test)]
mod tests;
