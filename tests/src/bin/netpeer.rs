//! Both ends of the network tests' traffic, run inside a test namespace with nsenter.
//!
//!   netpeer udp-sink ADDR IDLE_MS    count datagrams until none came for IDLE_MS; print the count
//!                                    (0 when none came within 8 s)
//!   netpeer udp-send ADDR N          send N datagrams, paced; print "sent N"
//!   netpeer tcp-sink ADDR            accept one connection, read it to the end; print the bytes
//!   netpeer tcp-send ADDR BYTES      send BYTES over TCP; print the retransmissions (TCP_INFO)
//!   netpeer tcp-intact ADDR          as tcp-sink, checking a tcp-send's bytes: print the bytes and
//!                                    how many arrived altered
//!   netpeer udp-bursts ADDR IDLE_MS  as udp-sink, from a udp-send's sequence numbers: print the
//!                                    count and the mean length of the runs of lost datagrams
//!   netpeer udp-intact ADDR IDLE_MS  as udp-sink, checking each of a udp-send's datagrams: print
//!                                    the count and how many arrived altered
//!   netpeer udp-echo ADDR            send every datagram back to where it came from, forever
//!   netpeer udp-rtt ADDR N GAP_MS    N probes GAP_MS apart to an echo server; print each round
//!                                    trip in microseconds on one line (a lost probe: 0)
//!   netpeer dns-nocsum ADDR          an IPv4 DNS server that answers every query with one A
//!                                    record, 10.9.9.9, sent without a UDP checksum (SO_NO_CHECK)
//!   netpeer udp-checksums ADDR       print the UDP checksum field (4 hex digits) of every IPv4
//!                                    UDP packet arriving from ADDR's port, as a raw socket sees
//!                                    it before UDP checks it; forever
//!
//! Sinks print "ready" once they listen.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd as _,
    thread,
    time::{Duration, Instant},
};

/// Datagrams per millisecond: slow enough that the receiver's socket never overflows, so every
/// loss the tests see is the fault's. `NETPEER_UDP_PER_MS` lowers it for slow (emulated)
/// machines, where a receiver behind a container runtime falls behind.
const UDP_PER_MS: u32 = 20;

fn udp_per_ms() -> u32 {
    std::env::var("NETPEER_UDP_PER_MS")
        .ok()
        .and_then(|rate| rate.parse().ok())
        .filter(|&rate| rate > 0)
        .unwrap_or(UDP_PER_MS)
}
/// How long a sink waits for its first datagram before it reports that none arrived: long
/// enough for a sender started through nsenter on a slow emulated machine.
const FIRST_DATAGRAM_WAIT: Duration = Duration::from_secs(8);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| {
        args.get(i)
            .unwrap_or_else(|| panic!("usage: see netpeer.rs"))
    };
    let addr: SocketAddr = arg(2).parse().expect("ADDR is ip:port or [ip6]:port");
    match arg(1).as_str() {
        "udp-sink" => udp_sink(
            addr,
            Duration::from_millis(arg(3).parse().expect("IDLE_MS")),
        ),
        "udp-send" => udp_send(addr, arg(3).parse().expect("N")),
        "tcp-sink" => tcp_sink(addr),
        "tcp-intact" => tcp_intact(addr),
        "tcp-send" => tcp_send(addr, arg(3).parse().expect("BYTES")),
        "udp-echo" => udp_echo(addr),
        "udp-intact" => udp_intact(
            addr,
            Duration::from_millis(arg(3).parse().expect("IDLE_MS")),
        ),
        "udp-bursts" => udp_bursts(
            addr,
            Duration::from_millis(arg(3).parse().expect("IDLE_MS")),
        ),
        "udp-rtt" => udp_rtt(
            addr,
            arg(3).parse().expect("N"),
            Duration::from_millis(arg(4).parse().expect("GAP_MS")),
        ),
        "dns-nocsum" => dns_nocsum(addr),
        "udp-checksums" => udp_checksums(addr.port()),
        other => panic!("unknown mode {other}"),
    }
}

fn dns_nocsum(addr: SocketAddr) {
    let socket = UdpSocket::bind(addr).expect("bind");
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with an int we own and its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            (&raw const one).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_NO_CHECK: {}", std::io::Error::last_os_error());
    println!("ready");
    let mut buf = [0u8; 512];
    loop {
        let (n, from) = socket.recv_from(&mut buf).expect("recv");
        if n < 12 {
            continue;
        }
        // The query, turned into a response with one answer: QR and RA set, ANCOUNT 1, then a
        // pointer to the question's name, type A, class IN, TTL 60, 4 bytes of address.
        let mut answer = buf[..n].to_vec();
        answer[2] |= 0x80;
        answer[3] = 0x80;
        answer[6..8].copy_from_slice(&1u16.to_be_bytes());
        answer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 9, 9, 9]);
        socket.send_to(&answer, from).expect("send");
    }
}

fn udp_checksums(port: u16) {
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_UDP) };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    println!("ready");
    let mut buf = [0u8; 2048];
    loop {
        // SAFETY: recv(2) into a buffer we own, on the socket made above.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        assert!(n >= 0, "recv: {}", std::io::Error::last_os_error());
        let packet = &buf[..n as usize];
        // The IPv4 header (its length in the low nibble), then UDP: ports, length, checksum.
        let udp = usize::from(packet[0] & 0x0f) * 4;
        if packet.len() < udp + 8 || u16::from_be_bytes([packet[udp], packet[udp + 1]]) != port {
            continue;
        }
        println!("{:02x}{:02x}", packet[udp + 6], packet[udp + 7]);
        let _ = std::io::stdout().flush();
    }
}

fn udp_sink(addr: SocketAddr, idle: Duration) {
    let mut count = 0u64;
    receive(addr, idle, |_| count += 1);
    println!("{count}");
}

/// Binds `addr`, prints "ready", and hands each datagram to `each`: the first if one comes
/// within FIRST_DATAGRAM_WAIT (none at all: every one was lost), then every one until none
/// came for `idle` (the sender has gone quiet).
fn receive(addr: SocketAddr, idle: Duration, mut each: impl FnMut(&[u8])) {
    let socket = UdpSocket::bind(addr).expect("bind");
    // Room for every datagram of a test: a receiver the busy machine delays for a moment must
    // not lose any (the tests count each loss as the fault's). FORCE passes rmem_max; where it
    // is not allowed (a container without CAP_NET_ADMIN), rmem_max it is.
    let room: libc::c_int = 32 << 20;
    for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt with an int we own and its size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&raw const room).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            break;
        }
    }
    println!("ready");
    let mut buf = [0u8; 2048];
    socket
        .set_read_timeout(Some(FIRST_DATAGRAM_WAIT))
        .expect("timeout");
    while let Ok(n) = socket.recv(&mut buf) {
        each(&buf[..n]);
        socket.set_read_timeout(Some(idle)).expect("timeout");
    }
}

fn udp_send(addr: SocketAddr, n: u32) {
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let socket = UdpSocket::bind(local).expect("bind");
    let mut payload = [FILLER; DATAGRAM_LEN];
    let per_ms = udp_per_ms();
    let start = Instant::now();
    for i in 0..n {
        payload[..4].copy_from_slice(&i.to_be_bytes());
        payload[DATAGRAM_LEN - 4..].copy_from_slice(&(!i).to_be_bytes());
        socket.send_to(&payload, addr).expect("send");
        if (i + 1) % per_ms == 0 {
            let due = start + Duration::from_millis(u64::from((i + 1) / per_ms));
            thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    }
    println!("sent {n}");
}

/// Every byte tcp-send sends.
const TCP_FILLER: u8 = 0xa5;

fn tcp_sink(addr: SocketAddr) {
    let (total, _) = tcp_receive(addr);
    println!("{total}");
}

fn tcp_intact(addr: SocketAddr) {
    let (total, altered) = tcp_receive(addr);
    println!("{total} {altered}");
}

/// Accepts one connection and reads it to the end: the bytes, and those not TCP_FILLER.
fn tcp_receive(addr: SocketAddr) -> (u64, u64) {
    let listener = TcpListener::bind(addr).expect("bind");
    println!("ready");
    let (mut stream, _) = listener.accept().expect("accept");
    let mut buf = vec![0u8; 1 << 16];
    let (mut total, mut altered) = (0u64, 0u64);
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                altered += buf[..n].iter().filter(|&&b| b != TCP_FILLER).count() as u64;
            }
            Err(err) => panic!("read: {err}"),
        }
    }
    (total, altered)
}

fn tcp_send(addr: SocketAddr, bytes: usize) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let chunk = vec![TCP_FILLER; 1 << 16];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        stream.write_all(&chunk[..n]).expect("write");
        left -= n;
    }
    stream.flush().expect("flush");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    // Wait for the peer to close: every byte acknowledged, the retransmissions final.
    let _ = stream.read(&mut [0u8; 1]);
    // SAFETY: tcp_info is plain integers; all zeros is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt(TCP_INFO) into a tcp_info we own, with its size.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO");
    println!("{}", info.tcpi_total_retrans);
}

fn udp_echo(addr: SocketAddr) {
    let socket = UdpSocket::bind(addr).expect("bind");
    println!("ready");
    let mut buf = [0u8; 2048];
    loop {
        let (n, from) = socket.recv_from(&mut buf).expect("recv");
        let _ = socket.send_to(&buf[..n], from);
    }
}

fn udp_rtt(addr: SocketAddr, n: u32, gap: Duration) {
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let socket = UdpSocket::bind(local).expect("bind");
    socket.connect(addr).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut rtts = Vec::new();
    let mut buf = [0u8; 64];
    for seq in 0..n {
        let sent = Instant::now();
        socket.send(&seq.to_be_bytes()).expect("send");
        // Skip late echoes of earlier probes; a probe whose echo never comes counts 0.
        let rtt = loop {
            match socket.recv(&mut buf) {
                Ok(4) if buf[..4] == seq.to_be_bytes() => break sent.elapsed().as_micros() as u64,
                Ok(_) => continue,
                Err(_) => break 0,
            }
        };
        rtts.push(rtt.to_string());
        thread::sleep(gap.saturating_sub(sent.elapsed()));
    }
    println!("{}", rtts.join(" "));
}

/// A udp-send datagram: its sequence number (big-endian, for udp-bursts), filler bytes, and the
/// sequence number's complement, so that any one flipped bit shows.
const DATAGRAM_LEN: usize = 64;
const FILLER: u8 = 0x5a;

fn intact(datagram: &[u8]) -> bool {
    let n = DATAGRAM_LEN;
    datagram.len() == n
        && datagram[4..n - 4].iter().all(|&b| b == FILLER)
        && datagram[..4]
            .iter()
            .zip(&datagram[n - 4..])
            .all(|(a, b)| a ^ b == 0xff)
}

fn udp_intact(addr: SocketAddr, idle: Duration) {
    let (mut count, mut altered) = (0u64, 0u64);
    receive(addr, idle, |datagram| {
        count += 1;
        altered += u64::from(!intact(datagram));
    });
    println!("{count} {altered}");
}

fn udp_bursts(addr: SocketAddr, idle: Duration) {
    let (mut count, mut next, mut lost, mut bursts) = (0u64, 0u32, 0u64, 0u64);
    receive(addr, idle, |datagram| {
        let Some(seq) = datagram
            .first_chunk::<4>()
            .map(|bytes| u32::from_be_bytes(*bytes))
        else {
            return;
        };
        if seq > next {
            lost += u64::from(seq - next);
            bursts += 1;
        }
        next = next.max(seq + 1);
        count += 1;
    });
    let mean = if bursts == 0 {
        0.0
    } else {
        lost as f64 / bursts as f64
    };
    println!("{count} {mean:.3}");
}
