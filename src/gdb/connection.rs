//! A connection to the stub before and during a gdb session. Its first bytes decide whether it is gdb
//! at all: a port probe (connect and close, a newline), a scanner's HTTP request or half a packet is
//! not, and must neither take the session nor release a guest held for gdb. The bytes read to decide
//! are handed to gdbstub first, so the session sees the connection whole.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gdbstub::conn::{Connection, ConnectionExt};

/// The longest opening packet taken for gdb's (gdb's `qSupported` is a few hundred bytes).
const MAX_OPENING: usize = 64 * 1024;
/// How long a new connection may take to send its first packet.
pub const OPENING_TIMEOUT: Duration = Duration::from_secs(10);

/// An accepted connection.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }

    fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    /// Closes the connection once gdb has read what was sent: no more from here, then whatever gdb
    /// still sends (its ack) is read, until it closes or half a second passes. Closing at once
    /// would fail gdb's write of that ack ("Broken pipe") and spoil a clean detach or exit.
    pub fn close_gently(mut self) {
        let _ = self.shutdown_write();
        // gdbstub's peeks leave the socket non-blocking (the flag is the socket's, not the fd's).
        let _ = self.set_nonblocking(false);
        let _ = self.set_read_timeout(Some(Duration::from_millis(500)));
        let mut sink = [0u8; 64];
        while matches!(Read::read(&mut self, &mut sink), Ok(n) if n > 0) {}
    }

    fn set_nonblocking(&self, yes: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(yes),
            Stream::Unix(s) => s.set_nonblocking(yes),
        }
    }

    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        }
    }

    /// gdbstub's connection over this stream.
    fn into_connection(self) -> Box<dyn ConnectionExt<Error = io::Error>> {
        match self {
            Stream::Tcp(s) => Box::new(s),
            Stream::Unix(s) => Box::new(s),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => Read::read(s, buf),
            Stream::Unix(s) => Read::read(s, buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => Write::write(s, buf),
            Stream::Unix(s) => Write::write(s, buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => Write::flush(s),
            Stream::Unix(s) => Write::flush(s),
        }
    }
}

/// What a new connection opened with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opening {
    /// A complete packet with a valid checksum (and any acks before it): gdb.
    Gdb(Vec<u8>),
    /// Not gdb: what arrived, and why it does not count.
    NotGdb { bytes: Vec<u8>, why: &'static str },
}

impl Opening {
    /// What arrived, for a log line: its length and its first bytes, escaped.
    pub fn describe(bytes: &[u8]) -> String {
        let shown: String =
            bytes.iter().take(40).flat_map(|b| std::ascii::escape_default(*b)).map(char::from).collect();
        let more = if bytes.len() > 40 { "..." } else { "" };
        match bytes.len() {
            0 => "no bytes".to_string(),
            1 => format!("1 byte: \"{shown}\""),
            n => format!("{n} bytes: \"{shown}{more}\""),
        }
    }
}

/// Reads a connection's opening: acks (`+`), then one whole packet `$data#cs` whose checksum holds.
/// Anything else first, a close or a read error (the timeout) before the packet is complete, or a
/// packet too long to be gdb's is not gdb.
pub fn read_opening(stream: &mut impl Read) -> Opening {
    let mut bytes = Vec::new();
    let mut byte = [0u8];
    let not_gdb = |bytes: Vec<u8>, why| Opening::NotGdb { bytes, why };
    let mut next = |bytes: &mut Vec<u8>| match stream.read(&mut byte) {
        Ok(1) => {
            bytes.push(byte[0]);
            Some(byte[0])
        }
        _ => None,
    };
    let closed = "closed (or went quiet) before a complete gdb packet";
    loop {
        match next(&mut bytes) {
            Some(b'+') => continue,
            Some(b'$') => break,
            Some(_) => return not_gdb(bytes, "sent something that is not a gdb packet"),
            None => return not_gdb(bytes, closed),
        }
    }
    let start = bytes.len();
    let mut sum: u8 = 0;
    loop {
        match next(&mut bytes) {
            Some(b'#') => break,
            Some(b) => sum = sum.wrapping_add(b),
            None => return not_gdb(bytes, closed),
        }
        if bytes.len() - start > MAX_OPENING {
            return not_gdb(bytes, "sent a packet too long to be gdb's");
        }
    }
    let (Some(hi), Some(lo)) = (next(&mut bytes), next(&mut bytes)) else { return not_gdb(bytes, closed) };
    let hex = |c: u8| (c as char).to_digit(16);
    match (hex(hi), hex(lo)) {
        (Some(h), Some(l)) if (h * 16 + l) as u8 == sum => Opening::Gdb(bytes),
        _ => not_gdb(bytes, "sent a packet whose checksum does not match"),
    }
}

/// The longest packet body passed to gdbstub (its packet buffer is 4096 bytes).
const MAX_PACKET: usize = 4092;

/// A packet as gdb's protocol frames it, after an ack of the packet it answers.
pub fn acked_packet(data: &str) -> Vec<u8> {
    let sum = data.bytes().fold(0u8, |s, b| s.wrapping_add(b));
    format!("+${data}#{sum:02x}").into_bytes()
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Why a memory write (`M addr,len:hex` or `X addr,len:binary`) is malformed, if it is: its data
/// must be exactly the length it declares (gdbstub would write what it got).
fn malformed_write(body: &[u8]) -> Option<&'static str> {
    let (kind, rest) = body.split_first()?;
    if !matches!(kind, b'M' | b'X') {
        return None;
    }
    let colon = rest.iter().position(|&b| b == b':')?;
    let (head, data) = (&rest[..colon], &rest[colon + 1..]);
    let len_hex = head.split(|&b| b == b',').nth(1).unwrap_or(&[]);
    let len = std::str::from_utf8(len_hex).ok().and_then(|t| usize::from_str_radix(t, 16).ok());
    let Some(len) = len else { return Some("its length is not a hex number") };
    if *kind == b'M' {
        if data.len() % 2 != 0 || data.iter().any(|&b| hex_digit(b).is_none()) {
            return Some("its data is not whole hex bytes");
        }
        return (data.len() / 2 != len).then_some("its data is not the length it declares");
    }
    // X: binary, with `}` escaping the byte after it.
    let escapes = data.iter().filter(|&&b| b == b'}').count();
    (data.len() - escapes != len || data.last() == Some(&b'}')).then_some("its data is not the length it declares")
}

/// gdbstub's connection. Every packet from gdb is read whole and checked before gdbstub sees it: a
/// bad checksum is answered `-` (gdb sends the packet again) instead of ending the session; a
/// memory write whose data does not match its declared length is refused (`E16`) instead of half
/// done; an oversized packet is refused instead of overflowing gdbstub's buffer. The packets
/// passed on are counted, so the target can tell one `m` request from the next.
pub struct Session {
    /// Bytes read from the stream but not yet looked at (the opening).
    raw: VecDeque<u8>,
    /// Checked bytes, for gdbstub.
    pending: VecDeque<u8>,
    inner: Box<dyn ConnectionExt<Error = io::Error>>,
    packets: Arc<AtomicU64>,
    /// The same socket, to close it gracefully at the end (see `Drop`).
    closing: Option<Stream>,
}

impl Drop for Session {
    /// gdb acks the stub's last reply (the `OK` to a detach, the `W` of an exit): see
    /// [`Stream::close_gently`].
    fn drop(&mut self) {
        if let Some(stream) = self.closing.take() {
            stream.close_gently();
        }
    }
}

impl Session {
    /// A session over `stream`, whose `opening` was read already; `packets` counts the packets
    /// gdbstub gets.
    pub fn new(opening: Vec<u8>, stream: Stream, packets: Arc<AtomicU64>) -> Self {
        let closing = stream.try_clone().ok();
        Self { raw: opening.into(), pending: VecDeque::new(), inner: stream.into_connection(), packets, closing }
    }

    fn next_raw(&mut self) -> io::Result<u8> {
        match self.raw.pop_front() {
            Some(b) => Ok(b),
            None => self.inner.read(),
        }
    }

    fn reply(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)?;
        self.inner.flush()
    }

    /// Reads the rest of a packet whose `$` was read; queues it for gdbstub when it passes, else
    /// answers it. Returns whether it passed.
    fn take_packet(&mut self) -> io::Result<bool> {
        let mut body = Vec::new();
        let mut oversized = false;
        loop {
            match self.next_raw()? {
                b'#' => break,
                _ if body.len() >= MAX_PACKET => oversized = true,
                b => body.push(b),
            }
        }
        let (hi, lo) = (self.next_raw()?, self.next_raw()?);
        let sum = body.iter().fold(0u8, |s, b| s.wrapping_add(*b));
        let checksum = hex_digit(hi).zip(hex_digit(lo)).map(|(h, l)| h * 16 + l);
        if oversized {
            self.reply(&acked_packet("E22"))?;
            return Ok(false);
        }
        if checksum != Some(sum) {
            self.reply(b"-")?;
            return Ok(false);
        }
        if malformed_write(&body).is_some() {
            self.reply(&acked_packet("E16"))?;
            return Ok(false);
        }
        self.packets.fetch_add(1, Ordering::AcqRel);
        self.pending.push_back(b'$');
        self.pending.extend(body);
        self.pending.extend([b'#', hi, lo]);
        Ok(true)
    }
}

impl Connection for Session {
    type Error = io::Error;

    fn write(&mut self, byte: u8) -> io::Result<()> {
        self.inner.write(byte)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
    fn on_session_start(&mut self) -> io::Result<()> {
        self.inner.on_session_start()
    }
}

impl ConnectionExt for Session {
    fn read(&mut self) -> io::Result<u8> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Ok(b);
            }
            match self.next_raw()? {
                b'$' => {
                    self.take_packet()?;
                }
                b => return Ok(b),
            }
        }
    }

    fn peek(&mut self) -> io::Result<Option<u8>> {
        loop {
            if let Some(b) = self.pending.front() {
                return Ok(Some(*b));
            }
            let next = match self.raw.front() {
                Some(b) => Some(*b),
                None => self.inner.peek()?,
            };
            match next {
                // A packet is read whole (gdb sends it at once) and checked before it is shown.
                Some(b'$') => {
                    self.next_raw()?;
                    self.take_packet()?;
                }
                other => return Ok(other),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opening(bytes: &[u8]) -> Opening {
        read_opening(&mut &bytes[..])
    }

    #[test]
    fn gdb_opens_with_a_whole_packet() {
        assert_eq!(opening(b"+$?#3f"), Opening::Gdb(b"+$?#3f".to_vec()));
        assert_eq!(opening(b"$?#3Fmore"), Opening::Gdb(b"$?#3F".to_vec()), "only the first packet is read");
        let data = "qSupported:multiprocess+;swbreak+";
        let sum = data.bytes().fold(0u8, |s, b| s.wrapping_add(b));
        let q = format!("+${data}#{sum:02x}");
        assert_eq!(opening(q.as_bytes()), Opening::Gdb(q.into_bytes()));
        let bad = format!("+${data}#{:02x}", sum.wrapping_add(1));
        assert!(matches!(opening(bad.as_bytes()), Opening::NotGdb { .. }));
    }

    #[test]
    fn probes_scanners_and_half_packets_are_not_gdb() {
        for (bytes, why) in [
            (&b""[..], "closed"),
            (b"\n", "not a gdb packet"),
            (b"GET / HTTP/1.0\r\n\r\n", "not a gdb packet"),
            (b"$qSupported:multipro", "closed"),
            (b"$?#3", "closed"),
            (b"$?#00", "checksum"),
            (b"$garbage#zz", "checksum"),
        ] {
            match opening(bytes) {
                Opening::NotGdb { why: w, .. } => assert!(w.contains(why), "{bytes:?}: {w}"),
                other => panic!("{bytes:?} taken for gdb: {other:?}"),
            }
        }
        let mut huge = b"$".to_vec();
        huge.extend(std::iter::repeat_n(b'A', MAX_OPENING + 10));
        assert!(matches!(opening(&huge), Opening::NotGdb { why, .. } if why.contains("too long")));
    }

    #[test]
    fn what_arrived_is_described_in_one_line() {
        assert_eq!(Opening::describe(b""), "no bytes");
        assert_eq!(Opening::describe(b"\n"), "1 byte: \"\\n\"");
        let long = Opening::describe(&[b'A'; 100]);
        assert!(long.starts_with("100 bytes: \"AAAA") && long.ends_with("...\"") && !long.contains('\n'));
    }

    #[test]
    fn memory_writes_must_match_their_declared_length() {
        assert_eq!(malformed_write(b"M100000,1:00"), None);
        assert_eq!(malformed_write(b"M100000,4:00112233"), None);
        assert!(malformed_write(b"M100000,1:0011223344").is_some(), "5 bytes for 1");
        assert!(malformed_write(b"M100000,1:0").is_some(), "odd hex");
        assert!(malformed_write(b"M100000,1:zz").is_some());
        assert!(malformed_write(b"M100000,q:00").is_some());
        assert_eq!(malformed_write(b"X100000,2:ab"), None);
        assert_eq!(malformed_write(b"X100000,1:}]"), None, "an escaped byte");
        assert!(malformed_write(b"X100000,1:ab").is_some());
        assert_eq!(malformed_write(b"m100000,10"), None, "reads are not writes");
        assert_eq!(malformed_write(b"qSupported:xmlRegisters=i386"), None);
    }
}
