//! A netlink socket to the kernel, as `chaos net reset` (NETLINK_SOCK_DIAG), the XDP
//! attachment (NETLINK_ROUTE: which program an interface already carries) and `chaos probe`
//! (NETLINK_GENERIC: which interfaces run XDP natively) use it.

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
        let socket = Netlink(unsafe { OwnedFd::from_raw_fd(fd) });
        for option in [NETLINK_CAP_ACK, NETLINK_EXT_ACK] {
            let on: libc::c_int = 1;
            // SAFETY: an int option of our socket; a kernel without it leaves errors bare.
            unsafe {
                libc::setsockopt(
                    socket.0.as_raw_fd(),
                    libc::SOL_NETLINK,
                    option,
                    (&raw const on).cast(),
                    std::mem::size_of::<libc::c_int>() as u32,
                );
            }
        }
        Ok(socket)
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

/// NETLINK_EXT_ACK and NETLINK_CAP_ACK (socket options of SOL_NETLINK): errors come with the
/// kernel's message, after the failed request's header only.
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;
/// struct nlmsgerr: the errno and the failed request's header (capped).
const NLMSGERR: usize = 4 + NLMSG_HEADER;
const NLMSGERR_ATTR_MSG: u16 = 1;

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

// Generic netlink: the `netdev` family (6.3) reports which XDP actions each interface's driver
// runs natively.
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
/// NETDEV_XDP_ACT_BASIC: the driver runs XDP_PASS, XDP_DROP and XDP_TX itself (native mode).
pub const XDP_ACT_BASIC: u64 = 1;

/// A generic netlink request: struct genlmsghdr (command, version 1) and one attribute.
fn genl_request(command: u8, attribute: Option<(u16, &[u8])>) -> Vec<u8> {
    let mut payload = vec![command, 1, 0, 0];
    if let Some((kind, value)) = attribute {
        payload.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        payload.extend_from_slice(&kind.to_ne_bytes());
        payload.extend_from_slice(value);
        payload.resize((payload.len() + 3) & !3, 0);
    }
    payload
}

/// The XDP features (`NETDEV_XDP_ACT_*` bits) of every interface of this thread's network
/// namespace, by interface index; `None` where the kernel has no `netdev` family (before 6.3).
pub fn xdp_features() -> io::Result<Option<Vec<(u32, u64)>>> {
    let socket = Netlink::new(libc::NETLINK_GENERIC)?;
    let request = genl_request(
        CTRL_CMD_GETFAMILY,
        Some((CTRL_ATTR_FAMILY_NAME, b"netdev\0")),
    );
    socket.send(GENL_ID_CTRL, libc::NLM_F_REQUEST as u16, &request)?;
    let buffer = socket.receive()?;
    let mut family = None;
    for (kind, payload) in messages(&buffer) {
        if kind == NLMSG_ERROR {
            let err = error(payload);
            return match err.raw_os_error() {
                Some(libc::ENOENT) => Ok(None),
                _ => Err(err),
            };
        }
        family =
            attributes(payload.get(4..).unwrap_or_default()).find_map(|(kind, value)| {
                match (kind, value) {
                    (CTRL_ATTR_FAMILY_ID, [a, b, ..]) => Some(u16::from_ne_bytes([*a, *b])),
                    _ => None,
                }
            });
    }
    let Some(family) = family else {
        return Ok(None);
    };
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    socket.send(family, flags, &genl_request(NETDEV_CMD_DEV_GET, None))?;
    let mut devices = Vec::new();
    loop {
        let buffer = socket.receive()?;
        for (kind, payload) in messages(&buffer) {
            match kind {
                // A dump's end carries its error, if it failed.
                NLMSG_DONE if payload.len() < 4 || error(payload).raw_os_error() == Some(0) => {
                    return Ok(Some(devices));
                }
                NLMSG_DONE => return Err(error(payload)),
                NLMSG_ERROR => return Err(error(payload)),
                _ => {}
            }
            let (mut index, mut features) = (None, 0);
            for (kind, value) in attributes(payload.get(4..).unwrap_or_default()) {
                match (kind, value.len()) {
                    (NETDEV_A_DEV_IFINDEX, 4) => {
                        index = Some(u32::from_ne_bytes(value.try_into().expect("4 bytes")));
                    }
                    (NETDEV_A_DEV_XDP_FEATURES, 8) => {
                        features = u64::from_ne_bytes(value.try_into().expect("8 bytes"));
                    }
                    _ => {}
                }
            }
            if let Some(index) = index {
                devices.push((index, features));
            }
        }
    }
}

// rtnetlink's traffic control: the qdiscs and filters network faults add and take away, as
// `tc` would (the static binary runs where no iproute2 is installed).
const RTM_NEWQDISC: u16 = 36;
const RTM_DELQDISC: u16 = 37;
const RTM_GETQDISC: u16 = 38;
const RTM_DELTFILTER: u16 = 45;
/// struct tcmsg: family, pads, ifindex, handle, parent, info.
const TCMSG: usize = 20;
const TCA_KIND: u16 = 1;
/// The parent of a device's root qdisc.
pub const TC_H_ROOT: u32 = 0xFFFF_FFFF;
/// The parent of a clsact (and ingress) qdisc, and the major number of its handle.
pub const TC_H_CLSACT: u32 = 0xFFFF_FFF1;
/// The minor numbers of clsact's two hooks, the parents of their filters.
pub const TC_H_MIN_INGRESS: u32 = 0xFFF2;
pub const TC_H_MIN_EGRESS: u32 = 0xFFF3;
/// A clsact qdisc's handle (ffff:).
pub const CLSACT_HANDLE: u32 = 0xFFFF_0000;

/// A qdisc as the kernel lists it: its kind (`fq`, `clsact`, `noqueue`…), handle and parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qdisc {
    pub kind: String,
    pub handle: u32,
    pub parent: u32,
}

fn tcmsg(ifindex: u32, handle: u32, parent: u32, info: u32) -> Vec<u8> {
    let mut message = vec![0u8; TCMSG];
    message[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    message[8..12].copy_from_slice(&handle.to_ne_bytes());
    message[12..16].copy_from_slice(&parent.to_ne_bytes());
    message[16..20].copy_from_slice(&info.to_ne_bytes());
    message
}

/// Appends a string attribute (NUL-terminated, padded).
fn string_attribute(message: &mut Vec<u8>, kind: u16, value: &str) {
    let length = 4 + value.len() + 1;
    message.extend_from_slice(&(length as u16).to_ne_bytes());
    message.extend_from_slice(&kind.to_ne_bytes());
    message.extend_from_slice(value.as_bytes());
    message.push(0);
    message.resize((message.len() + 3) & !3, 0);
}

impl Netlink {
    /// Sends a request that asks for an acknowledgement and waits for it: the kernel's errno,
    /// if it refused.
    fn request(&self, kind: u16, flags: u16, payload: &[u8]) -> io::Result<()> {
        let flags = flags | (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
        self.send(kind, flags, payload)?;
        loop {
            let buffer = self.receive()?;
            for (kind, payload) in messages(&buffer) {
                if kind == NLMSG_ERROR {
                    let err = error(payload);
                    if err.raw_os_error() == Some(0) {
                        return Ok(());
                    }
                    // The kernel's own words, when it gave some (extended ack).
                    let said = attributes(payload.get(NLMSGERR..).unwrap_or_default())
                        .find(|&(kind, _)| kind == NLMSGERR_ATTR_MSG)
                        .map(|(_, text)| {
                            String::from_utf8_lossy(text)
                                .trim_end_matches('\0')
                                .to_owned()
                        });
                    return Err(match said {
                        Some(said) => io::Error::new(err.kind(), format!("{err}: {said}")),
                        None => err,
                    });
                }
            }
        }
    }
}

/// The qdiscs of the interface with index `ifindex` in this thread's network namespace.
pub fn qdiscs(ifindex: u32) -> io::Result<Vec<Qdisc>> {
    let socket = Netlink::new(libc::NETLINK_ROUTE)?;
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    socket.send(RTM_GETQDISC, flags, &tcmsg(ifindex, 0, 0, 0))?;
    let mut found = Vec::new();
    loop {
        let buffer = socket.receive()?;
        for (kind, payload) in messages(&buffer) {
            match kind {
                // A dump's end carries its error, if it failed.
                NLMSG_DONE if payload.len() < 4 || error(payload).raw_os_error() == Some(0) => {
                    return Ok(found);
                }
                NLMSG_DONE | NLMSG_ERROR => return Err(error(payload)),
                RTM_NEWQDISC if payload.len() >= TCMSG => {
                    let word = |at: usize| {
                        u32::from_ne_bytes(payload[at..at + 4].try_into().expect("4 bytes"))
                    };
                    // A dump lists every interface's on older kernels: this one's only.
                    if word(4) != ifindex {
                        continue;
                    }
                    let kind = attributes(&payload[TCMSG..])
                        .find(|&(kind, _)| kind == TCA_KIND)
                        .map(|(_, value)| {
                            String::from_utf8_lossy(value)
                                .trim_end_matches('\0')
                                .to_owned()
                        })
                        .unwrap_or_default();
                    found.push(Qdisc {
                        kind,
                        handle: word(8),
                        parent: word(12),
                    });
                }
                _ => {}
            }
        }
    }
}

/// Makes `kind` the qdisc at `parent` with `handle` (`replace`: in place of the one there, as
/// `tc qdisc replace`; else only if there is none, as `tc qdisc add`).
pub fn add_qdisc(
    ifindex: u32,
    parent: u32,
    handle: u32,
    kind: &str,
    replace: bool,
) -> io::Result<()> {
    let socket = Netlink::new(libc::NETLINK_ROUTE)?;
    let mut message = tcmsg(ifindex, handle, parent, 0);
    string_attribute(&mut message, TCA_KIND, kind);
    let flags = libc::NLM_F_CREATE
        | if replace {
            libc::NLM_F_REPLACE
        } else {
            libc::NLM_F_EXCL
        };
    socket.request(RTM_NEWQDISC, flags as u16, &message)
}

/// Deletes the qdisc at `parent` with `handle`, its filters with it.
pub fn delete_qdisc(ifindex: u32, parent: u32, handle: u32) -> io::Result<()> {
    let socket = Netlink::new(libc::NETLINK_ROUTE)?;
    socket.request(RTM_DELQDISC, 0, &tcmsg(ifindex, handle, parent, 0))
}

/// Deletes the filters of preference `pref` at `parent` (a clsact hook), of any protocol.
pub fn delete_filters(ifindex: u32, parent: u32, pref: u16) -> io::Result<()> {
    let socket = Netlink::new(libc::NETLINK_ROUTE)?;
    let info = u32::from(pref) << 16;
    socket.request(RTM_DELTFILTER, 0, &tcmsg(ifindex, 0, parent, info))
}

const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;

/// Creates an interface `name` of `kind` (`bridge`…) in this thread's network namespace, as
/// `ip link add NAME type KIND`.
pub fn add_link(name: &str, kind: &str) -> io::Result<()> {
    let socket = Netlink::new(libc::NETLINK_ROUTE)?;
    let mut message = vec![0u8; IFINFOMSG];
    string_attribute(&mut message, IFLA_IFNAME, name);
    let mut info = Vec::new();
    string_attribute(&mut info, IFLA_INFO_KIND, kind);
    message.extend_from_slice(&((4 + info.len()) as u16).to_ne_bytes());
    message.extend_from_slice(&(IFLA_LINKINFO | libc::NLA_F_NESTED as u16).to_ne_bytes());
    message.extend_from_slice(&info);
    let flags = libc::NLM_F_CREATE | libc::NLM_F_EXCL;
    socket.request(RTM_NEWLINK, flags as u16, &message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loopback interface of this namespace (index 1) carries no XDP program here.
    #[test]
    fn loopback_has_no_xdp_program() {
        assert_eq!(xdp_of(1).unwrap(), None);
    }

    /// Where the kernel reports XDP features (6.3), it reports loopback's, without native XDP.
    #[test]
    fn loopback_runs_xdp_only_in_generic_mode() {
        if let Some(devices) = xdp_features().unwrap() {
            let lo = devices.iter().find(|(index, _)| *index == 1);
            assert_eq!(lo.map(|(_, f)| f & XDP_ACT_BASIC), Some(0), "{devices:?}");
        }
    }

    /// Loopback's qdiscs, as `tc qdisc show dev lo` lists them: each with its kind (a loopback
    /// that is down has none listed).
    #[test]
    fn loopback_lists_its_qdiscs() {
        let qdiscs = qdiscs(1).unwrap();
        assert!(qdiscs.iter().all(|q| !q.kind.is_empty()), "{qdiscs:?}");
    }

    #[test]
    fn attributes_are_walked_with_their_padding() {
        // A 5-byte attribute (padded to 8), then a 8-byte one, flags masked off the type.
        let buffer = [5, 0, 2, 0, 7, 0, 0, 0, 8, 0, 4, 0x80, 1, 2, 3, 4];
        let found: Vec<_> = attributes(&buffer).collect();
        assert_eq!(found, vec![(2, &[7u8][..]), (4, &[1, 2, 3, 4][..])]);
    }
}
