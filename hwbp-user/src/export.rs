//! Trace files (`-o`): JSON Lines and plain text, streamed through a buffer
//! so memory stays flat however long the run. Files are created with mode
//! 0600 and never through a symbolic link: they hold kernel addresses
//! (which defeat KASLR) and hwbp runs as root.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use thiserror::Error;

use crate::trace::{Header, HitRecord, Summary, TraceLine};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line: header, hits, summary.
    Jsonl,
    /// The headless lines.
    Txt,
}

impl Format {
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "jsonl" | "ndjson" => Some(Self::Jsonl),
            "txt" | "log" => Some(Self::Txt),
            _ => None,
        }
    }
}

#[derive(Debug, Error)]
pub enum ExportError {
    #[error(
        "cannot tell the format of `{}` from its extension: use .jsonl or .txt, or give --format",
        .0.display()
    )]
    UnknownFormat(PathBuf),
    #[error("`{}` is a symbolic link: hwbp runs as root and does not write through links; give the real path", .0.display())]
    Symlink(PathBuf),
    #[error("cannot create `{}`: {source}{hint}", .path.display(), hint = create_hint(.source))]
    Create { path: PathBuf, source: io::Error },
}

fn create_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::NotFound => " (does its directory exist?)",
        io::ErrorKind::PermissionDenied => " (permission denied)",
        _ => "",
    }
}

/// One open trace file.
pub struct Export {
    pub path: PathBuf,
    format: Format,
    out: BufWriter<File>,
    /// First write error; after it the file is left alone.
    failed: Option<io::Error>,
}

impl Export {
    pub fn create(path: &Path, format: Option<Format>) -> Result<Self, ExportError> {
        let format = format
            .or_else(|| Format::from_path(path))
            .ok_or_else(|| ExportError::UnknownFormat(path.to_owned()))?;
        if path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(ExportError::Symlink(path.to_owned()));
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|source| match source.raw_os_error() {
                Some(libc::ELOOP) => ExportError::Symlink(path.to_owned()),
                _ => ExportError::Create {
                    path: path.to_owned(),
                    source,
                },
            })?;
        Ok(Self {
            path: path.to_owned(),
            format,
            out: BufWriter::with_capacity(1 << 16, file),
            failed: None,
        })
    }

    fn write_line(&mut self, line: &str) {
        if self.failed.is_some() {
            return;
        }
        if let Err(e) = self.out.write_all(line.as_bytes()).and_then(|()| self.out.write_all(b"\n")) {
            self.failed = Some(e);
        }
    }

    fn write_json(&mut self, line: &TraceLine) {
        match serde_json::to_string(line) {
            Ok(text) => self.write_line(&text),
            Err(e) => self.failed = Some(io::Error::other(e)),
        }
    }

    pub fn header(&mut self, header: &Header) {
        if self.format == Format::Jsonl {
            self.write_json(&TraceLine::Header(header.clone()));
        }
    }

    pub fn hit(&mut self, hit: &HitRecord) {
        match self.format {
            Format::Jsonl => {
                if self.failed.is_some() {
                    return;
                }
                // Serialize without cloning the record.
                #[derive(serde::Serialize)]
                struct Tagged<'a> {
                    #[serde(rename = "type")]
                    ty: &'static str,
                    #[serde(flatten)]
                    hit: &'a HitRecord,
                }
                match serde_json::to_string(&Tagged { ty: "hit", hit }) {
                    Ok(text) => self.write_line(&text),
                    Err(e) => self.failed = Some(io::Error::other(e)),
                }
            }
            Format::Txt => self.write_line(&hit.line()),
        }
    }

    /// Writes the summary and flushes; returns the first error the file had.
    pub fn finish(&mut self, summary: &Summary) -> Result<(), io::Error> {
        match self.format {
            Format::Jsonl => self.write_json(&TraceLine::Summary(summary.clone())),
            Format::Txt => {}
        }
        if self.failed.is_none()
            && let Err(e) = self.out.flush()
        {
            self.failed = Some(e);
        }
        match self.failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The error that stopped writing, if any (checked while tracing).
    pub fn error(&self) -> Option<&io::Error> {
        self.failed.as_ref()
    }
}
