//! The kernel's socket diagnostics over netlink (NETLINK_SOCK_DIAG): the TCP connections of a
//! network namespace, and SOCK_DESTROY, which aborts one as `ss -K` does (the owner's calls fail
//! with ECONNABORTED, the peer gets a reset). Needs CONFIG_INET_DIAG_DESTROY.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd as _,
    path::Path,
};

use crate::netlink::{self, NLMSG_DONE, NLMSG_ERROR, Netlink, messages};

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;
/// Every TCP state but LISTEN, TIME_WAIT and CLOSE: the connections there are to abort.
const CONNECTED_STATES: u32 =
    (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 8) | (1 << 9) | (1 << 11);
/// struct inet_diag_sockid: ports, addresses, interface, cookie.
const SOCKID: usize = 48;
/// struct inet_diag_req_v2: family, protocol, ext, pad, states, sockid.
const REQUEST: usize = 8 + SOCKID;
/// struct inet_diag_msg up to idiag_inode.
const MESSAGE: usize = 4 + SOCKID + 20;

/// One TCP connection as the kernel lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub family: u8,
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
    /// The socket's inode: what /proc/PID/fd links name (`socket:[INODE]`).
    pub inode: u32,
    /// The kernel's identity of the socket, as the dump gave it; SOCK_DESTROY takes it back.
    sockid: [u8; SOCKID],
}

/// A NETLINK_SOCK_DIAG socket, bound to the network namespace it was made in.
pub struct SockDiag(Netlink);

impl SockDiag {
    /// A socket in this process's network namespace.
    pub fn new() -> io::Result<Self> {
        Netlink::new(NETLINK_SOCK_DIAG).map(SockDiag)
    }

    /// A socket in the network namespace at `netns` (/proc/PID/ns/net): made on a thread that
    /// enters it, so this process's own namespace is never changed.
    pub fn in_netns(netns: &Path) -> io::Result<Self> {
        let file = std::fs::File::open(netns)?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns(2) of this thread only, with an fd we hold open.
                    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    SockDiag::new()
                })
                .join()
                .expect("the netns thread does not panic")
        })
    }

    /// The TCP connections of the namespace (IPv4 and IPv6), listeners excluded.
    pub fn connections(&self) -> io::Result<Vec<Connection>> {
        let mut found = Vec::new();
        for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
            let request = request(family, &[0; SOCKID]);
            self.0.send(
                SOCK_DIAG_BY_FAMILY,
                (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16,
                &request,
            )?;
            'dump: loop {
                let buffer = self.0.receive()?;
                for (kind, payload) in messages(&buffer) {
                    match kind {
                        NLMSG_DONE => break 'dump,
                        NLMSG_ERROR => return Err(netlink::error(payload)),
                        SOCK_DIAG_BY_FAMILY => found.extend(parse(payload)),
                        _ => {}
                    }
                }
            }
        }
        Ok(found)
    }

    /// Aborts the connection: its owner's next call fails with ECONNABORTED, its peer gets a
    /// reset. ENOENT when it is already gone.
    pub fn destroy(&self, connection: &Connection) -> io::Result<()> {
        let request = request(connection.family, &connection.sockid);
        self.0.send(
            SOCK_DESTROY,
            (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16,
            &request,
        )?;
        let buffer = self.0.receive()?;
        match messages(&buffer).next() {
            Some((NLMSG_ERROR, payload)) => match netlink::error(payload) {
                err if err.raw_os_error() == Some(0) => Ok(()),
                err => Err(err),
            },
            _ => Ok(()),
        }
    }

    /// Asks to destroy a socket that cannot exist: ENOENT where the kernel can destroy sockets,
    /// EOPNOTSUPP where it was built without CONFIG_INET_DIAG_DESTROY.
    pub fn probe_destroy(&self) -> io::Result<()> {
        let nobody = Connection {
            family: libc::AF_INET as u8,
            local: (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            remote: (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            inode: 0,
            sockid: [0; SOCKID],
        };
        self.destroy(&nobody)
    }
}

/// An inet_diag_req_v2 for TCP in `family`, its socket identity `sockid`.
fn request(family: u8, sockid: &[u8; SOCKID]) -> Vec<u8> {
    let mut request = Vec::with_capacity(REQUEST);
    request.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, 0, 0]);
    request.extend_from_slice(&CONNECTED_STATES.to_ne_bytes());
    request.extend_from_slice(sockid);
    request
}

/// A connection from an inet_diag_msg.
fn parse(payload: &[u8]) -> Option<Connection> {
    if payload.len() < MESSAGE {
        return None;
    }
    let family = payload[0];
    let sockid: [u8; SOCKID] = payload[4..4 + SOCKID].try_into().ok()?;
    let port = |at: usize| u16::from_be_bytes([sockid[at], sockid[at + 1]]);
    let address = |at: usize| -> IpAddr {
        let bytes: [u8; 16] = sockid[at..at + 16].try_into().expect("16 bytes");
        if family == libc::AF_INET as u8 {
            IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
    };
    let inode = u32::from_ne_bytes(payload[MESSAGE - 4..MESSAGE].try_into().ok()?);
    Some(Connection {
        family,
        local: (address(4), port(0)),
        remote: (address(20), port(2)),
        inode,
        sockid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connections of this namespace include one this test makes, by its inode.
    #[test]
    fn a_dump_lists_this_processs_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let link = std::fs::read_link(format!("/proc/self/fd/{}", client.as_raw_fd())).unwrap();
        let inode: u32 = link
            .to_string_lossy()
            .trim_start_matches("socket:[")
            .trim_end_matches(']')
            .parse()
            .unwrap();
        let Ok(diag) = SockDiag::new() else {
            eprintln!("NOT RUN: no NETLINK_SOCK_DIAG here");
            return;
        };
        let found = diag.connections().unwrap();
        let mine = found
            .iter()
            .find(|c| c.inode == inode)
            .expect("the client's connection");
        assert_eq!(
            mine.remote,
            (
                listener.local_addr().unwrap().ip(),
                listener.local_addr().unwrap().port()
            )
        );
        assert_eq!(mine.local.1, client.local_addr().unwrap().port());
    }
}
