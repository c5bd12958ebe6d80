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

use crate::{session::Armament, trace::Summary};

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
        self.input = Some(thread::spawn(move || read_input(&tx, &stop)));
    }

    /// The next event; a tick when nothing else came in time.
    pub fn wait(&mut self) -> Event {
        loop {
            let now = Instant::now();
            if now >= self.next_tick {
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
    fn drop(&mut self) {
        self.stop_input.store(true, Ordering::Relaxed);
        if let Some(input) = self.input.take() {
            let _ = input.join();
        }
    }
}

fn read_input(tx: &Sender<Event>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
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
