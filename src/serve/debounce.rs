//! Holding file events back until their files are quiet: the debounce
//! window, without a clock that ticks while nothing happens.
//!
//! notify reports every write of a `git checkout` as it happens; the update
//! thread wants them gathered, each file once it has stopped changing for
//! the window. notify-debouncer-full (used before) looks for quiet files on
//! a fixed tick, so an idle watcher woke a hundred times a second for a
//! store that changes a few times a day, and a reload waited for the next
//! tick (up to a twentieth of the window). Here a thread blocks on notify's
//! events while none are pending and, while some are, sleeps exactly until
//! the first of them is due; its wake-ups during a burst are spaced by at
//! least a twentieth of the window, so that a checkout of 10,000 files is
//! handed on in a few batches, not 10,000.
//!
//! notify itself still watches the files (inotify here); this module only
//! decides when its events are handed on. Access events (an `open`, a
//! `close` without a write: our own reads of the files) are dropped as they
//! arrive: no consumer wants them, and they must not keep a reload waiting.
//!
//! [`Window`] is the timing, pure and tested with made-up instants;
//! [`Debouncer`] is the thread around it and the watcher that feeds it.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};

/// What the handler is given: events whose files are quiet, or the
/// watcher's errors (events may have been lost: rescan).
pub type Delivered = Result<Vec<Event>, Vec<notify::Error>>;

/// An event whose file keeps changing is handed on after this many windows
/// anyway: a file rewritten every few milliseconds is still served.
const MAX_WAIT_WINDOWS: u32 = 5;

/// The events waiting for their files to be quiet.
///
/// Every look costs in proportion to the events that arrived a window ago
/// or more, not to all that wait: an event is never due before a window
/// after its arrival, so the recent ones at the back (a checkout's or a
/// swap's 10,000 removals still coming in) are not looked at. Looking at
/// all of them took 8 ms a hand-over in the middle of a git-sync swap.
#[derive(Debug)]
pub struct Window {
    window: Duration,
    /// Events in arrival order, with their arrival.
    events: VecDeque<(Instant, Event)>,
    /// Errors in arrival order, with their arrival.
    errors: VecDeque<(Instant, notify::Error)>,
    /// The last event of each path that may still wait.
    last: HashMap<PathBuf, Instant>,
}

impl Window {
    /// An empty window of the given length.
    pub fn new(window: Duration) -> Window {
        Window {
            window,
            events: VecDeque::new(),
            errors: VecDeque::new(),
            last: HashMap::new(),
        }
    }

    /// Adds an event that arrived at `now` (no earlier than the last one).
    pub fn add(&mut self, event: Event, now: Instant) {
        for path in &event.paths {
            self.last.insert(path.clone(), now);
        }
        self.events.push_back((now, event));
    }

    /// Adds a watcher error that arrived at `now`: handed on after the
    /// window, like an event, so that the rescan it causes comes after the
    /// burst that overflowed the queue rather than in its middle.
    pub fn add_error(&mut self, error: notify::Error, now: Instant) {
        self.errors.push_back((now, error));
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.errors.is_empty()
    }

    /// When the event that arrived at `arrived` is due: once each of its
    /// paths has been quiet for the window, and at the latest
    /// [`MAX_WAIT_WINDOWS`] windows after it arrived. An event without
    /// paths (notify's "rescan") is due a window after it arrived. Never
    /// sooner than a window after it arrived.
    fn due(&self, arrived: Instant, event: &Event) -> Instant {
        let quiet_since = event
            .paths
            .iter()
            .filter_map(|p| self.last.get(p))
            .max()
            .copied()
            .unwrap_or(arrived)
            .max(arrived);
        (quiet_since + self.window).min(arrived + self.window * MAX_WAIT_WINDOWS)
    }

    /// When the first waiting event or error is due, if any waits.
    pub fn next_due(&self) -> Option<Instant> {
        let mut first: Option<Instant> = None;
        for (arrived, event) in &self.events {
            // Later arrivals are due no sooner than a window after them.
            if first.is_some_and(|f| *arrived + self.window >= f) {
                break;
            }
            let due = self.due(*arrived, event);
            first = Some(first.map_or(due, |f| f.min(due)));
        }
        let error = self.errors.front().map(|(t, _)| *t + self.window);
        match (first, error) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes what is due at `now`: the events in arrival order, and the
    /// errors.
    pub fn take_due(&mut self, now: Instant) -> (Vec<Event>, Vec<notify::Error>) {
        let mut due = Vec::new();
        let mut kept = Vec::new();
        // Only the events that arrived a window ago or more can be due.
        while self
            .events
            .front()
            .is_some_and(|(arrived, _)| *arrived + self.window <= now)
        {
            let Some((arrived, event)) = self.events.pop_front() else {
                break;
            };
            if self.due(arrived, &event) <= now {
                due.push(event);
            } else {
                kept.push((arrived, event));
            }
        }
        for item in kept.into_iter().rev() {
            self.events.push_front(item);
        }
        // A path quiet for the window has no event left waiting (each of
        // them was due); one handed on at the latest still has some.
        for path in due.iter().flat_map(|e| &e.paths) {
            if self.last.get(path).is_some_and(|t| *t + self.window <= now) {
                self.last.remove(path);
            }
        }
        let mut errors = Vec::new();
        while self
            .errors
            .front()
            .is_some_and(|(arrived, _)| *arrived + self.window <= now)
        {
            errors.extend(self.errors.pop_front().map(|(_, e)| e));
        }
        (due, errors)
    }
}

/// What the debounce thread receives.
enum Input {
    Event(notify::Result<Event>),
    Stop,
}

/// A notify watcher whose events reach a handler once their files are
/// quiet for the window. Dropping it stops the watcher and its thread.
pub struct Debouncer {
    watcher: RecommendedWatcher,
    stop: mpsc::Sender<Input>,
    thread: Option<JoinHandle<()>>,
}

impl Debouncer {
    /// Starts the thread and the watcher (which watches nothing yet).
    pub fn new<F>(window: Duration, config: notify::Config, handler: F) -> notify::Result<Debouncer>
    where
        F: FnMut(Delivered) + Send + 'static,
    {
        let (tx, rx) = mpsc::channel::<Input>();
        let thread = std::thread::Builder::new()
            .name("meshseal-debounce".to_string())
            .spawn(move || run(&rx, window, handler))
            .map_err(notify::Error::io)?;
        let events = tx.clone();
        // If the watcher cannot start, both senders go and the thread ends.
        let watcher = RecommendedWatcher::new(
            move |event: notify::Result<Event>| {
                let _ = events.send(Input::Event(event));
            },
            config,
        )?;
        Ok(Debouncer {
            watcher,
            stop: tx,
            thread: Some(thread),
        })
    }

    /// Watches `path`.
    pub fn watch(&mut self, path: &Path, mode: RecursiveMode) -> notify::Result<()> {
        self.watcher.watch(path, mode)
    }

    /// Stops watching `path`.
    pub fn unwatch(&mut self, path: &Path) -> notify::Result<()> {
        self.watcher.unwatch(path)
    }

    /// Stops watching and waits for the thread to end.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Debouncer {
    fn drop(&mut self) {
        // The thread reads `Stop` before any event sent after it, and the
        // handler runs only on the thread: once joined, nothing is handed
        // on. The watcher goes with the fields.
        let _ = self.stop.send(Input::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A twentieth of the window (at least 1 ms): the shortest time between two
/// hand-overs while events keep coming.
fn min_spacing(window: Duration) -> Duration {
    (window / 20).max(Duration::from_millis(1)).min(window)
}

/// When to look next, after a look at `now`: when the first waiting event
/// is due, but not sooner than `spacing` after a hand-over. A look that
/// found nothing due (the awaited file changed again meanwhile) is not
/// spaced: the postponed event is taken when it is due, not up to a
/// twentieth of the window later.
fn next_wake(
    next_due: Option<Instant>,
    now: Instant,
    handed_on: bool,
    spacing: Duration,
) -> Option<Instant> {
    next_due.map(|due| {
        if handed_on {
            due.max(now + spacing)
        } else {
            due
        }
    })
}

/// The debounce thread: until stopped, or until every sender is gone.
fn run<F: FnMut(Delivered)>(rx: &mpsc::Receiver<Input>, window: Duration, mut handler: F) {
    let spacing = min_spacing(window);
    let mut waiting = Window::new(window);
    // When to look for due events next; `None` while nothing waits.
    let mut wake: Option<Instant> = None;
    loop {
        let input = match wake {
            None => rx.recv().ok(),
            Some(at) => {
                let now = Instant::now();
                if now >= at {
                    // Due now, even while events keep coming.
                    let (events, errors) = waiting.take_due(now);
                    let handed_on = !events.is_empty() || !errors.is_empty();
                    if !events.is_empty() {
                        handler(Ok(events));
                    }
                    if !errors.is_empty() {
                        handler(Err(errors));
                    }
                    wake = next_wake(waiting.next_due(), now, handed_on, spacing);
                    continue;
                }
                match rx.recv_timeout(at - now) {
                    Ok(input) => Some(input),
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => None,
                }
            }
        };
        let now = Instant::now();
        match input {
            None | Some(Input::Stop) => return,
            Some(Input::Event(Ok(event))) if matches!(event.kind, EventKind::Access(_)) => {}
            Some(Input::Event(Ok(event))) => waiting.add(event, now),
            Some(Input::Event(Err(error))) => waiting.add_error(error, now),
        }
        // A new event is never due before the one already awaited: waking
        // at the old time and finding nothing due costs one look.
        if wake.is_none() && !waiting.is_empty() {
            wake = Some(now + window);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, CreateKind, DataChange, ModifyKind};

    const W: Duration = Duration::from_millis(200);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn modify(path: &str) -> Event {
        Event::new(EventKind::Modify(ModifyKind::Data(DataChange::Content)))
            .add_path(PathBuf::from(path))
    }

    fn paths(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .flat_map(|e| &e.paths)
            .map(|p| p.display().to_string())
            .collect()
    }

    #[test]
    fn an_event_is_due_one_window_after_its_file_went_quiet() {
        let t0 = Instant::now();
        let mut w = Window::new(W);
        w.add(modify("a"), t0);
        assert_eq!(w.next_due(), Some(t0 + W));
        assert!(w.take_due(t0 + W - ms(1)).0.is_empty());
        // A second write to the same file pushes both back.
        w.add(modify("a"), t0 + ms(150));
        assert_eq!(w.next_due(), Some(t0 + ms(350)));
        assert!(w.take_due(t0 + ms(349)).0.is_empty());
        let (due, errors) = w.take_due(t0 + ms(350));
        assert_eq!(paths(&due), ["a", "a"]);
        assert!(errors.is_empty());
        assert!(w.is_empty());
        assert_eq!(w.next_due(), None);
    }

    #[test]
    fn quiet_files_are_handed_on_while_others_still_change() {
        let t0 = Instant::now();
        let mut w = Window::new(W);
        w.add(modify("a"), t0);
        w.add(modify("b"), t0 + ms(10));
        w.add(modify("b"), t0 + ms(100));
        let (due, _) = w.take_due(t0 + ms(250));
        assert_eq!(paths(&due), ["a"]);
        assert_eq!(w.next_due(), Some(t0 + ms(300)));
        assert_eq!(paths(&w.take_due(t0 + ms(300)).0), ["b", "b"]);
    }

    #[test]
    fn a_postponed_event_does_not_hide_a_later_one_due_sooner() {
        let t0 = Instant::now();
        let mut w = Window::new(W);
        w.add(modify("a"), t0);
        w.add(modify("b"), t0 + ms(10));
        w.add(modify("a"), t0 + ms(100));
        for i in 0..1000 {
            w.add(modify(&format!("late{i}")), t0 + ms(150));
        }
        assert_eq!(w.next_due(), Some(t0 + ms(210)));
        assert_eq!(paths(&w.take_due(t0 + ms(210)).0), ["b"]);
        assert_eq!(w.next_due(), Some(t0 + ms(300)));
        assert_eq!(paths(&w.take_due(t0 + ms(300)).0), ["a", "a"]);
        assert_eq!(w.next_due(), Some(t0 + ms(350)));
        assert_eq!(w.take_due(t0 + ms(350)).0.len(), 1000);
        assert!(w.is_empty());
        assert!(w.last.is_empty(), "paths handed on are forgotten");
    }

    #[test]
    fn an_event_of_two_paths_waits_for_both() {
        let t0 = Instant::now();
        let mut w = Window::new(W);
        let rename = Event::new(EventKind::Modify(ModifyKind::Name(
            notify::event::RenameMode::Both,
        )))
        .add_path(PathBuf::from("old"))
        .add_path(PathBuf::from("new"));
        w.add(rename, t0);
        w.add(modify("new"), t0 + ms(50));
        assert_eq!(w.next_due(), Some(t0 + ms(250)));
        assert!(w.take_due(t0 + ms(240)).0.is_empty());
        assert_eq!(paths(&w.take_due(t0 + ms(250)).0), ["old", "new", "new"]);
    }

    #[test]
    fn a_file_that_never_goes_quiet_is_handed_on_after_five_windows() {
        let t0 = Instant::now();
        let mut w = Window::new(W);
        let mut now = t0;
        let mut handed = Vec::new();
        while now < t0 + W * 6 {
            w.add(modify("busy"), now);
            handed.extend(w.take_due(now).0);
            now += ms(20);
        }
        assert!(!handed.is_empty(), "a busy file must not wait forever");
        assert!(w.next_due().unwrap() <= now + W * MAX_WAIT_WINDOWS);
    }

    #[test]
    fn hand_overs_are_spaced_but_a_look_that_found_nothing_is_not() {
        let t0 = Instant::now();
        let spacing = ms(10);
        // After a hand-over, the next one waits for the spacing...
        assert_eq!(
            next_wake(Some(t0 + ms(3)), t0, true, spacing),
            Some(t0 + ms(10))
        );
        assert_eq!(
            next_wake(Some(t0 + ms(30)), t0, true, spacing),
            Some(t0 + ms(30))
        );
        // ...but an event postponed by a later change of its file is taken
        // when due (regression: a git-sync swap waited ~7 ms longer).
        assert_eq!(
            next_wake(Some(t0 + ms(3)), t0, false, spacing),
            Some(t0 + ms(3))
        );
        assert_eq!(next_wake(None, t0, true, spacing), None);
    }

    #[test]
    fn an_error_is_handed_on_one_window_after_it_arrived() {
        let t0 = Instant::now();
        let mut w = Window::new(W);
        w.add_error(notify::Error::generic("queue overflow"), t0);
        assert!(!w.is_empty());
        assert_eq!(w.next_due(), Some(t0 + W));
        assert!(w.take_due(t0 + ms(199)).1.is_empty());
        assert_eq!(w.take_due(t0 + W).1.len(), 1);
        assert!(w.is_empty());
    }

    /// The debounce thread on a channel of its own, handing on to `out`.
    fn spawn(
        window: Duration,
    ) -> (
        mpsc::Sender<Input>,
        mpsc::Receiver<Delivered>,
        JoinHandle<()>,
    ) {
        let (tx, rx) = mpsc::channel::<Input>();
        let (out_tx, out) = mpsc::channel::<Delivered>();
        let thread = std::thread::spawn(move || run(&rx, window, move |d| out_tx.send(d).unwrap()));
        (tx, out, thread)
    }

    #[test]
    fn the_thread_hands_on_quiet_events_and_drops_access_events() {
        let window = ms(30);
        let (tx, out, thread) = spawn(window);
        let sent = Instant::now();
        tx.send(Input::Event(Ok(Event::new(EventKind::Access(
            AccessKind::Any,
        ))
        .add_path(PathBuf::from("read")))))
            .unwrap();
        tx.send(Input::Event(Ok(Event::new(EventKind::Create(
            CreateKind::File,
        ))
        .add_path(PathBuf::from("new")))))
            .unwrap();
        let delivered = out.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
        assert!(
            sent.elapsed() >= window,
            "handed on before the window ended"
        );
        assert_eq!(paths(&delivered), ["new"]);
        // Nothing else is handed on: the access event was dropped.
        assert!(out.recv_timeout(ms(100)).is_err());
        tx.send(Input::Stop).unwrap();
        thread.join().unwrap();
    }

    #[test]
    fn the_thread_hands_on_a_burst_in_few_batches() {
        let (tx, out, thread) = spawn(ms(100));
        for i in 0..2000 {
            tx.send(Input::Event(Ok(modify(&format!("f{i}"))))).unwrap();
        }
        let mut seen = 0;
        let mut batches = 0;
        while seen < 2000 {
            let batch = out.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
            seen += batch.len();
            batches += 1;
        }
        assert_eq!(seen, 2000);
        // The burst is sent in well under the window, and hand-overs are
        // spaced by a twentieth of it: a handful of batches.
        assert!(batches <= 20, "{batches} batches for one burst");
        drop(tx);
        thread.join().unwrap();
    }

    #[test]
    fn dropping_the_debouncer_ends_its_thread() {
        let d = Debouncer::new(W, notify::Config::default(), |_| {}).unwrap();
        let started = Instant::now();
        d.stop();
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
