//! Network faults: which packets of an interface a TC program acts on, and what it does to them.

/// [`NetFault::directions`] bits, and the index of each direction's counters.
pub const DIRECTION_INGRESS: u32 = 1;
pub const DIRECTION_EGRESS: u32 = 2;
/// Counter entries: one per direction (index 0 ingress, 1 egress).
pub const NET_COUNTER_ENTRIES: u32 = 2;

/// [`NetFault::action`]: drop the packet.
pub const NET_ACTION_DROP: u32 = 1;
/// [`NetFault::action`]: let the packet through and send a copy of it right behind it.
pub const NET_ACTION_DUPLICATE: u32 = 2;

/// [`NetFault::action`]: hold the packet back: its departure time (`skb->tstamp`) moves
/// `delay_ns` (± jitter) later, which the fq qdisc on the interface honours. Egress only.
pub const NET_ACTION_DELAY: u32 = 3;

/// [`NetFault::action`]: let packets leave at no more than `rate_bytes` per second, all the
/// target's leaving packets together: each departs when the ones before it would have finished
/// at that rate (fq holds it until then); one that would wait longer than
/// [`LIMIT_QUEUE_NS`] is dropped, as a full queue would. Egress only.
pub const NET_ACTION_LIMIT: u32 = 4;
/// [`NetFault::action`]: flip one bit in the payload of a TCP or UDP packet and leave its
/// checksum wrong, so that the receiver's checksum check drops it, as after a bad wire. A packet
/// whose checksum is not computed yet (checksum offload), which no check on this host would
/// catch, is dropped in place of that check.
pub const NET_ACTION_CORRUPT: u32 = 5;
/// [`NetFault::action`]: flip one bit in the payload of a TCP or UDP packet and fix its checksum:
/// the application receives the altered data.
pub const NET_ACTION_CORRUPT_SILENT: u32 = 6;

/// [`NetFault::action`]: DNS responses (UDP from port 53) with one question under the name in
/// [`crate::names::MAP_NET_DNS_NAME`] get [`NetFault::dns_rcode`] as their response code and lose
/// their answer, authority and additional sections; lengths and checksums are fixed.
pub const NET_ACTION_DNS_RCODE: u32 = 7;
/// [`NetFault::action`]: DNS queries (UDP to port 53) for names under that name vanish.
pub const NET_ACTION_DNS_DROP: u32 = 8;
/// The DNS port, and the longest name in wire format (RFC 1035: 255 bytes).
pub const DNS_PORT: u32 = 53;
pub const DNS_NAME_MAX: usize = 255;

/// The name a DNS fault is limited to (slot 0 of [`crate::names::MAP_NET_DNS_NAME`]): in wire
/// format (length-prefixed labels and the root's 0), lowercase; `len` 0: every name.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsName {
    pub len: u32,
    pub wire: [u8; DNS_NAME_MAX + 1],
}
const _: () = assert!(core::mem::size_of::<DnsName>() == 260);

impl Default for DnsName {
    fn default() -> Self {
        DnsName {
            len: 0,
            wire: [0; DNS_NAME_MAX + 1],
        }
    }
}

/// The longest a [`NET_ACTION_LIMIT`] packet may wait: the queue it stands for.
pub const LIMIT_QUEUE_NS: u64 = 1_000_000_000;

/// [`NetFault::loss_model`]: each packet is picked on its own, with `probability`.
pub const NET_LOSS_INDEPENDENT: u32 = 0;
/// [`NetFault::loss_model`]: netem's Gilbert-Elliott model: a good and a bad state, `ge_*`
/// thresholds for the transitions and the loss in each (correlated, bursty loss).
pub const NET_LOSS_GEMODEL: u32 = 1;

/// The largest delay distribution table (netem's limit), and the scale of its entries: an entry
/// `t` stands for `t / NET_DIST_SCALE` standard deviations, as in netem and iproute2's tables.
pub const NET_DIST_MAX: u32 = 16384;
pub const NET_DIST_SCALE: i64 = 8192;

/// `skb->mark` of a copy made by [`NET_ACTION_DUPLICATE`], so that the program it passes through
/// again lets it go ("chao").
pub const DUPLICATE_MARK: u32 = 0x6368_616f;

/// One network fault as the TC programs read it (slot 0 of [`crate::names::MAP_NET_FAULTS`]).
/// A packet matches when its direction is in `directions`, it is IPv4 or IPv6, and it passes
/// every filter; a matching packet gets the action with `probability`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetFault {
    /// After this `CLOCK_MONOTONIC` time the programs act on nothing, even if the loader hangs.
    pub deadline_ns: u64,
    /// Act when a 32-bit random draw is below this; [`crate::fault::PROBABILITY_ONE`]: always.
    pub probability: u64,
    pub action: u32,
    pub directions: u32,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6); 0: any. `IPPROTO_ICMP` also
    /// matches ICMPv6.
    pub proto: u32,
    /// Source and destination ports in host order (TCP and UDP); 0: any.
    pub sport: u32,
    pub dport: u32,
    /// Entries of the delay distribution table in use; 0: jitter is uniform.
    pub dist_size: u32,
    /// Source and destination networks, in the layout of [`crate::fault::CallFault::addr`]
    /// (IPv4 as IPv4-mapped IPv6, network order); a mask of all zeros: any.
    pub src: [u32; 4],
    pub src_mask: [u32; 4],
    pub dst: [u32; 4],
    pub dst_mask: [u32; 4],
    /// [`NET_ACTION_DELAY`]: the mean delay and its jitter (netem's sigma).
    pub delay_ns: u64,
    pub jitter_ns: u64,
    /// [`NET_ACTION_LIMIT`]: bytes per second.
    pub rate_bytes: u64,
    /// How packets are picked: [`NET_LOSS_INDEPENDENT`] or [`NET_LOSS_GEMODEL`].
    pub loss_model: u32,
    /// Gilbert-Elliott, as 32-bit thresholds of a random draw (netem's p, r, h and 1-k): good
    /// to bad, bad to good, no loss in the bad state, loss in the good state.
    pub ge_p: u32,
    pub ge_r: u32,
    pub ge_h: u32,
    pub ge_1k: u32,
    /// [`NET_ACTION_DNS_RCODE`]: the response code (2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED).
    pub dns_rcode: u32,
}
const _: () = assert!(core::mem::size_of::<NetFault>() == 152);

/// Whether `addr` lies in the network `net`/`mask` (all words network order).
#[inline(always)]
pub fn in_network(addr: &[u32; 4], net: &[u32; 4], mask: &[u32; 4]) -> bool {
    addr[0] & mask[0] == net[0]
        && addr[1] & mask[1] == net[1]
        && addr[2] & mask[2] == net[2]
        && addr[3] & mask[3] == net[3]
}

#[cfg(feature = "user")]
// SAFETY: #[repr(C)] integers and arrays of them, no padding (size checked above).
unsafe impl aya::Pod for NetFault {}
#[cfg(feature = "user")]
// SAFETY: #[repr(C)] a u32 and a byte array of 256 bytes, no padding (size checked above).
unsafe impl aya::Pod for DnsName {}
