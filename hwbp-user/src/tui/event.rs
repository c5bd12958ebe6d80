//! The dashboard's event source: terminal input read on its own thread,
//! messages from the session, and ticks, all through one channel.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, Sender},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use crossterm::event::{self as term, KeyEvent, KeyEventKind};

use crate::{
    probe::arm::Armament,
    record::format::{ChangeRecord, Summary},
};

/// How often the input thread checks whether to stop.
const INPUT_POLL: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub enum Event {
    /// Time to read the stats and draw.
    Tick,
    Key(KeyEvent),
    Resize,
    /// The session armed its breakpoints: the dashboard opens.
    Armed(Armament),
    /// The session made a change the dashboard asked for, or refused it.
    Changed(Box<Result<ChangeRecord, String>>),
    /// The session ended (or failed with this message).
    Finished(Result<Summary, String>),
    /// Leave now (a signal after the session ended).
    Quit,
}

pub struct Events {
    tx: Sender<Event>,
    rx: Receiver<Event>,
    tick: Duration,
    next_tick: Instant,
    stop_input: Arc<AtomicBool>,
    input: Option<JoinHandle<()>>,
    /// Disconnects when the input thread ends.
    input_done: Option<Receiver<()>>,
}

impl Events {
    pub fn new(tick: Duration) -> Self {
        let (tx, rx) = mpsc::channel();
        Self {
            tx,
            rx,
            tick,
            next_tick: Instant::now() + tick,
            stop_input: Arc::new(AtomicBool::new(false)),
            input: None,
            input_done: None,
        }
    }

    /// For the session's side: armed, finished.
    pub fn sender(&self) -> Sender<Event> {
        self.tx.clone()
    }

    /// Starts reading the terminal (once it is in raw mode).
    pub fn start_input(&mut self) {
        if self.input.is_some() {
            return;
        }
        let tx = self.tx.clone();
        let stop = self.stop_input.clone();
        let (done_tx, done) = mpsc::channel::<()>();
        self.input = Some(thread::spawn(move || {
            let _done = done_tx;
            read_input(&tx, &stop);
        }));
        self.input_done = Some(done);
    }

    /// The next event; a tick when nothing else came in time.
    pub fn wait(&mut self) -> Event {
        loop {
            let now = Instant::now();
            if now >= self.next_tick {
                // What came in first: when a draw takes longer than a tick,
                // the tick is always due, and would starve the keys.
                if let Ok(event) = self.rx.try_recv() {
                    return event;
                }
                // Skip ticks missed by a slow draw rather than bunching them.
                self.next_tick = now + self.tick;
                return Event::Tick;
            }
            match self.rx.recv_timeout(self.next_tick - now) {
                Ok(event) => return event,
                Err(RecvTimeoutError::Timeout) => continue,
                // We hold a sender ourselves: never disconnected.
                Err(RecvTimeoutError::Disconnected) => return Event::Quit,
            }
        }
    }
}

impl Drop for Events {
    /// Stops the input thread and waits a little for it, so that it does not
    /// eat a key meant for the shell; but never for long: on a hung-up
    /// terminal crossterm's poll can spin without returning.
    fn drop(&mut self) {
        self.stop_input.store(true, Ordering::Relaxed);
        let Some(input) = self.input.take() else {
            return;
        };
        let finished = match self.input_done.take() {
            Some(done) => matches!(
                done.recv_timeout(INPUT_POLL * 4),
                Err(RecvTimeoutError::Disconnected)
            ),
            None => false,
        };
        if finished {
            let _ = input.join();
        }
    }
}

/// The terminal, opened for polling on its own: a hang-up (the terminal
/// window closed, ssh gone, `tmux kill-server`) shows as POLLHUP there,
/// while crossterm's reader would spin on the end of file.
fn open_tty() -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/tty")
        .ok()
}

fn hung_up(tty: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd as _;
    let mut fds = libc::pollfd {
        fd: tty.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, owned by this frame, for the duration of
    // the call; the fd stays open as `tty` is borrowed.
    let n = unsafe { libc::poll(&mut fds, 1, 0) };
    n > 0 && fds.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

fn read_input(tx: &Sender<Event>, stop: &AtomicBool) {
    let tty = open_tty();
    while !stop.load(Ordering::Relaxed) {
        if tty.as_ref().is_some_and(hung_up) {
            let _ = tx.send(Event::Quit);
            return;
        }
        // Poll with a timeout, so that a stop is seen without a key press.
        match term::poll(INPUT_POLL) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(_) => return,
        }
        let event = match term::read() {
            // Releases and repeats come only with the kitty protocol; a key
            // counts once.
            Ok(term::Event::Key(key)) if key.kind == KeyEventKind::Press => Event::Key(key),
            Ok(term::Event::Resize(..)) => Event::Resize,
            Ok(_) => continue,
            Err(_) => return,
        };
        if tx.send(event).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use crossterm::event::{KeyCode, KeyModifiers};

    use super::*;

    /// A draw slower than the tick (a debug build, a loaded machine): the
    /// key sent meanwhile comes before the overdue tick.
    #[test]
    fn keys_come_before_an_overdue_tick() {
        let mut events = Events::new(Duration::from_millis(1));
        let key = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
        events
            .sender()
            .send(Event::Key(key))
            .expect("the channel is open");
        thread::sleep(Duration::from_millis(5));
        assert!(
            matches!(events.wait(), Event::Key(k) if k == key),
            "the key first"
        );
        assert!(matches!(events.wait(), Event::Tick));
    }
}
