//! The arm64 guest's /out on its console: init.sh sends the files between
//! marker lines on the only serial port, and this takes those lines off
//! the screen into the transfer file that receive_files decodes.

use std::{fs, io::Write as _, path::PathBuf};

/// Takes init.sh's transfer of /out off the console (see read_console in vm/mod.rs):
/// the bytes of a line are held while they could start a marker line, then
/// shown, or, between the markers, written to the transfer file.
pub(super) struct InBand {
    file: Option<fs::File>,
    path: PathBuf,
    /// The current line's bytes not yet shown or written.
    held: Vec<u8>,
    /// Whether the line being read started before a marker was seen.
    inside: bool,
}

const MARKER: &[u8] = b"hwbp-out-";

impl InBand {
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            file: None,
            path,
            held: Vec::new(),
            inside: false,
        }
    }

    /// Takes one console byte; returns the bytes to show now.
    pub(super) fn byte(&mut self, byte: u8) -> Vec<u8> {
        self.held.push(byte);
        let text = self.held.trim_ascii_start();
        let may_be_marker = MARKER.starts_with(&text[..text.len().min(MARKER.len())]);
        let kernel = text.first() == Some(&b'[');
        if !self.inside && !may_be_marker || self.inside && kernel {
            if byte == b'\n' || !self.inside {
                return std::mem::take(&mut self.held);
            }
            return Vec::new();
        }
        if byte != b'\n' {
            return Vec::new();
        }
        // A whole line of the transfer (or a marker): to the file.
        let line = std::mem::take(&mut self.held);
        let is_marker = line.trim_ascii_start().starts_with(MARKER);
        if !self.inside && !is_marker {
            // A blank line, or one of blanks: nothing of the transfer.
            return line;
        }
        if is_marker {
            self.inside = !line.trim_ascii().ends_with(b"hwbp-out-done");
        }
        if self.file.is_none() {
            self.file = fs::File::create(&self.path).ok();
        }
        if let Some(file) = self.file.as_mut() {
            let _ = file.write_all(&line);
        }
        Vec::new()
    }
}
