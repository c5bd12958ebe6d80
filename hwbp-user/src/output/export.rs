//! Trace files (`-o`): JSON Lines, plain text, collapsed stacks for flame
//! graphs and Chrome trace-event JSON for Perfetto. JSONL, text and Perfetto
//! are streamed through a buffer so memory stays flat however long the run;
//! collapsed stacks are aggregated (one line per distinct stack) and written
//! at the end. Files are created with mode 0600 and never through a
//! symbolic link: they hold kernel addresses (which defeat KASLR) and hwbp
//! runs as root.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs::{File, OpenOptions},
    io,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use serde_json::json;
use thiserror::Error;

use crate::{
    output::writer::{Writer as FileWriter, Written},
    record::format::frame_functions,
    record::format::{AggregateRecord, ChangeRecord, Header, HitRecord, Stack, Summary, TraceLine},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line: header, hits, summary.
    Jsonl,
    /// The headless lines.
    Txt,
    /// Collapsed stacks (`target;root;…;leaf COUNT`) for flamegraph.pl and inferno.
    Folded,
    /// Chrome trace-event JSON for ui.perfetto.dev and chrome://tracing.
    Perfetto,
}

impl Format {
    pub fn from_path(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?;
        if name.ends_with(".perfetto.json") || name.ends_with(".trace.json") {
            return Some(Self::Perfetto);
        }
        match path.extension()?.to_str()? {
            "jsonl" | "ndjson" => Some(Self::Jsonl),
            "txt" | "log" => Some(Self::Txt),
            "folded" | "collapsed" => Some(Self::Folded),
            _ => None,
        }
    }
}

#[derive(Debug, Error)]
pub enum ExportError {
    #[error(
        "cannot tell the format of `{}` from its extension: use .jsonl, .txt, .folded or .perfetto.json, or give --format",
        .0.display()
    )]
    UnknownFormat(PathBuf),
    #[error("`{}` is a symbolic link: hwbp runs as root and does not write through links; give the real path", .0.display())]
    Symlink(PathBuf),
    // `error`, not `source`: the cause is in the message, not repeated by
    // anyhow's chain.
    #[error(
        "`{}` is a FIFO with no reader: start its reader first (e.g. `cat {} &`), then hwbp-trace",
        .0.display(), .0.display()
    )]
    FifoWithoutReader(PathBuf),
    #[error("cannot create `{}`: {error}{hint}", .path.display(), hint = create_hint(.error))]
    Create { path: PathBuf, error: io::Error },
}

fn create_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::NotFound => " (does its directory exist?)",
        io::ErrorKind::PermissionDenied => " (permission denied)",
        _ => "",
    }
}

/// Creates `path` for writing: mode 0600, truncated, never through a link.
///
/// Opened with O_NONBLOCK, which a regular file ignores: a FIFO with no
/// reader would otherwise block open() for good, with the command stopped
/// at its entry point and Ctrl-C unheard; without a reader it fails (ENXIO)
/// and says so. The flag stays: a reader that stops reading makes writes
/// wait at most [`crate::output::writer::STALL`], never for good.
pub fn create_file(path: &Path) -> Result<File, ExportError> {
    if path
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        return Err(ExportError::Symlink(path.to_owned()));
    }
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|error| match error.raw_os_error() {
            Some(libc::ELOOP) => ExportError::Symlink(path.to_owned()),
            Some(libc::ENXIO) => ExportError::FifoWithoutReader(path.to_owned()),
            _ => ExportError::Create {
                path: path.to_owned(),
                error,
            },
        })
}

/// Collapsed stacks, aggregated: one count per distinct stack. From the
/// records as they come, until the kernel's exact counts arrive at the end
/// (see [`Folded::add_aggregate`]): those replace them.
#[derive(Debug, Default)]
pub struct Folded {
    counts: HashMap<String, u64>,
    /// From the kernel's aggregates, once there are any.
    kernel: Option<HashMap<String, u64>>,
}

impl Folded {
    pub fn add(&mut self, hit: &HitRecord) {
        *self.counts.entry(folded_stack(hit)).or_default() += 1;
    }

    /// Counts the hits of one of the kernel's aggregates: every hit,
    /// recorded or not.
    pub fn add_aggregate(&mut self, agg: &AggregateRecord) {
        let stack = folded_aggregate(agg);
        *self
            .kernel
            .get_or_insert_default()
            .entry(stack)
            .or_default() += agg.count;
    }

    /// Forgets the kernel's counts, for aggregates that may be cut short
    /// (a trace without its summary line): the records' counts again.
    pub fn forget_aggregates(&mut self) {
        self.kernel = None;
    }

    /// `stack count` lines, sorted by stack (stable output).
    pub fn lines(&self) -> Vec<String> {
        let counts = self.kernel.as_ref().unwrap_or(&self.counts);
        let sorted: BTreeMap<&String, &u64> = counts.iter().collect();
        sorted
            .into_iter()
            .map(|(stack, n)| format!("{stack} {n}"))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.kernel.as_ref().unwrap_or(&self.counts).is_empty()
    }
}

/// A frame name as a folded-stack element: `;` separates frames and the
/// last space separates the count, so neither may be ambiguous, and a
/// newline would split the line (control characters are escaped).
fn folded_frame(name: &str) -> String {
    crate::printable::printable(name).replace(';', ":")
}

/// `target;root;…;leaf`: the target first (so several share a file), then
/// user frames from the root, then kernel frames down to the hit; inlined
/// calls become frames of their own.
pub fn folded_stack(hit: &HitRecord) -> String {
    folded(&hit.target, &hit.kstack, &hit.ustack, &hit.ip_sym)
}

/// [`folded_stack`] of an aggregate's hits: the same text as for each of
/// those hits, as they share its target and stacks.
pub fn folded_aggregate(agg: &AggregateRecord) -> String {
    folded(&agg.target, &agg.kstack, &agg.ustack, &agg.ip_sym)
}

/// [`folded_stack`] of target `target`'s stacks; the instruction `ip_sym`
/// alone when there are none.
fn folded(target: &str, kstack: &Stack, ustack: &Stack, ip_sym: &str) -> String {
    let mut frames = vec![folded_frame(target)];
    let mut push = |frame: &str| {
        for f in frame_functions(frame) {
            frames.push(folded_frame(f));
        }
    };
    for f in ustack.iter().rev() {
        push(f);
    }
    for f in kstack.iter().rev() {
        push(f);
    }
    if ustack.is_empty() && kstack.is_empty() {
        push(ip_sym);
    }
    frames.join(";")
}

/// Chrome trace-event JSON, written as hits come: an instant event per hit
/// on its thread's track, a hit counter per target and, for data targets,
/// the value as a counter track (the variable plotted over time).
#[derive(Debug, Default)]
struct Perfetto {
    start_ns: u64,
    /// Threads and processes already named (bounded).
    named_pids: HashSet<u32>,
    named_tids: HashSet<u32>,
    /// Hits so far per target, for the counter tracks.
    hits: HashMap<Arc<str>, u64>,
    first: bool,
}

/// Processes and threads named in a Perfetto file before names are dropped.
const PERFETTO_NAMES_LIMIT: usize = 1 << 16;
/// The pseudo-process that holds the counter tracks: a pid no task can
/// have, as pids stay below pid_max, at most PID_MAX_LIMIT = 4194304
/// (include/linux/threads.h). 0 would merge the counters into the track of
/// the idle task (swapper/N), which hits kernel targets from interrupts.
const PERFETTO_COUNTER_PID: u32 = 4_194_304 + 1;

impl Perfetto {
    fn micros(&self, ts_ns: u64) -> f64 {
        ts_ns.saturating_sub(self.start_ns) as f64 / 1000.0
    }

    /// The events of one hit: names of new processes and threads, the
    /// instant event, and the target's counter.
    fn events(&mut self, hit: &HitRecord) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        if self.named_pids.len() < PERFETTO_NAMES_LIMIT && self.named_pids.insert(hit.pid) {
            out.push(
                json!({"name": "process_name", "ph": "M", "pid": hit.pid, "tid": hit.pid,
                "args": {"name": format!("{} ({})", hit.comm, hit.pid)}}),
            );
        }
        if self.named_tids.len() < PERFETTO_NAMES_LIMIT && self.named_tids.insert(hit.tid) {
            out.push(
                json!({"name": "thread_name", "ph": "M", "pid": hit.pid, "tid": hit.tid,
                "args": {"name": format!("{}-{}", hit.comm, hit.tid)}}),
            );
        }
        let ts = self.micros(hit.ts_ns);
        let mut args = serde_json::Map::new();
        args.insert("target".into(), json!(hit.target));
        args.insert("ip_sym".into(), json!(hit.ip_sym));
        args.insert("cpu".into(), json!(hit.cpu));
        if let Some(v) = hit.value {
            args.insert(
                "value".into(),
                json!(hit.value_text.clone().unwrap_or_else(|| format!("{v:#x}"))),
            );
        }
        if let Some(old) = hit.old_value {
            args.insert(
                "old_value".into(),
                json!(
                    hit.old_value_text
                        .clone()
                        .unwrap_or_else(|| format!("{old:#x}"))
                ),
            );
        }
        if let Some(call_args) = &hit.args {
            let text: Vec<String> = call_args
                .iter()
                .map(|a| format!("{}={}", a.name, a.shown()))
                .collect();
            args.insert("args".into(), json!(text.join(", ")));
        }
        out.push(
            json!({"name": hit.target, "cat": "hwbp", "ph": "i", "s": "t", "ts": ts,
            "pid": hit.pid, "tid": hit.tid, "args": args}),
        );
        let n = self.hits.entry(hit.target.clone()).or_default();
        *n += 1;
        out.push(
            json!({"name": format!("hits {}", hit.target), "ph": "C", "ts": ts,
            "pid": PERFETTO_COUNTER_PID, "args": {"hits": *n}}),
        );
        // A data target's value over time, as decoded (`-1` plots below 0).
        if let Some(v) = hit.value {
            let plotted = match hit.value_text.as_deref().map(str::parse::<i64>) {
                Some(Ok(signed)) => json!(signed),
                _ => json!(v),
            };
            out.push(
                json!({"name": format!("value {}", hit.target), "ph": "C", "ts": ts,
                "pid": PERFETTO_COUNTER_PID, "args": {"value": plotted}}),
            );
        }
        out
    }
}

enum Writer {
    Stream,
    Folded(Folded),
    Perfetto(Box<Perfetto>),
}

/// Where an export's chunks go.
enum Sink {
    /// While tracing: a thread of its own writes them (crate::output::writer).
    Thread(FileWriter),
    /// The closing records, written after that thread has ended.
    Direct(File),
    /// After a failure to get the file back from its thread.
    Closed,
}

/// One open trace file.
pub struct Export {
    pub path: PathBuf,
    format: Format,
    writer: Writer,
    sink: Sink,
    /// Whole records not yet written: the file only ever receives complete
    /// lines (or Perfetto events), so it can be cut back to a valid prefix.
    buf: Vec<u8>,
    /// Bytes in the file, all of them complete records.
    committed: u64,
    /// First write error (a full disk); after it nothing more is written
    /// but the closing record (summary), if the disk takes it.
    failed: Option<io::Error>,
}

/// Records are gathered up to this many bytes before a write: each chunk
/// may wake the writing thread, and a hit with both stacks is about 3 KB,
/// so smaller chunks cost the reader a wakeup every few dozen hits
/// (BENCHMARKS.md, the replay's profile).
const WRITE_CHUNK: usize = 1 << 18;
/// Room past [`WRITE_CHUNK`] for the record that crosses it.
const RECORD_ROOM: usize = 1 << 16;

impl Export {
    pub fn create(path: &Path, format: Option<Format>) -> Result<Self, ExportError> {
        let format = format
            .or_else(|| Format::from_path(path))
            .ok_or_else(|| ExportError::UnknownFormat(path.to_owned()))?;
        let file = create_file(path)?;
        let sink = FileWriter::new(file, "hwbp-write").map_err(|error| ExportError::Create {
            path: path.to_owned(),
            error,
        })?;
        let writer = match format {
            Format::Jsonl | Format::Txt => Writer::Stream,
            Format::Folded => Writer::Folded(Folded::default()),
            Format::Perfetto => Writer::Perfetto(Box::new(Perfetto {
                first: true,
                ..Default::default()
            })),
        };
        let mut export = Self {
            path: path.to_owned(),
            format,
            writer,
            sink: Sink::Thread(sink),
            buf: Vec::with_capacity(WRITE_CHUNK + RECORD_ROOM),
            committed: 0,
            failed: None,
        };
        if format == Format::Perfetto {
            export.write_raw("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[");
        }
        Ok(export)
    }

    pub fn format(&self) -> Format {
        self.format
    }

    fn write_raw(&mut self, text: &str) {
        if self.error().is_none() {
            self.buf.extend_from_slice(text.as_bytes());
        }
    }

    /// Called at record boundaries only.
    fn end_record(&mut self) {
        if self.buf.len() >= WRITE_CHUNK {
            self.flush_buf();
        }
    }

    fn flush_buf(&mut self) {
        if self.error().is_some() || self.buf.is_empty() {
            self.buf.clear();
            return;
        }
        match &mut self.sink {
            Sink::Thread(writer) => {
                let chunk = std::mem::take(&mut self.buf);
                self.buf = writer.send(chunk);
            }
            Sink::Direct(file) => {
                if let Err(e) = crate::output::writer::append(file, &self.buf, &mut self.committed)
                {
                    self.failed = Some(e);
                }
                self.buf.clear();
            }
            Sink::Closed => self.buf.clear(),
        }
    }

    fn write_line(&mut self, line: &str) {
        self.write_raw(line);
        self.write_raw("\n");
        self.end_record();
    }

    fn write_json(&mut self, line: &TraceLine) {
        match serde_json::to_string(line) {
            Ok(text) => self.write_line(&text),
            Err(e) => self.failed = Some(io::Error::other(e)),
        }
    }

    fn write_events(&mut self, events: Vec<serde_json::Value>) {
        for event in events {
            let first = match &mut self.writer {
                Writer::Perfetto(p) => std::mem::replace(&mut p.first, false),
                _ => false,
            };
            self.write_raw(if first { "\n" } else { ",\n" });
            match serde_json::to_string(&event) {
                Ok(text) => self.write_raw(&text),
                Err(e) => self.failed = Some(io::Error::other(e)),
            }
            self.end_record();
        }
    }

    pub fn header(&mut self, header: &Header) {
        self.header_records(header);
        // The header is written at once, in a chunk of its own: a file cut
        // short by a full disk still says what it is.
        self.flush_buf();
    }

    fn header_records(&mut self, header: &Header) {
        match &mut self.writer {
            Writer::Stream if self.format == Format::Jsonl => {
                self.write_json(&TraceLine::Header(header.clone()))
            }
            Writer::Perfetto(p) => {
                p.start_ns = header.start_monotonic_ns;
                let mut events = vec![
                    json!({"name": "process_name", "ph": "M", "pid": PERFETTO_COUNTER_PID,
                    "tid": PERFETTO_COUNTER_PID, "args": {"name": "hwbp targets"}}),
                ];
                events.extend(header.targets.iter().map(|t| {
                    json!({"name": "hits ".to_owned() + &t.target, "ph": "C", "ts": 0.0,
                        "pid": PERFETTO_COUNTER_PID, "args": {"hits": 0}})
                }));
                self.write_events(events);
            }
            _ => {}
        }
    }

    /// A change of the targets while tracing: a `change` line in JSONL, a
    /// `# change` line in text; the other formats show it through the
    /// names and addresses of the hits that follow.
    pub fn change(&mut self, change: &ChangeRecord) {
        if self.error().is_some() {
            return;
        }
        match (&self.writer, self.format) {
            (Writer::Stream, Format::Jsonl) => {
                self.write_json(&TraceLine::Change(change.clone()));
            }
            (Writer::Stream, _) => {
                let what = |t: &Option<crate::record::format::TargetInfo>| {
                    t.as_ref().map_or("-".to_owned(), |t| {
                        format!("{} ({} {}/{})", t.target, t.addr, t.mode, t.len)
                    })
                };
                let line = format!(
                    "# change {} #{}: {} -> {}",
                    change.action,
                    change.id,
                    what(&change.from),
                    what(&change.to)
                );
                self.write_line(&crate::printable::printable(&line));
            }
            _ => {}
        }
    }

    /// Forgets the aggregates a folded export took (see
    /// [`Folded::forget_aggregates`]); nothing for the other formats.
    pub fn forget_aggregates(&mut self) {
        if let Writer::Folded(folded) = &mut self.writer {
            folded.forget_aggregates();
        }
    }

    /// One of the kernel's aggregates, at the end of the run: a line of
    /// its own in JSONL, the counts of the collapsed stacks.
    pub fn aggregate(&mut self, agg: &AggregateRecord) {
        if self.error().is_some() {
            return;
        }
        match &mut self.writer {
            Writer::Stream if self.format == Format::Jsonl => {
                self.write_json(&TraceLine::Aggregate(agg.clone()));
            }
            Writer::Folded(folded) => folded.add_aggregate(agg),
            Writer::Stream | Writer::Perfetto(_) => {}
        }
    }

    pub fn hit(&mut self, hit: &HitRecord) {
        if self.error().is_some() {
            return;
        }
        match &mut self.writer {
            Writer::Stream => match self.format {
                Format::Jsonl => {
                    // Straight into the chunk, without a String per hit.
                    crate::record::jsonl::write_hit(&mut self.buf, hit);
                    self.buf.push(b'\n');
                    self.end_record();
                }
                _ => self.write_line(&hit.line()),
            },
            Writer::Folded(folded) => folded.add(hit),
            Writer::Perfetto(p) => {
                let events = p.events(hit);
                self.write_events(events);
            }
        }
    }

    /// Writes the closing records (summary, folded lines, the end of the
    /// Perfetto array) and flushes; returns the first error the file had.
    /// After a write error (disk full) the file holds only whole records and
    /// the closing record is still attempted, marked `trace_truncated`, so
    /// that a reader gets a valid file that says it is incomplete.
    pub fn finish(&mut self, summary: &Summary) -> Result<(), io::Error> {
        // The hits' chunks first, then the closing records here, once the
        // thread has said whether every chunk went in.
        self.flush_buf();
        if let Sink::Thread(writer) = std::mem::replace(&mut self.sink, Sink::Closed) {
            let Written {
                file,
                committed,
                error,
            } = writer.finish()?;
            self.sink = Sink::Direct(file);
            self.committed = committed;
            if self.failed.is_none() {
                self.failed = error;
            }
        }
        let failed = self.failed.take();
        let truncated = failed.is_some();
        if truncated {
            // Hits gathered after the failure are not written.
            self.buf.clear();
        }
        match &self.writer {
            Writer::Stream if self.format == Format::Jsonl => {
                let mut summary = summary.clone();
                summary.trace_truncated = truncated;
                self.write_json(&TraceLine::Summary(summary));
            }
            Writer::Stream => {}
            Writer::Folded(folded) => {
                let lines = folded.lines();
                for line in lines {
                    self.write_raw(&line);
                    self.write_raw("\n");
                }
            }
            Writer::Perfetto(_) => self.write_raw("\n]}\n"),
        }
        self.flush_buf();
        if let Some(e) = self.failed.take().or(failed) {
            return Err(e);
        }
        Ok(())
    }

    /// The error that stopped writing, if any (checked while tracing).
    pub fn error(&self) -> Option<&io::Error> {
        self.failed.as_ref().or(match &self.sink {
            Sink::Thread(writer) => writer.error(),
            Sink::Direct(_) | Sink::Closed => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_without_reader_is_refused_at_once_and_one_with_a_reader_opens() {
        use std::{ffi::CString, os::unix::ffi::OsStrExt as _};
        let dir = std::env::temp_dir().join(format!("hwbp-fifo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let fifo = dir.join("t.jsonl");
        let c_path = CString::new(fifo.as_os_str().as_bytes()).expect("no NUL in a temp path");
        // SAFETY: mkfifo reads a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);

        // Would block for good without O_NONBLOCK.
        let err = create_file(&fifo).expect_err("no reader");
        assert!(matches!(err, ExportError::FifoWithoutReader(_)), "{err}");
        assert!(err.to_string().contains("start its reader first"), "{err}");

        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .expect("a reader");
        let file = create_file(&fifo).expect("a reader is there");
        drop((reader, file));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn formats_from_names() {
        let f = |p: &str| Format::from_path(Path::new(p));
        assert_eq!(f("t.jsonl"), Some(Format::Jsonl));
        assert_eq!(f("t.txt"), Some(Format::Txt));
        assert_eq!(f("t.folded"), Some(Format::Folded));
        assert_eq!(f("t.perfetto.json"), Some(Format::Perfetto));
        assert_eq!(f("t.json"), None);
    }

    #[test]
    fn folded_joins_user_and_kernel_root_first() {
        let hit = HitRecord {
            target: "vfs_read".into(),
            ip_sym: "vfs_read+0x0".into(),
            kstack: vec![
                "vfs_read+0x0".into(),
                "ksys_read+0x6e".into(),
                "do_syscall_64+0x5d".into(),
            ]
            .into(),
            ustack: vec![
                "read+0x12 (read.c:26)".into(),
                "main+0x40 (src/main.rs:7) inlined a;b (src/lib.rs:3)".into(),
            ]
            .into(),
            ..Default::default()
        };
        assert_eq!(
            folded_stack(&hit),
            "vfs_read;main;a:b;read;do_syscall_64;ksys_read;vfs_read"
        );
        let bare = HitRecord {
            target: "c".into(),
            ip_sym: "bump+0x1f".into(),
            ..Default::default()
        };
        assert_eq!(folded_stack(&bare), "c;bump");
    }

    /// A hit of the idle task (pid 0, as in interrupts on an idle CPU)
    /// stays apart from the counter tracks.
    #[test]
    fn perfetto_counters_apart_from_swapper() {
        let dir =
            std::env::temp_dir().join(format!("hwbp-perfetto-swapper-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("t.perfetto.json");
        let mut export = Export::create(&path, None).expect("create");
        export.header(&Header {
            format_version: crate::record::format::FORMAT_VERSION,
            tool: String::new(),
            kernel_release: String::new(),
            hostname: String::new(),
            start_unix_s: 0.0,
            start_monotonic_ns: 1000,
            command_line: Vec::new(),
            targets: vec![crate::record::format::TargetInfo {
                target: "jiffies:w".into(),
                symbol: "jiffies".into(),
                addr: "0xffffffff82a05000".into(),
                mode: "w".into(),
                len: 8,
                space: "kernel".into(),
            }],
        });
        export.hit(&HitRecord {
            ts_ns: 3000,
            comm: "swapper/0".into(),
            target: "jiffies:w".into(),
            value: Some(7),
            ..Default::default()
        });
        export.finish(&Summary::default()).expect("finish");
        let text = std::fs::read_to_string(&path).expect("read");
        let _ = std::fs::remove_dir_all(&dir);
        let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let events = json["traceEvents"].as_array().expect("traceEvents");
        let pids_of = |ph: &str| -> Vec<u64> {
            events
                .iter()
                .filter(|e| e["ph"] == ph)
                .filter_map(|e| e["pid"].as_u64())
                .collect()
        };
        let counter = u64::from(PERFETTO_COUNTER_PID);
        // hits at 0 (header) and 1, the value 7: all on the counter process.
        assert_eq!(pids_of("C"), [counter, counter, counter]);
        assert_eq!(pids_of("i"), [0]);
        let names: Vec<(u64, &str)> = events
            .iter()
            .filter(|e| e["name"] == "process_name")
            .filter_map(|e| Some((e["pid"].as_u64()?, e["args"]["name"].as_str()?)))
            .collect();
        assert_eq!(names, [(counter, "hwbp targets"), (0, "swapper/0 (0)")]);
    }
}
