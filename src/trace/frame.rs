//! An Ethernet frame in one line, the way `tcpdump -e -n` prints it: the link addresses and type,
//! then ARP's who-has/is-at, IPv4 or IPv6 addresses, ICMP's type, UDP and TCP ports, TCP's flags,
//! and lengths. Every field is read within the bytes there are: a short or odd frame says where it
//! stops (`[|ip]`, as tcpdump does), it is never an error.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Which way a frame went: to the guest (received on its RX queue) or from it (TX).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameDir {
    Rx,
    Tx,
}

impl FrameDir {
    pub fn name(self) -> &'static str {
        match self {
            FrameDir::Rx => "rx",
            FrameDir::Tx => "tx",
        }
    }
}

const ETH_HEADER: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_IPV6: u16 = 0x86dd;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn ipv4_at(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    Some(Ipv4Addr::from(<[u8; 4]>::try_from(b.get(at..at + 4)?).ok()?))
}

/// A MAC address as `52:54:00:12:34:56`.
pub fn mac(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

/// The frame `bytes` (of `len` bytes on the wire: more than `bytes` when it was cut) in one line.
pub fn summary(bytes: &[u8], len: usize) -> String {
    let Some(header) = bytes.get(..ETH_HEADER) else {
        return format!("[|ether] length {len}");
    };
    let mut s = format!("{} > {}", mac(&header[6..12]), mac(&header[0..6]));
    let (mut ethertype, mut at) = (u16_at(header, 12).unwrap_or(0), ETH_HEADER);
    if ethertype == ETHERTYPE_VLAN {
        match (u16_at(bytes, at), u16_at(bytes, at + 2)) {
            (Some(tci), Some(inner)) => {
                let _ = write!(s, ", vlan {}", tci & 0xfff);
                (ethertype, at) = (inner, at + 4);
            }
            _ => return s + ", 802.1Q [|vlan]",
        }
    }
    let payload = &bytes[at..];
    let _ = write!(s, ", length {len}: ");
    match ethertype {
        ETHERTYPE_ARP => s.push_str(&arp(payload)),
        ETHERTYPE_IPV4 => s.push_str(&ipv4(payload)),
        ETHERTYPE_IPV6 => s.push_str(&ipv6(payload)),
        t if t <= 1500 => {
            let _ = write!(s, "802.3, length {t}");
        }
        t => {
            let _ = write!(s, "ethertype {t:#06x}");
        }
    }
    s
}

fn arp(p: &[u8]) -> String {
    // Ethernet and IPv4 only: hardware type 1, protocol 0x0800, lengths 6 and 4.
    let (Some(1), Some(ETHERTYPE_IPV4), Some(&6), Some(&4), Some(op)) =
        (u16_at(p, 0), u16_at(p, 2), p.get(4), p.get(5), u16_at(p, 6))
    else {
        return "ARP, [|arp]".into();
    };
    let (Some(sha), Some(spa), Some(tpa)) = (p.get(8..14), ipv4_at(p, 14), ipv4_at(p, 24)) else {
        return "ARP, [|arp]".into();
    };
    match op {
        1 => format!("ARP, Request who-has {tpa} tell {spa}, length {}", p.len()),
        2 => format!("ARP, Reply {spa} is-at {}, length {}", mac(sha), p.len()),
        op => format!("ARP, opcode {op}, length {}", p.len()),
    }
}

fn ipv4(p: &[u8]) -> String {
    let (Some(&vihl), Some(total), Some(frag), Some(&proto), Some(src), Some(dst)) =
        (p.first(), u16_at(p, 2), u16_at(p, 6), p.get(9), ipv4_at(p, 12), ipv4_at(p, 16))
    else {
        return "IP [|ip]".into();
    };
    let ihl = (vihl & 0xf) as usize * 4;
    if vihl >> 4 != 4 || ihl < 20 {
        return format!("IP bad header (version {}, header length {ihl})", vihl >> 4);
    }
    let end = (total as usize).clamp(ihl, p.len().max(ihl));
    let body = p.get(ihl..end).unwrap_or(&[]);
    let offset = (frag & 0x1fff) as usize * 8;
    if offset != 0 {
        return format!("IP {src} > {dst}: ip-proto-{proto} (fragment at {offset}), length {total}");
    }
    transport(proto, &src.to_string(), &dst.to_string(), body, "IP", total as usize)
}

fn ipv6(p: &[u8]) -> String {
    let (Some(plen), Some(&next), Some(src), Some(dst)) = (
        u16_at(p, 4),
        p.get(6),
        p.get(8..24).and_then(|b| <[u8; 16]>::try_from(b).ok()).map(Ipv6Addr::from),
        p.get(24..40).and_then(|b| <[u8; 16]>::try_from(b).ok()).map(Ipv6Addr::from),
    ) else {
        return "IP6 [|ip6]".into();
    };
    let (mut next, mut body) = (next, &p[40..(40 + plen as usize).min(p.len())]);
    // Extension headers (hop-by-hop, routing, destination options) before the transport's.
    while matches!(next, 0 | 43 | 60) {
        match (body.first(), body.get(1)) {
            (Some(&n), Some(&len)) if body.len() >= (len as usize + 1) * 8 => {
                (next, body) = (n, &body[(len as usize + 1) * 8..]);
            }
            _ => return format!("IP6 {src} > {dst}: [|ip6 extension header]"),
        }
    }
    transport(next, &src.to_string(), &dst.to_string(), body, "IP6", plen as usize)
}

/// The transport header: ICMP, ICMPv6, UDP, TCP, or the protocol number.
fn transport(proto: u8, src: &str, dst: &str, body: &[u8], ip: &str, length: usize) -> String {
    let ports = |b: &[u8]| u16_at(b, 0).zip(u16_at(b, 2));
    match proto {
        1 => format!("{ip} {src} > {dst}: {}", icmp(body)),
        58 => format!("{ip} {src} > {dst}: {}", icmp6(body)),
        17 => match (ports(body), u16_at(body, 4)) {
            (Some((sp, dp)), Some(ulen)) => {
                format!("{ip} {src}.{sp} > {dst}.{dp}: UDP, length {}", (ulen as usize).saturating_sub(8))
            }
            _ => format!("{ip} {src} > {dst}: UDP [|udp]"),
        },
        6 => match (ports(body), u32_at(body, 4), u32_at(body, 8), body.get(12..14), u16_at(body, 14)) {
            (Some((sp, dp)), Some(seq), Some(ack), Some(&[off, flags]), Some(win)) => {
                let data = body.len().saturating_sub((off >> 4) as usize * 4);
                let mut s = format!("{ip} {src}.{sp} > {dst}.{dp}: Flags [{}], seq {seq}", tcp_flags(flags));
                if flags & 0x10 != 0 {
                    let _ = write!(s, ", ack {ack}");
                }
                let _ = write!(s, ", win {win}, length {data}");
                s
            }
            _ => format!("{ip} {src} > {dst}: TCP [|tcp]"),
        },
        p => format!("{ip} {src} > {dst}: ip-proto-{p}, length {length}"),
    }
}

/// TCP flags as tcpdump spells them: `S`, `S.`, `P.`, `F.`, `R`.
fn tcp_flags(flags: u8) -> String {
    let mut s: String = [(0x01, 'F'), (0x02, 'S'), (0x04, 'R'), (0x08, 'P'), (0x20, 'U')]
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, c)| *c)
        .collect();
    if flags & 0x10 != 0 {
        s.push('.');
    }
    if s.is_empty() { "none".into() } else { s }
}

fn icmp(b: &[u8]) -> String {
    let (Some(&kind), Some(&code)) = (b.first(), b.get(1)) else {
        return "ICMP [|icmp]".into();
    };
    let echo = |what: &str| match (u16_at(b, 4), u16_at(b, 6)) {
        (Some(id), Some(seq)) => format!("ICMP echo {what}, id {id}, seq {seq}, length {}", b.len()),
        _ => format!("ICMP echo {what} [|icmp]"),
    };
    match (kind, code) {
        (8, _) => echo("request"),
        (0, _) => echo("reply"),
        (3, code) => format!("ICMP destination unreachable (code {code}), length {}", b.len()),
        (11, _) => format!("ICMP time exceeded in-transit, length {}", b.len()),
        (kind, code) => format!("ICMP type {kind} code {code}, length {}", b.len()),
    }
}

fn icmp6(b: &[u8]) -> String {
    let Some(&kind) = b.first() else {
        return "ICMP6 [|icmp6]".into();
    };
    let what = match kind {
        1 => "destination unreachable",
        3 => "time exceeded",
        128 => "echo request",
        129 => "echo reply",
        133 => "router solicitation",
        134 => "router advertisement",
        135 => "neighbor solicitation",
        136 => "neighbor advertisement",
        143 => "multicast listener report v2",
        _ => return format!("ICMP6, type {kind}, length {}", b.len()),
    };
    format!("ICMP6, {what}, length {}", b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        f.extend(ethertype.to_be_bytes());
        f.extend(payload);
        f
    }

    fn ipv4_packet(proto: u8, body: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0, 10, 0, 2, 2, 10, 0, 2, 15];
        p[2..4].copy_from_slice(&((20 + body.len()) as u16).to_be_bytes());
        p.extend(body);
        p
    }

    #[test]
    fn frames_read_as_tcpdump_prints_them() {
        let mut arp_req = vec![0, 1, 8, 0, 6, 4, 0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 10, 0, 2, 2];
        arp_req.extend([0; 6]);
        arp_req.extend([10, 0, 2, 15]);
        let f = eth(ETHERTYPE_ARP, &arp_req);
        assert_eq!(
            summary(&f, f.len()),
            "52:54:00:12:34:56 > ff:ff:ff:ff:ff:ff, length 42: ARP, Request who-has 10.0.2.15 tell 10.0.2.2, length 28"
        );
        let mut echo = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
        echo.extend([0xaa; 56]);
        let f = eth(ETHERTYPE_IPV4, &ipv4_packet(1, &echo));
        assert!(
            summary(&f, f.len()).ends_with("IP 10.0.2.2 > 10.0.2.15: ICMP echo request, id 4660, seq 1, length 64")
        );
        let udp = [0x1a, 0x09, 0x1a, 0x0a, 0, 13, 0, 0, b'h', b'e', b'l', b'l', b'o'];
        let f = eth(ETHERTYPE_IPV4, &ipv4_packet(17, &udp));
        assert!(summary(&f, f.len()).ends_with("IP 10.0.2.2.6665 > 10.0.2.15.6666: UDP, length 5"));
        let syn = [0x9c, 0x40, 0, 22, 0, 0, 0, 7, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0];
        let f = eth(ETHERTYPE_IPV4, &ipv4_packet(6, &syn));
        assert!(
            summary(&f, f.len()).ends_with("IP 10.0.2.2.40000 > 10.0.2.15.22: Flags [S], seq 7, win 64240, length 0")
        );
    }

    #[test]
    fn short_and_odd_frames_say_where_they_stop() {
        assert_eq!(summary(&[1, 2, 3], 3), "[|ether] length 3");
        let f = eth(ETHERTYPE_IPV4, &[0x45, 0]);
        assert!(summary(&f, 16).ends_with("IP [|ip]"));
        let f = eth(ETHERTYPE_IPV4, &ipv4_packet(6, &[0, 1]));
        assert!(summary(&f, f.len()).ends_with("TCP [|tcp]"));
        let f = eth(0x88cc, &[]);
        assert!(summary(&f, f.len()).ends_with("ethertype 0x88cc"));
        let mut v6 = vec![0x60, 0, 0, 0, 0, 8, 58, 255];
        v6.extend(Ipv6Addr::LOCALHOST.octets());
        v6.extend(Ipv6Addr::LOCALHOST.octets());
        v6.extend([135, 0, 0, 0, 0, 0, 0, 0]);
        let f = eth(ETHERTYPE_IPV6, &v6);
        assert!(summary(&f, f.len()).ends_with("IP6 ::1 > ::1: ICMP6, neighbor solicitation, length 8"));
        // A total length beyond the bytes there are, a header length past them: no panic.
        let mut bad = ipv4_packet(17, &[0; 8]);
        bad[2..4].copy_from_slice(&9000u16.to_be_bytes());
        bad[0] = 0x4f;
        summary(&eth(ETHERTYPE_IPV4, &bad), 9000);
    }
}
