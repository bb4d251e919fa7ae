//! Decoding audit events from bytes: JSON Lines (the log backend), a single `Event`, an
//! `EventList` (the webhook backend), pretty-printed documents, plain or gzip files and
//! directories, and the managed clusters' log envelopes around events (EKS, AKS, GKE: see
//! `envelope.rs`). Bad input is counted by reason and reported with its source and line, never a
//! panic and never the end of a scan.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::envelope;
use super::json::{JsonError, Scanner};
use super::view::Event;

/// Default limit on one line (and on one pretty-printed document): 16 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 << 20;

/// Why input was skipped. The labels are the `reason` values of `lines_skipped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// Not valid JSON.
    MalformedJson,
    /// Valid JSON, but not an audit `Event`, `EventList`, a known cloud envelope around events
    /// or a tripline events-flow document (e.g. `{"kind": 0}`).
    NotAnEvent,
    /// Bytes that are not UTF-8.
    InvalidUtf8,
    /// A line over the size limit.
    TooLong,
    /// The last line of an input ended without a newline and is not a complete event.
    Truncated,
    /// The input could not be read (I/O error, corrupt gzip).
    Unreadable,
}

impl SkipReason {
    pub const ALL: [SkipReason; 6] = [
        SkipReason::MalformedJson,
        SkipReason::NotAnEvent,
        SkipReason::InvalidUtf8,
        SkipReason::TooLong,
        SkipReason::Truncated,
        SkipReason::Unreadable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::MalformedJson => "malformed_json",
            SkipReason::NotAnEvent => "not_an_event",
            SkipReason::InvalidUtf8 => "invalid_utf8",
            SkipReason::TooLong => "too_long",
            SkipReason::Truncated => "truncated",
            SkipReason::Unreadable => "unreadable",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One piece of input that was skipped, with where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub source: String,
    /// 1-based line number (the first line of the document for pretty-printed input).
    pub line: u64,
    pub reason: SkipReason,
    pub message: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.source, self.line, self.reason, self.message
        )
    }
}

/// Counters of a decoding run.
#[derive(Debug, Default, Clone)]
pub struct DecodeStats {
    pub events: u64,
    pub lines: u64,
    pub bytes: u64,
    pub skipped: [u64; SkipReason::ALL.len()],
    /// Events whose request or response body AKS replaced by `skipped-too-big-size-object`
    /// ([`Event::body_omitted`]).
    pub bodies_omitted: u64,
}

impl DecodeStats {
    pub fn skipped(&self, reason: SkipReason) -> u64 {
        self.skipped[reason.index()]
    }

    pub fn skipped_total(&self) -> u64 {
        self.skipped.iter().sum()
    }

    pub fn add(&mut self, other: &DecodeStats) {
        self.events += other.events;
        self.lines += other.lines;
        self.bytes += other.bytes;
        self.bodies_omitted += other.bodies_omitted;
        for (a, b) in self.skipped.iter_mut().zip(other.skipped.iter()) {
            *a += b;
        }
    }

    fn count(&mut self, reason: SkipReason) {
        self.skipped[reason.index()] += 1;
    }

    /// Decodes one JSON value with [`decode_value_into`], passing its events to `on_event` and
    /// counting them and their omitted bodies. Returns the items that were skipped, for the
    /// caller to report at the value's line.
    #[inline]
    fn decode_value(
        &mut self,
        text: &str,
        on_event: &mut dyn FnMut(&Event<'_>),
    ) -> Vec<(SkipReason, String)> {
        let mut errors = Vec::new();
        let mut omitted = 0;
        self.events += decode_value_into(text, &mut |d| match d {
            Ok(ev) => {
                omitted += u64::from(ev.body_omitted());
                on_event(ev)
            }
            Err(e) => errors.push(e),
        }) as u64;
        self.bodies_omitted += omitted;
        errors
    }
}

/// What one decoded JSON value produced.
pub type Decoded<'r, 'a> = Result<&'r Event<'a>, (SkipReason, String)>;

/// The callback of [`decode_value_into`]. It is called for any lifetime of the event: an event
/// unwrapped from a cloud envelope borrows from a buffer that lives only for the call.
pub type DecodeFn<'f> = dyn for<'r, 'e> FnMut(Decoded<'r, 'e>) + 'f;

fn classify(e: JsonError, text: &str) -> (SkipReason, String) {
    match e {
        JsonError::Type(m) => (SkipReason::NotAnEvent, m),
        JsonError::Eof => (
            SkipReason::Truncated,
            "the JSON text ends inside a value".into(),
        ),
        JsonError::Syntax(m, at) => {
            let start = (0..=at.min(text.len()))
                .rev()
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(0);
            let near: String = text[start..].chars().take(16).collect();
            (
                SkipReason::MalformedJson,
                format!("{m} at byte {at} (near {near:?})"),
            )
        }
    }
}

pub(super) fn decode_event<'a>(
    text: &'a str,
    ev: &mut Event<'a>,
) -> Result<(), (SkipReason, String)> {
    Event::parse_into(text, ev).map_err(|e| classify(e, text))
}

pub(super) fn check_event(ev: &Event<'_>) -> Result<(), (SkipReason, String)> {
    match ev.kind.as_deref() {
        None | Some("Event") => {}
        Some(other) => {
            return Err((
                SkipReason::NotAnEvent,
                format!("kind is `{other}`, expected `Event` or `EventList`"),
            ))
        }
    }
    if ev.verb.is_none() && ev.audit_id.is_none() {
        return Err((
            SkipReason::NotAnEvent,
            "neither `verb` nor `auditID` is present".to_string(),
        ));
    }
    Ok(())
}

/// Input bytes as text: what `std::str::from_utf8` returns, checked with SIMD (several times
/// faster on the mostly-ASCII text of audit logs); the standard check runs again only to
/// describe an error.
pub fn utf8(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    match simdutf8::basic::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(_) => std::str::from_utf8(bytes),
    }
}

/// Decodes one JSON value that is an audit `Event` or an `EventList`, or a cloud envelope around
/// events (EKS, AKS, GKE: see `envelope.rs`), and calls `f` with each event (or with the reason
/// an item was skipped). Returns the number of events passed to `f`.
///
/// A plain event or `EventList` borrows from `text` and allocates only for escaped strings and
/// the item list of an `EventList`; envelopes are looked for only after the value turned out not
/// to be one, so they cost plain events nothing. An unwrapped event's [`Event::raw`] is the inner
/// event's JSON text.
pub fn decode_value_into(text: &str, f: &mut DecodeFn<'_>) -> usize {
    decode_at(text, f, 0)
}

/// [`decode_value_into`] for a value found `depth` envelopes deep.
pub(super) fn decode_at(text: &str, f: &mut DecodeFn<'_>, depth: u8) -> usize {
    let mut ev = Event::default();
    match decode_event(text, &mut ev) {
        Ok(()) => {}
        Err(e) => return envelope::decode_other(text, e, false, f, depth),
    };
    if ev.kind.as_deref() == Some("EventList") {
        let Some(items) = ev.items else {
            f(Err((
                SkipReason::NotAnEvent,
                "EventList without `items`".into(),
            )));
            return 0;
        };
        let mut list = Vec::new();
        let mut s = Scanner::new(items);
        if let Err(e) = s.array("EventList items", |s: &mut Scanner<'_>| {
            list.push(s.skip_value()?);
            Ok(())
        }) {
            let (reason, msg) = classify(e, items);
            f(Err((reason, format!("EventList items: {msg}"))));
            return 0;
        }
        let mut n = 0;
        for (i, item) in list.into_iter().enumerate() {
            let mut ev = Event::default();
            match decode_event(item, &mut ev).and_then(|()| check_event(&ev)) {
                Ok(()) => {
                    n += 1;
                    f(Ok(&ev));
                }
                Err((reason, msg)) => f(Err((reason, format!("EventList item {i}: {msg}")))),
            }
        }
        return n;
    }
    match check_event(&ev) {
        Ok(()) => {
            f(Ok(&ev));
            1
        }
        // An object without `kind`, `verb` or `auditID`: perhaps an envelope.
        Err(e) if ev.kind.is_none() => envelope::decode_other(text, e, true, f, depth),
        Err(e) => {
            f(Err(e));
            0
        }
    }
}

/// One line from a [`LineReader`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'b> {
    /// A line without its `\n` (and without a trailing `\r`).
    Complete(&'b [u8]),
    /// The input ended without a newline after these bytes.
    Unterminated(&'b [u8]),
    /// A line longer than the limit; its bytes were discarded.
    TooLong,
}

/// Splits a byte stream into lines, reading in large chunks and finding newlines with `memchr`.
/// Memory stays bounded by the line limit: a longer line is skipped to its newline.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    scanned: usize,
    max_line: usize,
    skipping: bool,
    eof: bool,
    line_no: u64,
}

const CHUNK: usize = 256 * 1024;

impl<R: Read> LineReader<R> {
    pub fn new(inner: R, max_line: usize) -> Self {
        LineReader {
            inner,
            buf: vec![0; CHUNK],
            start: 0,
            end: 0,
            scanned: 0,
            max_line: max_line.max(1),
            skipping: false,
            eof: false,
            line_no: 0,
        }
    }

    /// The 1-based number of the line last returned.
    pub fn line_no(&self) -> u64 {
        self.line_no
    }

    /// The next line, or `None` at the end of the input.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.next_numbered().map(|o| o.map(|(_, l)| l))
    }

    /// The next line with its 1-based number, or `None` at the end of the input.
    pub fn next_numbered(&mut self) -> io::Result<Option<(u64, Line<'_>)>> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.scanned..self.end]) {
                let nl = self.scanned + i;
                let (s, e) = (self.start, nl);
                self.start = nl + 1;
                self.scanned = self.start;
                self.line_no += 1;
                if std::mem::take(&mut self.skipping) || e - s > self.max_line {
                    return Ok(Some((self.line_no, Line::TooLong)));
                }
                let e = if e > s && self.buf[e - 1] == b'\r' {
                    e - 1
                } else {
                    e
                };
                return Ok(Some((self.line_no, Line::Complete(&self.buf[s..e]))));
            }
            self.scanned = self.end;
            if self.end - self.start > self.max_line {
                // Too long: drop what we hold and skip to the next newline.
                self.skipping = true;
                self.start = 0;
                self.end = 0;
                self.scanned = 0;
            }
            if self.eof {
                if self.skipping {
                    self.skipping = false;
                    self.line_no += 1;
                    return Ok(Some((self.line_no, Line::TooLong)));
                }
                if self.start < self.end {
                    let (s, e) = (self.start, self.end);
                    self.start = self.end;
                    self.line_no += 1;
                    return Ok(Some((self.line_no, Line::Unterminated(&self.buf[s..e]))));
                }
                return Ok(None);
            }
            // Make room: move the partial line to the front, grow when it fills the buffer.
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.scanned -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < CHUNK / 2 {
                let want = (self.buf.len() * 2).min(self.max_line + CHUNK + 1);
                if want > self.buf.len() {
                    self.buf.resize(want, 0);
                }
            }
            let n = loop {
                match self.inner.read(&mut self.buf[self.end..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            if n == 0 {
                self.eof = true;
            }
            self.end += n;
        }
    }
}

/// A reader that counts the bytes read from the underlying file (for progress reporting).
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Where events are read from: a file (plain or gzip, detected by its magic bytes), a directory
/// (every regular file below it, in sorted order, hidden files skipped) or `-` for stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    File(PathBuf),
    Stdin,
}

impl Input {
    pub fn name(&self) -> String {
        match self {
            Input::File(p) => p.display().to_string(),
            Input::Stdin => "<stdin>".to_string(),
        }
    }

    /// Expands paths: `-` is stdin, a directory is every file below it (sorted, recursively).
    pub fn expand(paths: &[PathBuf]) -> io::Result<Vec<Input>> {
        let mut out = Vec::new();
        for p in paths {
            if p.as_os_str() == "-" {
                out.push(Input::Stdin);
            } else if p.is_dir() {
                let mut files = Vec::new();
                collect_files(p, &mut files)?;
                files.sort();
                out.extend(files.into_iter().map(Input::File));
            } else {
                // Open errors surface when the file is read, with the file's name.
                out.push(Input::File(p.clone()));
            }
        }
        Ok(out)
    }

    /// The event time of the file's first event line (plain or gzip), read from at most its
    /// first 1 MiB; `None` for stdin, a file whose first line is not an event with a time (an
    /// `EventList` document, for example), or one that cannot be read.
    pub fn first_event_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        use std::io::{BufRead, Read};
        let Input::File(p) = self else { return None };
        let mut f = std::fs::File::open(p).ok()?;
        let mut magic = [0u8; 2];
        let n = f.read(&mut magic).ok()?;
        let head = std::io::Cursor::new(magic[..n].to_vec()).chain(f);
        let r: Box<dyn Read> = if magic[..n] == [0x1f, 0x8b] {
            Box::new(flate2::read::MultiGzDecoder::new(head))
        } else {
            Box::new(head)
        };
        let mut line = Vec::new();
        let mut r = std::io::BufReader::new(r.take(1 << 20));
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line).ok()? == 0 {
                return None;
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                break;
            }
        }
        let text = std::str::from_utf8(&line).ok()?.trim();
        let mut time = None;
        decode_value_into(text, &mut |d| {
            if let Ok(ev) = d {
                time = time.or(ev.time());
            }
        });
        time
    }

    /// Orders files by the time of their first event, so that stateful rules (correlations,
    /// first-seen baselines) see several logs (rotated backups, several API servers' logs) in
    /// time order. Kept as given when any input has no such time (stdin, `EventList`
    /// documents); the sort is stable.
    pub fn order_by_first_event(inputs: &mut [Input]) {
        let times: Option<Vec<chrono::DateTime<chrono::Utc>>> =
            inputs.iter().map(Input::first_event_time).collect();
        let Some(times) = times else { return };
        let mut keyed: Vec<(chrono::DateTime<chrono::Utc>, usize)> =
            times.into_iter().enumerate().map(|(i, t)| (t, i)).collect();
        keyed.sort();
        let mut taken: Vec<Option<Input>> = inputs
            .iter_mut()
            .map(|i| Some(std::mem::replace(i, Input::Stdin)))
            .collect();
        for (slot, (_, from)) in inputs.iter_mut().zip(keyed) {
            if let Some(input) = taken[from].take() {
                *slot = input;
            }
        }
    }

    /// The size on disk, when known (for progress bars).
    pub fn size_on_disk(&self) -> Option<u64> {
        match self {
            Input::File(p) => std::fs::metadata(p).ok().map(|m| m.len()),
            Input::Stdin => None,
        }
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let ft = entry.file_type()?;
        if ft.is_dir() {
            collect_files(&path, out)?;
        } else if ft.is_file() || (ft.is_symlink() && path.is_file()) {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads events from one [`Input`], counting and reporting everything it skips.
#[derive(Clone)]
pub struct InputReader {
    pub max_line_bytes: usize,
    /// Bytes read from the underlying file so far (compressed bytes for gzip).
    pub progress: Arc<AtomicU64>,
}

impl Default for InputReader {
    fn default() -> Self {
        InputReader {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            progress: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl InputReader {
    /// The input, decompressed when it starts with gzip's magic bytes, without a buffer in
    /// front of the file: its readers ([`LineReader`], [`InputReader::cut_into`]) read blocks
    /// into buffers of their own.
    fn open(&self, input: &Input) -> io::Result<Box<dyn Read + Send>> {
        let raw: Box<dyn Read + Send> = match input {
            Input::File(p) => Box::new(File::open(p)?),
            // Not locked: the reader may run on another thread ([`InputReader::cut`]).
            Input::Stdin => Box::new(io::stdin()),
        };
        let mut r = Counting {
            inner: raw,
            count: self.progress.clone(),
        };
        let mut magic = [0u8; 2];
        let mut got = 0;
        while got < 2 {
            match r.read(&mut magic[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let gz = got == 2 && magic == [0x1f, 0x8b];
        let r = io::Cursor::new(magic[..got].to_vec()).chain(r);
        if gz {
            Ok(Box::new(flate2::read::MultiGzDecoder::new(r)))
        } else {
            Ok(Box::new(r))
        }
    }

    /// Decodes every event of `input`, calling `on_event` for each and `on_error` for each piece
    /// of input skipped; both are also counted in `stats`. An unreadable input is reported, not
    /// returned as an error.
    pub fn read(
        &self,
        input: &Input,
        stats: &mut DecodeStats,
        on_event: &mut dyn FnMut(&Event<'_>),
        on_error: &mut dyn FnMut(DecodeError),
    ) {
        let source = input.name();
        let mut report = reporter(&source, on_error);
        // The line reader is the buffer: a second one in front of the file would copy every
        // byte once more.
        let mut lines = match self.open(input) {
            Ok(r) => LineReader::new(r, self.max_line_bytes),
            Err(e) => {
                report(stats, 0, SkipReason::Unreadable, e.to_string());
                return;
            }
        };
        let mut first = true;
        loop {
            let (n, line) = match lines.next_numbered() {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(e) => {
                    let n = lines.line_no() + 1;
                    report(stats, n, SkipReason::Unreadable, e.to_string());
                    break;
                }
            };
            let document = match self.line_step(n, line, &mut first, stats, &mut report) {
                LineStep::Skip => continue,
                LineStep::Value { text, terminated } => {
                    decode_line(stats, n, text, terminated, &mut report, on_event);
                    continue;
                }
                LineStep::Document(text) => text.as_bytes().to_vec(),
            };
            self.read_document(&document, n, &mut lines, stats, &mut report, on_event);
            return;
        }
    }

    /// The checks every line of JSON-lines input gets, in order: the size limit, blank lines
    /// (a UTF-8 byte-order mark on line 1 counts as blank), UTF-8, and on the first line with
    /// text (`first`, cleared here) whether it opens a pretty-printed document. Counts the line
    /// in `stats` and reports what it skips.
    fn line_step<'t>(
        &self,
        n: u64,
        line: Line<'t>,
        first: &mut bool,
        stats: &mut DecodeStats,
        report: &mut ReportFn<'_>,
    ) -> LineStep<'t> {
        let (bytes, terminated) = match line {
            Line::Complete(b) => (b, true),
            Line::Unterminated(b) => (b, false),
            Line::TooLong => {
                stats.lines += 1;
                let limit = self.max_line_bytes;
                report(
                    stats,
                    n,
                    SkipReason::TooLong,
                    format!("line longer than {limit} bytes"),
                );
                return LineStep::Skip;
            }
        };
        stats.lines += 1;
        stats.bytes += bytes.len() as u64 + u64::from(terminated);
        let trimmed = line_text(n, bytes);
        if trimmed.is_empty() {
            return LineStep::Skip;
        }
        let text = match utf8(trimmed) {
            Ok(t) => t,
            Err(e) => {
                report(stats, n, SkipReason::InvalidUtf8, e.to_string());
                *first = false;
                return LineStep::Skip;
            }
        };
        if std::mem::take(first) && opens_document(text) {
            return LineStep::Document(text);
        }
        LineStep::Value { text, terminated }
    }

    /// Cuts `input` into [`Piece`]s for decoding on several threads, passing them to `send` in
    /// order (`send` returns false to stop): chunks of whole lines, each sent once its lines
    /// hold `chunk_bytes` or more (a longer line travels whole and ends its chunk; a line over
    /// the size limit travels as a mark, its bytes dropped as they are read), and for an input
    /// that turns out to be a pretty-printed document, the rest of it as one [`Rest`]. The
    /// last piece of the input says so ([`Piece::is_last`]). Decoding the pieces in order with
    /// [`InputReader::read_chunk`] and [`InputReader::read_rest`] gives what
    /// [`InputReader::read`] gives: the same events, errors (with their line numbers) and
    /// [`DecodeStats`].
    pub fn cut(&self, input: &Input, chunk_bytes: usize, send: &mut dyn FnMut(Piece) -> bool) {
        self.cut_into(input, chunk_bytes, &mut || None, send);
    }

    /// [`InputReader::cut`], reading into the buffers `buffers` hands back
    /// ([`Chunk::into_buffer`] of chunks done with) when it has one. The input is read in
    /// blocks straight into a chunk's buffer; only the partial line at the end of a block is
    /// copied, to the start of the next chunk's.
    pub fn cut_into(
        &self,
        input: &Input,
        chunk_bytes: usize,
        buffers: &mut dyn FnMut() -> Option<Vec<u8>>,
        send: &mut dyn FnMut(Piece) -> bool,
    ) {
        let source: Arc<str> = input.name().into();
        let chunk_bytes = chunk_bytes.max(1);
        // Room for the lines that fill a chunk and the one that ends it (a longer one grows
        // the buffer).
        let room = chunk_bytes.saturating_add(chunk_bytes.min(64 << 10));
        let max_line = self.max_line_bytes.max(1);
        let mut buffer = || {
            let mut b = buffers().unwrap_or_default();
            if b.len() < room {
                b.resize(room, 0);
            }
            b
        };
        let mut chunk = Chunk::new(source.clone(), 1, buffer());
        let mut r = match self.open(input) {
            Ok(r) => r,
            Err(e) => {
                chunk.unreadable = Some((0, e.to_string()));
                chunk.last = true;
                send(Piece::Lines(chunk));
                return;
            }
        };
        // Lines cut so far (the number of the last one).
        let mut n = 0u64;
        let mut first = true;
        // Dropping the bytes of a line over the limit until its newline.
        let mut skipping = false;
        // `chunk.data[..filled]` is read; the line being cut starts at `start`, and has no
        // newline before `scanned`.
        let mut filled = 0usize;
        let mut start = 0usize;
        let mut scanned = 0usize;
        let mut eof = false;
        loop {
            if let Some(i) = memchr::memchr(b'\n', &chunk.data[scanned..filled]) {
                let nl = scanned + i;
                let (s, e) = (start, nl);
                start = nl + 1;
                scanned = start;
                n += 1;
                if std::mem::take(&mut skipping) || e - s > max_line {
                    chunk.lines.push((start, start, LineKind::TooLong));
                } else {
                    let e = if e > s && chunk.data[e - 1] == b'\r' {
                        e - 1
                    } else {
                        e
                    };
                    if first {
                        // The same test as `line_step`'s, made here so that a document is read
                        // whole where the events are detected.
                        let text = line_text(n, &chunk.data[s..e]);
                        if !text.is_empty() {
                            first = false;
                            if utf8(text).is_ok_and(opens_document) {
                                let first_line = FirstLine {
                                    n,
                                    bytes: chunk.data[s..e].to_vec(),
                                    terminated: true,
                                };
                                let read = chunk.data[start..filled].to_vec();
                                chunk.end = s;
                                self.send_rest(chunk, source, first_line, read, r, send);
                                return;
                            }
                        }
                    }
                    chunk.lines.push((s, e, LineKind::Complete));
                }
                if start >= chunk_bytes {
                    // Full: the bytes read after its lines go to the next chunk.
                    let mut next = Chunk::new(source.clone(), n + 1, buffer());
                    let carried = filled - start;
                    if next.data.len() < carried {
                        next.data.resize(carried, 0);
                    }
                    next.data[..carried].copy_from_slice(&chunk.data[start..filled]);
                    chunk.end = start;
                    if !send(Piece::Lines(std::mem::replace(&mut chunk, next))) {
                        return;
                    }
                    (filled, start, scanned) = (carried, 0, 0);
                }
                continue;
            }
            scanned = filled;
            if filled - start > max_line {
                // Too long: drop what is read of it and skip to its newline.
                skipping = true;
                filled = start;
                scanned = start;
            }
            if eof {
                if skipping {
                    chunk.lines.push((start, start, LineKind::TooLong));
                } else if start < filled {
                    n += 1;
                    if first {
                        let text = line_text(n, &chunk.data[start..filled]);
                        if !text.is_empty() && utf8(text).is_ok_and(opens_document) {
                            let first_line = FirstLine {
                                n,
                                bytes: chunk.data[start..filled].to_vec(),
                                terminated: false,
                            };
                            chunk.end = start;
                            self.send_rest(chunk, source, first_line, Vec::new(), r, send);
                            return;
                        }
                    }
                    chunk.lines.push((start, filled, LineKind::Unterminated));
                    start = filled;
                }
                break;
            }
            if filled == chunk.data.len() {
                // The buffer is full of one line: room for more of it, up to the limit.
                let want = (chunk.data.len() * 2)
                    .max(64)
                    .min(max_line.saturating_add(2));
                let want = want.max(filled - start + 64);
                let grown = chunk.data.len().max(start + want);
                chunk.data.resize(grown, 0);
            }
            match r.read(&mut chunk.data[filled..]) {
                Ok(0) => eof = true,
                Ok(k) => filled += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    chunk.unreadable = Some((n + 1, e.to_string()));
                    break;
                }
            }
        }
        chunk.end = start;
        chunk.last = true;
        send(Piece::Lines(chunk));
    }

    /// Sends the lines of `chunk` if it has any, then the [`Rest`] of a pretty-printed input
    /// from `first_line` on: `read`, the bytes read after it, then `r`.
    fn send_rest(
        &self,
        chunk: Chunk,
        source: Arc<str>,
        first_line: FirstLine,
        read: Vec<u8>,
        r: Box<dyn Read + Send>,
        send: &mut dyn FnMut(Piece) -> bool,
    ) {
        if !chunk.lines.is_empty() && !send(Piece::Lines(chunk)) {
            return;
        }
        let n = first_line.n;
        let r: Box<dyn Read + Send> = Box::new(io::Cursor::new(read).chain(r));
        let mut lines = LineReader::new(r, self.max_line_bytes);
        lines.line_no = n;
        send(Piece::Rest(Box::new(Rest {
            source,
            first_line,
            lines,
        })));
    }

    /// Decodes every line of `chunk` as [`InputReader::read`] decodes them: counts them in
    /// `stats`, calls `on_event` with the index of the line in the chunk and each event, and
    /// `on_error` with what was skipped, at its line in the input.
    pub fn read_chunk(
        &self,
        chunk: &Chunk,
        stats: &mut DecodeStats,
        on_event: &mut dyn FnMut(usize, &Event<'_>),
        on_error: &mut dyn FnMut(DecodeError),
    ) {
        let mut report = reporter(&chunk.source, on_error);
        self.chunk_lines(chunk, 0..chunk.len(), stats, &mut report, on_event);
        if let Some((n, message)) = &chunk.unreadable {
            report(stats, *n, SkipReason::Unreadable, message.clone());
        }
    }

    /// The events of the lines `lines` (indices in the chunk, ascending) of `chunk` again,
    /// as [`InputReader::read_chunk`] passed them, without counting or reporting anything.
    pub fn reread_lines(
        &self,
        chunk: &Chunk,
        lines: &[usize],
        on_event: &mut dyn FnMut(usize, &Event<'_>),
    ) {
        let mut stats = DecodeStats::default();
        let mut report = |_: &mut DecodeStats, _: u64, _: SkipReason, _: String| {};
        self.chunk_lines(
            chunk,
            lines.iter().copied(),
            &mut stats,
            &mut report,
            on_event,
        );
    }

    fn chunk_lines(
        &self,
        chunk: &Chunk,
        lines: impl Iterator<Item = usize>,
        stats: &mut DecodeStats,
        report: &mut ReportFn<'_>,
        on_event: &mut dyn FnMut(usize, &Event<'_>),
    ) {
        // The cutter looked for a document on the first line with text already.
        let mut first = false;
        for i in lines {
            let Some(line) = chunk.line(i) else { continue };
            let n = chunk.first_line + i as u64;
            if let LineStep::Value { text, terminated } =
                self.line_step(n, line, &mut first, stats, report)
            {
                decode_line(stats, n, text, terminated, report, &mut |ev| {
                    on_event(i, ev)
                });
            }
        }
    }

    /// Decodes the [`Rest`] of an input, a pretty-printed document, as [`InputReader::read`]
    /// does.
    pub fn read_rest(
        &self,
        rest: Rest,
        stats: &mut DecodeStats,
        on_event: &mut dyn FnMut(&Event<'_>),
        on_error: &mut dyn FnMut(DecodeError),
    ) {
        let Rest {
            source,
            first_line,
            mut lines,
        } = rest;
        let mut report = reporter(&source, on_error);
        let n = first_line.n;
        let line = if first_line.terminated {
            Line::Complete(&first_line.bytes)
        } else {
            Line::Unterminated(&first_line.bytes)
        };
        match self.line_step(n, line, &mut true, stats, &mut report) {
            LineStep::Skip => {}
            LineStep::Value { text, terminated } => {
                decode_line(stats, n, text, terminated, &mut report, on_event)
            }
            LineStep::Document(text) => {
                self.read_document(text.as_bytes(), n, &mut lines, stats, &mut report, on_event)
            }
        }
    }

    /// Reads the rest of the input as concatenated pretty-printed JSON values, within the size
    /// limit.
    fn read_document(
        &self,
        first_line: &[u8],
        first_line_no: u64,
        lines: &mut LineReader<Box<dyn Read + Send>>,
        stats: &mut DecodeStats,
        report: &mut ReportFn<'_>,
        on_event: &mut dyn FnMut(&Event<'_>),
    ) {
        let mut doc = first_line.to_vec();
        doc.push(b'\n');
        loop {
            match lines.next_line() {
                Ok(Some(Line::Complete(b))) | Ok(Some(Line::Unterminated(b))) => {
                    stats.lines += 1;
                    stats.bytes += b.len() as u64 + 1;
                    doc.extend_from_slice(b);
                    doc.push(b'\n');
                }
                Ok(Some(Line::TooLong)) => {
                    stats.lines += 1;
                    let n = lines.line_no();
                    report(
                        stats,
                        n,
                        SkipReason::TooLong,
                        "line too long inside a document".into(),
                    );
                    return;
                }
                Ok(None) => break,
                Err(e) => {
                    report(
                        stats,
                        lines.line_no() + 1,
                        SkipReason::Unreadable,
                        e.to_string(),
                    );
                    return;
                }
            }
            if doc.len() > self.max_line_bytes {
                report(
                    stats,
                    first_line_no,
                    SkipReason::TooLong,
                    format!("document longer than {} bytes", self.max_line_bytes),
                );
                return;
            }
        }
        let text = match utf8(&doc) {
            Ok(t) => t,
            Err(e) => {
                report(stats, first_line_no, SkipReason::InvalidUtf8, e.to_string());
                return;
            }
        };
        // Concatenated values, with the same scanner as single lines.
        let mut scanner = Scanner::new(text);
        loop {
            scanner.skip_ws();
            let start = scanner.pos;
            if start >= text.len() {
                break;
            }
            let line = first_line_no + text[..start].bytes().filter(|b| *b == b'\n').count() as u64;
            match scanner.skip_value() {
                Ok(value) => {
                    for (reason, msg) in stats.decode_value(value, on_event) {
                        report(stats, line, reason, msg);
                    }
                }
                Err(e) => {
                    let (reason, msg) = classify(e, text);
                    let at = first_line_no
                        + text[..scanner.pos.min(text.len())]
                            .bytes()
                            .filter(|b| *b == b'\n')
                            .count() as u64;
                    report(stats, at, reason, msg);
                    break;
                }
            }
        }
    }
}

/// How input that is skipped is counted and reported: stats, line, reason, message.
type ReportFn<'a> = dyn FnMut(&mut DecodeStats, u64, SkipReason, String) + 'a;

/// A [`ReportFn`] that counts the reason and passes the error, with `source`, to `on_error`.
fn reporter<'a>(
    source: &'a str,
    on_error: &'a mut dyn FnMut(DecodeError),
) -> impl FnMut(&mut DecodeStats, u64, SkipReason, String) + 'a {
    move |stats: &mut DecodeStats, line: u64, reason: SkipReason, message: String| {
        stats.count(reason);
        on_error(DecodeError {
            source: source.to_string(),
            line,
            reason,
            message,
        });
    }
}

/// What a line of JSON-lines input is to decoding ([`InputReader::line_step`]).
enum LineStep<'t> {
    /// Blank, or skipped and reported.
    Skip,
    /// A JSON value.
    Value { text: &'t str, terminated: bool },
    /// The first line of a pretty-printed document: the rest of the input is read with it.
    Document(&'t str),
}

/// Decodes the JSON value on line `n`, counting and reporting what it skips. A value cut short
/// on a line that ended with a newline is malformed, not truncated.
fn decode_line(
    stats: &mut DecodeStats,
    n: u64,
    text: &str,
    terminated: bool,
    report: &mut ReportFn<'_>,
    on_event: &mut dyn FnMut(&Event<'_>),
) {
    for (reason, msg) in stats.decode_value(text, on_event) {
        let reason = if reason == SkipReason::Truncated && terminated {
            SkipReason::MalformedJson
        } else {
            reason
        };
        report(stats, n, reason, msg);
    }
}

/// The bytes of line `n` that are decoded: without the white space around them and, on line 1,
/// without a UTF-8 byte-order mark (editors on Windows write one).
fn line_text(n: u64, bytes: &[u8]) -> &[u8] {
    let trimmed = trim_ascii(bytes);
    if n == 1 {
        trimmed.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(trimmed)
    } else {
        trimmed
    }
}

/// Whether the first line with text opens a JSON value without closing it: pretty-printed
/// input (one Event or EventList spread over lines), read as a whole document. A truncated
/// JSON line is not taken for one: a pretty-printer's first line is short and ends where a
/// value opens or continues.
fn opens_document(text: &str) -> bool {
    looks_pretty_printed(text)
        && matches!(
            serde_json::from_str::<serde::de::IgnoredAny>(text),
            Err(ref e) if e.is_eof()
        )
}

/// What kind of line a [`Chunk`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineKind {
    Complete,
    Unterminated,
    TooLong,
}

/// Consecutive lines of one input, cut by [`InputReader::cut`] to be decoded on another thread.
#[derive(Debug)]
pub struct Chunk {
    /// The input's name, as errors report it.
    pub source: Arc<str>,
    /// The 1-based number of the chunk's first line in the input.
    pub first_line: u64,
    /// The buffer the lines were read into, newlines and all; bytes after `end` belong to no
    /// line.
    data: Vec<u8>,
    /// Where the lines end in `data`, with their newlines.
    end: usize,
    /// Per line: its bytes in `data` (without newline) and its kind.
    lines: Vec<(usize, usize, LineKind)>,
    /// The input could not be read on after these lines: the line number and the error.
    unreadable: Option<(u64, String)>,
    /// The last piece of its input.
    last: bool,
}

impl Chunk {
    /// An empty chunk reading into `data`.
    fn new(source: Arc<str>, first_line: u64, data: Vec<u8>) -> Self {
        Chunk {
            source,
            first_line,
            data,
            end: 0,
            lines: Vec::new(),
            unreadable: None,
            last: false,
        }
    }

    /// Line `i` of the chunk as the [`LineReader`] returns it.
    fn line(&self, i: usize) -> Option<Line<'_>> {
        let &(start, end, kind) = self.lines.get(i)?;
        let bytes = self.data.get(start..end)?;
        Some(match kind {
            LineKind::Complete => Line::Complete(bytes),
            LineKind::Unterminated => Line::Unterminated(bytes),
            LineKind::TooLong => Line::TooLong,
        })
    }

    /// The number of lines.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The bytes of the lines held, with their newlines (a line over the limit holds none).
    pub fn byte_len(&self) -> usize {
        self.end
    }

    /// The last piece of its input.
    pub fn is_last(&self) -> bool {
        self.last
    }

    /// The buffer, for [`InputReader::cut_into`] to read another chunk into.
    pub fn into_buffer(self) -> Vec<u8> {
        self.data
    }
}

/// The first line of a pretty-printed document, as read.
#[derive(Debug)]
struct FirstLine {
    n: u64,
    bytes: Vec<u8>,
    terminated: bool,
}

/// The rest of an input that is a pretty-printed document, from its first line on: read whole
/// by [`InputReader::read_rest`].
pub struct Rest {
    source: Arc<str>,
    first_line: FirstLine,
    lines: LineReader<Box<dyn Read + Send>>,
}

/// A piece of an input, from [`InputReader::cut`].
pub enum Piece {
    Lines(Chunk),
    Rest(Box<Rest>),
}

impl Piece {
    /// The last piece of its input.
    pub fn is_last(&self) -> bool {
        match self {
            Piece::Lines(c) => c.last,
            Piece::Rest(_) => true,
        }
    }
}

/// A first line as pretty-printers write it: `{` or `[` alone, or a short line opening a value
/// that continues on the next line.
fn looks_pretty_printed(first: &str) -> bool {
    let t = first.trim();
    t == "{"
        || t == "["
        || ((t.starts_with('{') || t.starts_with('['))
            && t.len() < 200
            && (t.ends_with('{') || t.ends_with('[') || t.ends_with(',')))
}

/// `b` without leading and trailing ASCII white space.
pub fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(input: &[u8], max: usize) -> Vec<Line<'static>> {
        let mut r = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push(match l {
                Line::Complete(b) => Line::Complete(b.to_vec().leak()),
                Line::Unterminated(b) => Line::Unterminated(b.to_vec().leak()),
                Line::TooLong => Line::TooLong,
            });
        }
        out
    }

    #[test]
    fn line_reader_splits_and_keeps_partial_last_line() {
        let got = lines_of(b"a\nbb\r\n\nccc", 100);
        assert_eq!(
            got,
            vec![
                Line::Complete(b"a"),
                Line::Complete(b"bb"),
                Line::Complete(b""),
                Line::Unterminated(b"ccc")
            ]
        );
    }

    #[test]
    fn line_reader_skips_lines_over_the_limit_to_the_next_newline() {
        let mut input = b"ok\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 3 * CHUNK));
        input.extend(b"\nafter\n");
        let got = lines_of(&input, 1000);
        assert_eq!(
            got,
            vec![
                Line::Complete(b"ok"),
                Line::TooLong,
                Line::Complete(b"after")
            ]
        );
        // A long line within the limit is returned whole, across buffer growth.
        let mut input = std::iter::repeat_n(b'y', 2 * CHUNK + 7).collect::<Vec<_>>();
        input.push(b'\n');
        let got = lines_of(&input, 4 * CHUNK);
        assert_eq!(got.len(), 1);
        assert!(matches!(got[0], Line::Complete(b) if b.len() == 2 * CHUNK + 7));
    }

    #[test]
    fn too_long_last_line_without_newline_is_reported() {
        let input = std::iter::repeat_n(b'z', 5000).collect::<Vec<_>>();
        assert_eq!(lines_of(&input, 100), vec![Line::TooLong]);
    }

    fn decode_one(text: &str) -> Result<usize, SkipReason> {
        let mut err = None;
        let n = decode_value_into(text, &mut |d| {
            if let Err((r, _)) = d {
                err = Some(r)
            }
        });
        match err {
            Some(r) => Err(r),
            None => Ok(n),
        }
    }

    #[test]
    fn decoding_classifies_bad_values() {
        let cases: &[(&str, Result<usize, SkipReason>)] = &[
            (r#"{"kind":"Event","verb":"get","auditID":"a"}"#, Ok(1)),
            (r#"{"verb":"get"}"#, Ok(1)),
            (r#"{"kind": 0}"#, Err(SkipReason::NotAnEvent)),
            (
                r#"{"kind":"Pod","verb":"get"}"#,
                Err(SkipReason::NotAnEvent),
            ),
            (r#"{}"#, Err(SkipReason::NotAnEvent)),
            (r#"[1,2]"#, Err(SkipReason::NotAnEvent)),
            (r#""str""#, Err(SkipReason::NotAnEvent)),
            (r#"{"verb":"get""#, Err(SkipReason::Truncated)),
            (r#"{"verb":get}"#, Err(SkipReason::MalformedJson)),
            (
                r#"{"verb":"get","user":{"groups":"x"}}"#,
                Err(SkipReason::NotAnEvent),
            ),
            (
                r#"{"kind":"EventList","items":[{"verb":"get"},{"verb":"list"}]}"#,
                Ok(2),
            ),
            (r#"{"kind":"EventList"}"#, Err(SkipReason::NotAnEvent)),
            // Cloud envelopes (more in envelope.rs).
            (r#"{"timestamp":1,"message":"{\"verb\":\"get\"}"}"#, Ok(1)),
            (
                r#"{"records":[{"category":"kube-audit","properties":{"log":{"verb":"get"}}}]}"#,
                Ok(1),
            ),
            (r#"[{"verb":"get"},{"verb":"list"}]"#, Ok(2)),
            (r#"{"foo":"bar"}"#, Err(SkipReason::NotAnEvent)),
            (r#"{"messageType":"CONTROL_MESSAGE","logEvents":[]}"#, Ok(0)),
            ("H4sIAAAA", Err(SkipReason::Unreadable)),
        ];
        for (text, want) in cases {
            assert_eq!(&decode_one(text), want, "{text}");
        }
    }

    #[test]
    fn escaped_strings_are_decoded_and_plain_ones_borrowed() {
        let text = r#"{"verb":"get","requestURI":"/api?a=1\u0026b=2","user":{"username":"alice"}}"#;
        decode_value_into(text, &mut |d| {
            let ev = d.unwrap();
            assert_eq!(ev.request_uri.as_deref(), Some("/api?a=1&b=2"));
            assert!(matches!(ev.request_uri, Some(std::borrow::Cow::Owned(_))));
            assert!(matches!(
                ev.user.as_ref().unwrap().username,
                Some(std::borrow::Cow::Borrowed(_))
            ));
        });
    }

    fn read_all(bytes: &[u8]) -> (DecodeStats, Vec<String>, Vec<DecodeError>) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.log");
        std::fs::write(&p, bytes).unwrap();
        let reader = InputReader {
            max_line_bytes: 4096,
            ..InputReader::default()
        };
        let mut stats = DecodeStats::default();
        let mut verbs = Vec::new();
        let mut errs = Vec::new();
        reader.read(
            &Input::File(p),
            &mut stats,
            &mut |ev| verbs.push(ev.verb().unwrap_or("").to_string()),
            &mut |e| errs.push(e),
        );
        (stats, verbs, errs)
    }

    #[test]
    fn bad_lines_are_counted_with_their_line_numbers_and_the_scan_goes_on() {
        let mut input = Vec::new();
        input.extend(b"{\"verb\":\"get\"}\n");
        input.extend(b"not json\n");
        input.extend(b"{\"verb\":\"list\",\"x\":\"\xff\"}\n");
        input.extend(b"{\"kind\": 0}\n");
        input.extend(std::iter::repeat_n(b'x', 10_000));
        input.extend(b"\n{\"verb\":\"watch\"}\n");
        input.extend(b"{\"verb\":\"cre");
        let (stats, verbs, errs) = read_all(&input);
        assert_eq!(verbs, ["get", "watch"]);
        let got: Vec<(u64, SkipReason)> = errs.iter().map(|e| (e.line, e.reason)).collect();
        assert_eq!(
            got,
            vec![
                (2, SkipReason::MalformedJson),
                (3, SkipReason::InvalidUtf8),
                (4, SkipReason::NotAnEvent),
                (5, SkipReason::TooLong),
                (7, SkipReason::Truncated)
            ]
        );
        assert_eq!(stats.events, 2);
        assert_eq!(stats.skipped_total(), 5);
        assert!(
            errs[0].to_string().contains("in.log:2: malformed_json"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn pretty_printed_events_and_event_lists_are_read() {
        let pretty = b"{\n  \"kind\": \"EventList\",\n  \"items\": [\n    {\"verb\": \"get\"},\n    {\"verb\": \"delete\"}\n  ]\n}\n{\n \"verb\": \"patch\"\n}\n";
        let (stats, verbs, errs) = read_all(pretty);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(verbs, ["get", "delete", "patch"]);
        assert_eq!(stats.events, 3);
    }

    #[test]
    fn inputs_are_ordered_by_their_first_event_time() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let ev = |t: &str| format!(r#"{{"kind":"Event","verb":"get","stageTimestamp":"{t}"}}"#);
        // The backup's name sorts after the live file, its events come first.
        let live = dir.path().join("a-audit.log");
        std::fs::write(&live, format!("\n{}\n", ev("2026-03-02T10:00:00Z"))).unwrap();
        let old = dir.path().join("b-audit-2026-03-01.log.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(format!("{}\n", ev("2026-03-01T10:00:00Z")).as_bytes())
            .unwrap();
        std::fs::write(&old, gz.finish().unwrap()).unwrap();
        let mut inputs = Input::expand(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(inputs[0].name(), live.display().to_string());
        Input::order_by_first_event(&mut inputs);
        assert_eq!(inputs[0].name(), old.display().to_string());
        assert_eq!(inputs[1].name(), live.display().to_string());
        // A file without a first event time keeps the given order.
        let list = dir.path().join("c-list.json");
        std::fs::write(&list, r#"{"kind":"EventList","items":[]}"#).unwrap();
        let mut inputs = Input::expand(&[dir.path().to_path_buf()]).unwrap();
        Input::order_by_first_event(&mut inputs);
        assert_eq!(inputs[0].name(), live.display().to_string());
    }

    #[test]
    fn gzip_input_is_detected_by_magic_bytes() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"{\"verb\":\"get\"}\n{\"verb\":\"list\"}\n")
            .unwrap();
        let (_, verbs, errs) = read_all(&gz.finish().unwrap());
        assert!(errs.is_empty());
        assert_eq!(verbs, ["get", "list"]);
    }

    #[test]
    fn a_truncated_first_line_does_not_swallow_the_file() {
        let input = b"{\"verb\":\"get\",\"auditID\":\"cut-in-the-midd\n{\"verb\":\"list\"}\n{\"verb\":\"watch\"}\n";
        let (stats, verbs, errs) = read_all(input);
        assert_eq!(verbs, ["list", "watch"]);
        assert_eq!(errs.len(), 1);
        assert_eq!(
            (errs[0].line, errs[0].reason),
            (1, SkipReason::MalformedJson)
        );
        assert_eq!(stats.events, 2);
    }

    #[test]
    fn document_errors_count_lines_from_the_start_of_the_file() {
        let input = b"\n\n{\n  \"kind\": 5\n}\n";
        let (_, _, errs) = read_all(input);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!((errs[0].line, errs[0].reason), (3, SkipReason::NotAnEvent));
    }

    #[test]
    fn pretty_printed_envelopes_are_read_and_omitted_bodies_counted() {
        // `gcloud logging read --format=json`: an indented array of entries.
        let gke = r#"[
  {
    "insertId": "1",
    "logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity",
    "operation": {"id": "a-1", "producer": "k8s.io", "first": true, "last": true},
    "protoPayload": {
      "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
      "authenticationInfo": {"principalEmail": "alice@example.com"},
      "methodName": "io.k8s.core.v1.secrets.get",
      "resourceName": "core/v1/namespaces/default/secrets/db",
      "serviceName": "k8s.io"
    },
    "timestamp": "2026-03-01T10:00:00Z"
  }
]
"#;
        let (stats, verbs, errs) = read_all(gke.as_bytes());
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(verbs, ["get"]);
        assert_eq!(stats.events, 1);

        let big =
            r#"{"verb":"create","auditID":"b","requestObject":"skipped-too-big-size-object"}"#;
        let aks = format!(
            "{{\"records\":[{{\"category\":\"kube-audit\",\"properties\":{{\"log\":{}}}}}]}}\n{{\"verb\":\"get\"}}\n",
            serde_json::to_string(big).unwrap()
        );
        let (stats, verbs, errs) = read_all(aks.as_bytes());
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(verbs, ["create", "get"]);
        assert_eq!(stats.bodies_omitted, 1);
    }

    /// `input` cut into chunks of `chunk_bytes` and decoded chunk by chunk, as `tripline scan`
    /// does on several threads: the stats, the event verbs with their line numbers, the errors
    /// and the chunks (first line, number of lines, bytes held).
    #[allow(clippy::type_complexity)]
    fn cut_all(
        bytes: &[u8],
        chunk_bytes: usize,
    ) -> (
        DecodeStats,
        Vec<(u64, String)>,
        Vec<DecodeError>,
        Vec<(u64, usize, usize)>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.log");
        std::fs::write(&p, bytes).unwrap();
        let reader = InputReader {
            max_line_bytes: 4096,
            ..InputReader::default()
        };
        let mut pieces = Vec::new();
        reader.cut(&Input::File(p), chunk_bytes, &mut |piece| {
            pieces.push(piece);
            true
        });
        assert!(pieces.last().unwrap().is_last());
        assert!(pieces[..pieces.len() - 1].iter().all(|p| !p.is_last()));
        let mut stats = DecodeStats::default();
        let mut verbs = Vec::new();
        let mut errs = Vec::new();
        let mut chunks = Vec::new();
        for piece in pieces {
            match piece {
                Piece::Lines(chunk) => {
                    chunks.push((chunk.first_line, chunk.len(), chunk.byte_len()));
                    let mut again = Vec::new();
                    reader.read_chunk(
                        &chunk,
                        &mut stats,
                        &mut |i, ev| {
                            again.push(i);
                            verbs.push((
                                chunk.first_line + i as u64,
                                ev.verb().unwrap_or("").to_string(),
                            ))
                        },
                        &mut |e| errs.push(e),
                    );
                    // Decoding lines again gives the same events, and counts nothing.
                    let mut lines = again.clone();
                    lines.dedup();
                    let mut seen = Vec::new();
                    reader.reread_lines(&chunk, &lines, &mut |i, _| seen.push(i));
                    assert_eq!(seen, again);
                }
                Piece::Rest(rest) => reader.read_rest(
                    *rest,
                    &mut stats,
                    &mut |ev| verbs.push((0, ev.verb().unwrap_or("").to_string())),
                    &mut |e| errs.push(e),
                ),
            }
        }
        (stats, verbs, errs, chunks)
    }

    /// Errors without their source (the inputs compared lie in different directories).
    fn where_why(errs: &[DecodeError]) -> Vec<(u64, SkipReason, &str)> {
        errs.iter()
            .map(|e| (e.line, e.reason, e.message.as_str()))
            .collect()
    }

    fn assert_same_stats(a: &DecodeStats, b: &DecodeStats) {
        assert_eq!(
            (a.events, a.lines, a.bytes, a.skipped, a.bodies_omitted),
            (b.events, b.lines, b.bytes, b.skipped, b.bodies_omitted)
        );
    }

    #[test]
    fn chunks_decode_to_what_the_whole_input_gives_whatever_their_size() {
        let mut input = b"\xEF\xBB\xBF{\"verb\":\"get\"}\r\n\n  \n".to_vec();
        input.extend(b"not json\n");
        input.extend(b"{\"verb\":\"list\",\"x\":\"\xff\"}\n");
        input.extend(b"{\"kind\":\"EventList\",\"items\":[{\"verb\":\"a\"},{\"verb\":\"b\"}]}\n");
        input.extend(std::iter::repeat_n(b'x', 10_000));
        input.extend(b"\n{\"verb\":\"patch\",\"note\":\"");
        // Longer than most chunks below, within the line limit.
        input.extend(std::iter::repeat_n(b'n', 3000));
        input.extend(b"\"}\n{\"kind\": 0}\n{\"verb\":\"watch\"}\n{\"verb\":\"cre");
        let (want_stats, want_verbs, want_errs) = read_all(&input);
        assert_eq!(want_stats.skipped_total(), 5);
        for chunk_bytes in [1, 2, 15, 16, 17, 100, 3000, 3025, 1 << 20] {
            let (stats, verbs, errs, chunks) = cut_all(&input, chunk_bytes);
            assert_same_stats(&stats, &want_stats);
            assert_eq!(
                where_why(&errs),
                where_why(&want_errs),
                "chunks of {chunk_bytes} bytes"
            );
            let verbs_only: Vec<&String> = verbs.iter().map(|(_, v)| v).collect();
            assert_eq!(verbs_only, want_verbs.iter().collect::<Vec<_>>());
            // Lines numbered on from chunk to chunk; none is empty but the last one.
            let mut next = 1;
            for (i, &(first, lines, bytes)) in chunks.iter().enumerate() {
                assert_eq!(first, next, "chunks of {chunk_bytes} bytes: {chunks:?}");
                next += lines as u64;
                // A chunk is sent when its lines fill it.
                if i + 1 < chunks.len() {
                    assert!(lines > 0 && bytes >= chunk_bytes, "{chunks:?}");
                }
            }
            assert_eq!(next - 1, 11, "{chunks:?}");
        }
        // The events' lines: the BOM line, the EventList's two, after the long lines.
        let (_, verbs, _, chunks) = cut_all(&input, 16);
        let at: Vec<(u64, &str)> = verbs.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(
            at,
            [(1, "get"), (6, "a"), (6, "b"), (8, "patch"), (10, "watch")]
        );
        // A line longer than a chunk travels whole and ends its chunk (8); the line over the
        // limit (7) holds no more than what was read after the limit was passed.
        assert_eq!((chunks[3].0, chunks[3].1), (7, 1), "{chunks:?}");
        assert!(chunks[3].2 < 4096, "{chunks:?}");
        assert_eq!(chunks[4], (8, 1, 3027), "{chunks:?}");
        assert_eq!(chunks[5].0, 9, "{chunks:?}");
    }

    #[test]
    fn a_pretty_printed_input_is_cut_into_its_leading_lines_and_the_rest() {
        let pretty = b"\n\n{\n  \"kind\": \"EventList\",\n  \"items\": [\n    {\"verb\": \"get\"},\n    {\"verb\": \"delete\"}\n  ]\n}\n{\n \"verb\": \"patch\"\n}\n{\n  \"kind\": 5\n}\n";
        let (want_stats, want_verbs, want_errs) = read_all(pretty);
        assert_eq!(want_verbs, ["get", "delete", "patch"]);
        assert_eq!(want_errs.len(), 1);
        for chunk_bytes in [1, 1 << 20] {
            let (stats, verbs, errs, chunks) = cut_all(pretty, chunk_bytes);
            assert_same_stats(&stats, &want_stats);
            assert_eq!(where_why(&errs), where_why(&want_errs));
            let verbs: Vec<String> = verbs.into_iter().map(|(_, v)| v).collect();
            assert_eq!(verbs, want_verbs);
            // The two blank lines before the document travel as chunks.
            let lines: usize = chunks.iter().map(|c| c.1).sum();
            assert_eq!(lines, 2, "{chunks:?}");
        }
    }

    #[test]
    fn an_input_that_cannot_be_opened_is_one_chunk_with_its_error() {
        let reader = InputReader::default();
        let missing = Input::File(PathBuf::from("/nonexistent/tripline/audit.log"));
        let mut pieces = Vec::new();
        reader.cut(&missing, 1 << 20, &mut |p| {
            pieces.push(p);
            true
        });
        let [Piece::Lines(chunk)] = &pieces[..] else {
            panic!("one chunk expected")
        };
        assert!(chunk.is_last() && chunk.is_empty());
        let mut stats = DecodeStats::default();
        let mut errs = Vec::new();
        reader.read_chunk(chunk, &mut stats, &mut |_, _| {}, &mut |e| errs.push(e));
        let mut want_stats = DecodeStats::default();
        let mut want = Vec::new();
        reader.read(&missing, &mut want_stats, &mut |_| {}, &mut |e| {
            want.push(e)
        });
        assert_eq!(errs, want);
        assert_same_stats(&stats, &want_stats);
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        let (_, verbs, errs) = read_all(b"\xEF\xBB\xBF{\"verb\":\"get\"}\n");
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(verbs, ["get"]);
    }
}
