//! A connection to the stub before and during a gdb session. Its first bytes decide whether it is gdb
//! at all: a port probe (connect and close, a newline), a scanner's HTTP request or half a packet is
//! not, and must neither take the session nor release a guest held for gdb. The bytes read to decide
//! are handed to gdbstub first, so the session sees the connection whole.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
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

/// gdbstub's connection: the opening bytes already read, then the stream.
pub struct Session {
    pending: VecDeque<u8>,
    inner: Box<dyn ConnectionExt<Error = io::Error>>,
}

impl Session {
    pub fn new(opening: Vec<u8>, stream: Stream) -> Self {
        Self { pending: opening.into(), inner: stream.into_connection() }
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
        match self.pending.pop_front() {
            Some(b) => Ok(b),
            None => self.inner.read(),
        }
    }
    fn peek(&mut self) -> io::Result<Option<u8>> {
        match self.pending.front() {
            Some(b) => Ok(Some(*b)),
            None => self.inner.peek(),
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
}
