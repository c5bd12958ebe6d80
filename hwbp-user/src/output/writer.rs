//! Writing a trace file on a thread of its own.
//!
//! The collector must keep up with the ring buffer: a hit it has not taken
//! out when the buffer is full is lost. With every CPU hitting a target, half
//! of the collector's time went into write(2) on ext4 (page-cache folios,
//! delayed-allocation bookkeeping, and at close the flush ext4 does for a
//! file that was truncated). A [`Writer`] takes that off the collector: the
//! collector hands over whole chunks of records and goes on, a thread writes
//! them. The queue is bounded ([`QUEUED_CHUNKS`]), so a disk slower than the
//! hits makes the collector wait (and the ring buffer count drops) instead of
//! memory growing.
//!
//! The file only ever receives whole chunks, and chunks hold whole records:
//! after a write error (a full disk) the file is cut back to the last whole
//! chunk written, so it stays a valid prefix, and nothing more is written.

use std::{
    fs::File,
    io::{self, Seek as _, Write as _},
    sync::{
        Arc, OnceLock,
        mpsc::{self, Receiver, SyncSender},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

/// Chunks that may wait for the writing thread: with the export's 256 KiB
/// chunks, at most 1 MiB per file in flight.
pub const QUEUED_CHUNKS: usize = 4;

/// A file being written by a thread of its own.
pub struct Writer {
    chunks: Option<SyncSender<Vec<u8>>>,
    /// Written chunks come back to be filled again.
    spare: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<Written>>,
    /// The first write error, set by the thread.
    failed: Arc<OnceLock<io::Error>>,
}

/// The file back from the thread, and how far it holds whole chunks.
pub struct Written {
    pub file: File,
    /// Bytes in the file, all of them whole chunks.
    pub committed: u64,
    /// The write error that stopped writing, if one did.
    pub error: Option<io::Error>,
}

impl Writer {
    /// Starts the thread that writes `file`; `name` names the thread.
    pub fn new(file: File, name: &str) -> io::Result<Self> {
        let (chunks, queue) = mpsc::sync_channel::<Vec<u8>>(QUEUED_CHUNKS);
        let (give_back, spare) = mpsc::sync_channel(QUEUED_CHUNKS);
        let failed = Arc::new(OnceLock::new());
        let thread = thread::Builder::new().name(name.to_owned()).spawn({
            let failed = Arc::clone(&failed);
            move || write_chunks(file, &queue, &give_back, &failed)
        })?;
        Ok(Self {
            chunks: Some(chunks),
            spare,
            thread: Some(thread),
            failed,
        })
    }

    /// Queues `chunk` (whole records) for writing and returns an empty
    /// buffer to fill next. Waits while [`QUEUED_CHUNKS`] chunks are queued.
    pub fn send(&mut self, chunk: Vec<u8>) -> Vec<u8> {
        let capacity = chunk.capacity();
        if let Some(chunks) = &self.chunks {
            // The thread only ends when `chunks` is dropped, so a send can
            // fail only if it panicked; `finish` reports that.
            let _ = chunks.send(chunk);
        }
        self.spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(capacity))
    }

    /// The error that stopped writing, once the thread has met one.
    pub fn error(&self) -> Option<&io::Error> {
        self.failed.get()
    }

    /// Writes what is queued, ends the thread and gives the file back.
    pub fn finish(mut self) -> io::Result<Written> {
        self.end()
    }

    fn end(&mut self) -> io::Result<Written> {
        self.chunks = None;
        let thread = self
            .thread
            .take()
            .ok_or_else(|| io::Error::other("the trace writer has already ended"))?;
        thread
            .join()
            .map_err(|_| io::Error::other("the thread writing the trace file panicked"))
    }
}

impl Drop for Writer {
    /// Whatever was queued is still written (and the thread not left behind)
    /// when an export is dropped without `finish`, on an error path.
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.end();
        }
    }
}

/// How long a write may find no room in a FIFO or pipe before its reader
/// is taken for gone. Meanwhile the collector may be waiting for this
/// file (the queue is bounded), so the ring buffer drops hits and Ctrl-C
/// is not heard: past this, the file is given up and tracing goes on.
pub const STALL: Duration = Duration::from_secs(5);

/// Writes the whole `chunk` at the end of `file`, which holds `committed`
/// bytes of whole chunks; on an error, cuts a partly written chunk back so
/// that the file still ends with a whole one.
pub fn append(file: &mut File, chunk: &[u8], committed: &mut u64) -> io::Result<()> {
    append_within(file, chunk, committed, STALL)
}

fn append_within(
    file: &mut File,
    chunk: &[u8],
    committed: &mut u64,
    stall: Duration,
) -> io::Result<()> {
    match write_all_within(file, chunk, stall) {
        Ok(()) => {
            *committed += chunk.len() as u64;
            Ok(())
        }
        Err(e) => {
            let _ = file.set_len(*committed);
            let _ = file.seek(io::SeekFrom::Start(*committed));
            Err(e)
        }
    }
}

/// write_all for a descriptor that may be non-blocking (trace files are
/// opened with O_NONBLOCK, which a FIFO or pipe keeps): where there is no
/// room, waits for some at most `stall`.
fn write_all_within(file: &mut File, mut rest: &[u8], stall: Duration) -> io::Result<()> {
    while !rest.is_empty() {
        match file.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_writable(file, stall)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn wait_writable(file: &File, stall: Duration) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let mut poll = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let timeout = i32::try_from(stall.as_millis()).unwrap_or(i32::MAX);
    loop {
        // SAFETY: one pollfd, valid for the call; the descriptor is `file`'s.
        match unsafe { libc::poll(&mut poll, 1, timeout) } {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "its reader took nothing for {} s (a FIFO or pipe nobody reads)",
                        stall.as_secs_f64()
                    ),
                ));
            }
            n if n > 0 => return Ok(()),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

fn write_chunks(
    mut file: File,
    queue: &Receiver<Vec<u8>>,
    give_back: &SyncSender<Vec<u8>>,
    failed: &OnceLock<io::Error>,
) -> Written {
    let mut committed = 0u64;
    let mut error = None;
    for mut chunk in queue {
        if error.is_none()
            && let Err(e) = append(&mut file, &chunk, &mut committed)
        {
            let _ = failed.set(e.raw_os_error().map_or_else(
                || io::Error::new(e.kind(), e.to_string()),
                io::Error::from_raw_os_error,
            ));
            error = Some(e);
        }
        chunk.clear();
        // Full when the collector has spares enough: then this one goes.
        let _ = give_back.try_send(chunk);
    }
    Written {
        file,
        committed,
        error,
    }
}

#[cfg(test)]
mod tests {
    use std::{fs, io::Read as _};

    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("hwbp-writer-{}-{name}", std::process::id()))
    }

    #[test]
    fn writes_every_chunk_in_order() {
        let path = temp("order");
        let mut writer = Writer::new(File::create(&path).expect("create"), "test").expect("thread");
        let mut expected = Vec::new();
        let mut chunk = Vec::new();
        for i in 0..1000u32 {
            chunk.extend_from_slice(format!("line {i}\n").as_bytes());
            expected.extend_from_slice(&chunk);
            chunk = writer.send(chunk);
            assert!(chunk.is_empty());
        }
        let written = writer.finish().expect("finish");
        assert!(written.error.is_none());
        assert_eq!(written.committed, expected.len() as u64);
        let mut text = Vec::new();
        File::open(&path)
            .expect("open")
            .read_to_end(&mut text)
            .expect("read");
        let _ = fs::remove_file(&path);
        assert_eq!(text, expected);
    }

    #[test]
    fn a_full_disk_keeps_whole_chunks_only() {
        // /dev/full fails every write with ENOSPC.
        let Ok(full) = fs::OpenOptions::new().write(true).open("/dev/full") else {
            return;
        };
        let mut writer = Writer::new(full, "test").expect("thread");
        let _ = writer.send(b"one record\n".to_vec());
        let _ = writer.send(b"another\n".to_vec());
        let written = writer.finish().expect("finish");
        assert_eq!(written.committed, 0);
        let error = written.error.expect("ENOSPC");
        assert_eq!(error.raw_os_error(), Some(libc::ENOSPC));
    }

    #[test]
    fn a_pipe_nobody_reads_is_given_up_after_the_stall() {
        use std::os::fd::{FromRawFd as _, OwnedFd};
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills the two-int array it is given.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK) };
        assert_eq!(rc, 0);
        // SAFETY: fresh descriptors, each owned once.
        let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        let mut file = writer;
        let mut committed = 0;
        let chunk = vec![b'x'; 4096];
        let start = std::time::Instant::now();
        let error = loop {
            if let Err(e) = append_within(
                &mut file,
                &chunk,
                &mut committed,
                Duration::from_millis(100),
            ) {
                break e;
            }
            assert!(committed < 1 << 24, "a pipe holds far less than 16 MiB");
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
        assert!(
            error.to_string().contains("its reader took nothing"),
            "{error}"
        );
        // The pipe's 64 KiB, in whole chunks.
        assert_eq!(committed % chunk.len() as u64, 0);
        assert!(start.elapsed() < Duration::from_secs(5));
        drop(reader);
    }

    #[test]
    fn dropping_it_still_writes_what_was_queued() {
        let path = temp("drop");
        let mut writer = Writer::new(File::create(&path).expect("create"), "test").expect("thread");
        let _ = writer.send(b"queued\n".to_vec());
        drop(writer);
        let text = fs::read(&path).expect("read");
        let _ = fs::remove_file(&path);
        assert_eq!(text, b"queued\n");
    }
}
