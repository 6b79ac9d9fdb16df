//! A netlink socket to the kernel, as `chaos net reset` (NETLINK_SOCK_DIAG) and the XDP
//! attachment (NETLINK_ROUTE: which program an interface already carries) use it.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_HEADER: usize = 16;

/// A netlink socket of one protocol, bound to the network namespace it was made in.
pub struct Netlink(OwnedFd);

impl Netlink {
    /// A socket of `protocol` (NETLINK_ROUTE, NETLINK_SOCK_DIAG) in this thread's network
    /// namespace.
    pub fn new(protocol: libc::c_int) -> io::Result<Self> {
        // SAFETY: socket(2) with constant arguments; the fd is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new fd that nothing else owns.
        Ok(Netlink(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Sends one message of `kind` with `flags` (NLM_F_*) to the kernel.
    pub fn send(&self, kind: u16, flags: u16, payload: &[u8]) -> io::Result<()> {
        let mut message = Vec::with_capacity(NLMSG_HEADER + payload.len());
        message.extend_from_slice(&((NLMSG_HEADER + payload.len()) as u32).to_ne_bytes());
        message.extend_from_slice(&kind.to_ne_bytes());
        message.extend_from_slice(&flags.to_ne_bytes());
        message.extend_from_slice(&1u32.to_ne_bytes()); // sequence
        message.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel
        message.extend_from_slice(payload);
        // SAFETY: an address of the kernel (nl_pid 0) and a buffer we own, both for the call.
        let sent = unsafe {
            let mut kernel: libc::sockaddr_nl = std::mem::zeroed();
            kernel.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                self.0.as_raw_fd(),
                message.as_ptr().cast(),
                message.len(),
                0,
                (&raw const kernel).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// One datagram from the kernel: one or more messages (see [`messages`]).
    pub fn receive(&self) -> io::Result<Vec<u8>> {
        let mut buffer = vec![0u8; 64 * 1024];
        // SAFETY: recv(2) into a buffer we own, at most its length.
        let received = unsafe {
            libc::recv(
                self.0.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                0,
            )
        };
        if received < 0 {
            return Err(io::Error::last_os_error());
        }
        buffer.truncate(received as usize);
        Ok(buffer)
    }
}

/// The netlink messages in a datagram: each one's type and payload.
pub fn messages(buffer: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = buffer;
    std::iter::from_fn(move || {
        if rest.len() < NLMSG_HEADER {
            return None;
        }
        let length = u32::from_ne_bytes(rest[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(rest[4..6].try_into().ok()?);
        if length < NLMSG_HEADER || length > rest.len() {
            return None;
        }
        let payload = &rest[NLMSG_HEADER..length];
        rest = &rest[((length + 3) & !3).min(rest.len())..];
        Some((kind, payload))
    })
}

/// The attributes (struct rtattr, nested ones too) in `buffer`: each one's type and payload.
pub fn attributes(buffer: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = buffer;
    std::iter::from_fn(move || {
        let length = usize::from(u16::from_ne_bytes(rest.get(0..2)?.try_into().ok()?));
        let kind = u16::from_ne_bytes(rest.get(2..4)?.try_into().ok()?);
        if length < 4 || length > rest.len() {
            return None;
        }
        let payload = &rest[4..length];
        rest = &rest[((length + 3) & !3).min(rest.len())..];
        // NLA_F_NESTED and NLA_F_NET_BYTEORDER are flags, not the type.
        Some((kind & 0x3fff, payload))
    })
}

/// The errno of an NLMSG_ERROR (0 for an acknowledgement).
pub fn error(payload: &[u8]) -> io::Error {
    let code = payload
        .get(0..4)
        .and_then(|bytes| bytes.try_into().ok())
        .map(i32::from_ne_bytes)
        .unwrap_or(-libc::EIO);
    io::Error::from_raw_os_error(-code)
}

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
/// struct ifinfomsg: family, pad, type, index, flags, change.
const IFINFOMSG: usize = 16;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_PROG_ID: u16 = 4;

/// The XDP program an interface carries: its ID and how it is attached (XDP_ATTACHED_DRV 1,
/// SKB 2, HW 3, MULTI 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttachedXdp {
    pub id: u32,
    pub mode: u8,
}

/// The XDP program on the interface with index `ifindex` of this thread's network namespace,
/// if it has one (as `ip link` shows it).
pub fn xdp_of(ifindex: u32) -> io::Result<Option<AttachedXdp>> {
    let socket = Netlink::new(libc::NETLINK_ROUTE)?;
    let mut request = [0u8; IFINFOMSG];
    request[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    socket.send(RTM_GETLINK, libc::NLM_F_REQUEST as u16, &request)?;
    let buffer = socket.receive()?;
    for (kind, payload) in messages(&buffer) {
        match kind {
            NLMSG_ERROR => return Err(error(payload)),
            RTM_NEWLINK => {
                let xdp = attributes(payload.get(IFINFOMSG..).unwrap_or_default())
                    .find(|&(kind, _)| kind == IFLA_XDP);
                let Some((_, xdp)) = xdp else {
                    return Ok(None);
                };
                let (mut id, mut mode) = (0, 0);
                for (kind, value) in attributes(xdp) {
                    match (kind, value) {
                        (IFLA_XDP_ATTACHED, [attached, ..]) => mode = *attached,
                        (IFLA_XDP_PROG_ID, [a, b, c, d, ..]) => {
                            id = u32::from_ne_bytes([*a, *b, *c, *d]);
                        }
                        _ => {}
                    }
                }
                return Ok((mode != 0).then_some(AttachedXdp { id, mode }));
            }
            _ => {}
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loopback interface of this namespace (index 1) carries no XDP program here.
    #[test]
    fn loopback_has_no_xdp_program() {
        assert_eq!(xdp_of(1).unwrap(), None);
    }

    #[test]
    fn attributes_are_walked_with_their_padding() {
        // A 5-byte attribute (padded to 8), then a 8-byte one, flags masked off the type.
        let buffer = [5, 0, 2, 0, 7, 0, 0, 0, 8, 0, 4, 0x80, 1, 2, 3, 4];
        let found: Vec<_> = attributes(&buffer).collect();
        assert_eq!(found, vec![(2, &[7u8][..]), (4, &[1, 2, 3, 4][..])]);
    }
}
