//! `--control PATH`: commands from a FIFO while tracing, one a line, for
//! scripts and tests, as `perf stat --control fifo:` takes them; each
//! answered with `ok` or `error: WHY` on the `--ack` FIFO, else on stderr.
//!
//! Both FIFOs are created when missing (and then removed at the end) or
//! taken as they are. Each is opened read-write, so that a writer closing
//! its end is no end of file and an answer written before anyone reads
//! waits in the pipe rather than failing; an answer that finds the pipe
//! full (64 KiB nobody read) is dropped with a warning rather than stall
//! the tracing.

use std::{
    fs, io,
    os::unix::fs::FileTypeExt as _,
    path::{Path, PathBuf},
};

use thiserror::Error;
use tokio::{
    io::{AsyncBufReadExt as _, BufReader, Lines},
    net::unix::pipe,
};

#[derive(Debug, Error)]
pub enum ControlError {
    #[error("--{option} {path}: {reason}")]
    Fifo {
        option: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// The command FIFO and where answers go.
pub(super) struct Control {
    lines: Lines<BufReader<pipe::Receiver>>,
    ack: Option<pipe::Sender>,
    /// FIFOs this run created, removed when it ends.
    created: Vec<PathBuf>,
}

impl Control {
    /// Opens (or creates) `path` and `ack`; a usage error when either
    /// exists and is no FIFO.
    pub fn open(path: &Path, ack: Option<&Path>) -> Result<Self, ControlError> {
        let mut created = Vec::new();
        let receiver = fifo(path, "control", &mut created).and_then(|()| {
            pipe::OpenOptions::new()
                .read_write(true)
                .open_receiver(path)
                .map_err(|e| fifo_error("control", path, e.to_string()))
        });
        let receiver = match receiver {
            Ok(receiver) => receiver,
            Err(e) => {
                remove(&created);
                return Err(e);
            }
        };
        let ack = match ack {
            Some(ack_path) => {
                let sender = fifo(ack_path, "ack", &mut created).and_then(|()| {
                    pipe::OpenOptions::new()
                        .read_write(true)
                        .open_sender(ack_path)
                        .map_err(|e| fifo_error("ack", ack_path, e.to_string()))
                });
                match sender {
                    Ok(sender) => Some(sender),
                    Err(e) => {
                        remove(&created);
                        return Err(e);
                    }
                }
            }
            None => None,
        };
        Ok(Self {
            lines: BufReader::new(receiver).lines(),
            ack,
            created,
        })
    }

    /// The next command line (cancel safe); None once the FIFO fails.
    pub async fn next(&mut self) -> Option<String> {
        match self.lines.next_line().await {
            Ok(Some(line)) => Some(line),
            Ok(None) => None,
            Err(e) => {
                log::warn!("reading --control: {e}");
                None
            }
        }
    }

    /// Answers one command: `ok`, or `error: WHY`.
    pub fn answer(&mut self, result: Result<(), String>) {
        let line = match &result {
            Ok(()) => "ok\n".to_owned(),
            // One line per answer, whatever the message holds.
            Err(e) => format!("error: {}\n", e.replace('\n', " ")),
        };
        match &self.ack {
            Some(ack) => match ack.try_write(line.as_bytes()) {
                Ok(n) if n == line.len() => {}
                Ok(_) | Err(_) => log::warn!("--ack is full: an answer was dropped"),
            },
            None => {
                use std::io::Write as _;
                let _ = write!(io::stderr(), "hwbp-trace: control: {line}");
            }
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        remove(&self.created);
    }
}

fn remove(created: &[PathBuf]) {
    for path in created {
        let _ = fs::remove_file(path);
    }
}

fn fifo_error(option: &'static str, path: &Path, reason: String) -> ControlError {
    ControlError::Fifo {
        option,
        path: path.to_owned(),
        reason,
    }
}

/// Makes sure `path` is a FIFO: creates it (mode 0600) when missing.
fn fifo(path: &Path, option: &'static str, created: &mut Vec<PathBuf>) -> Result<(), ControlError> {
    match fs::metadata(path) {
        Ok(meta) if meta.file_type().is_fifo() => Ok(()),
        Ok(_) => Err(fifo_error(
            option,
            path,
            "exists and is not a FIFO: give a new path (it is created) or a FIFO (`mkfifo PATH`)"
                .into(),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
                .map_err(|_| fifo_error(option, path, "holds a NUL byte".into()))?;
            // SAFETY: a valid NUL-terminated path; mkfifo reads it only.
            if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } < 0 {
                return Err(fifo_error(
                    option,
                    path,
                    format!("cannot create the FIFO: {}", io::Error::last_os_error()),
                ));
            }
            created.push(path.to_owned());
            Ok(())
        }
        Err(e) => Err(fifo_error(option, path, e.to_string())),
    }
}
