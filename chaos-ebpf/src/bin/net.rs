//! Network faults: TC programs on an interface's ingress and egress drop, duplicate, corrupt or
//! (egress) delay the packets a fault picks. Kernel >= 6.6 attaches them through tcx links (older kernels: a clsact qdisc),
//! CONFIG_NET_CLS_BPF / CONFIG_NET_XGRESS. An XDP program drops or corrupts arriving packets
//! before the stack builds anything for them, with the same filters.
#![no_std]
#![no_main]

#[path = "net/dns.rs"]
mod dns;

use aya_ebpf::{
    bindings::{
        BPF_CSUM_LEVEL_RESET, BPF_F_MARK_MANGLED_0, BPF_F_RECOMPUTE_CSUM,
        xdp_action::{XDP_DROP, XDP_PASS},
    },
    helpers::{bpf_csum_level, bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_redirect},
    macros::{cgroup_skb, classifier, map, xdp},
    maps::{Array, PerCpuArray},
    programs::{SkBuffContext, TcContext, XdpContext, sk_buff::SkBuff},
};
use chaos_common::{
    counters::Counters,
    fault::{IPV4_MAPPED_WORD, PROBABILITY_ONE},
    net::{
        DIRECTION_EGRESS, DIRECTION_INGRESS, DUPLICATE_MARK, LIMIT_QUEUE_NS, NET_ACTION_CORRUPT,
        NET_ACTION_CORRUPT_SILENT, NET_ACTION_DELAY, NET_ACTION_DNS_DROP, NET_ACTION_DNS_RCODE,
        NET_ACTION_DROP, NET_ACTION_DUPLICATE, NET_ACTION_LIMIT, NET_COUNTER_ENTRIES, NET_DIST_MAX,
        NET_DIST_SCALE, NET_LOSS_GEMODEL, NetFault, in_network,
    },
};

#[map]
static NET_FAULTS: Array<NetFault> = Array::with_max_entries(1, 0);

#[map]
static NET_COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(NET_COUNTER_ENTRIES, 0);

/// The Gilbert-Elliott model's state (0 good, 1 bad), shared by every CPU and interface.
#[map]
static NET_GE_STATE: Array<u32> = Array::with_max_entries(1, 0);
const GE_GOOD: u32 = 0;
const GE_BAD: u32 = 1;

/// A rate limit's next free departure time, shared by every CPU and interface of the fault.
#[map]
static NET_RATE_STATE: Array<u64> = Array::with_max_entries(1, 0);

/// A delay fault's distribution table (netem's format), when its jitter is not uniform.
#[map]
static NET_DELAY_DIST: Array<i16> = Array::with_max_entries(NET_DIST_MAX, 0);

/// Let the packet go on to the next program and the stack (tcx: TCX_NEXT; clsact: the default).
const TC_ACT_UNSPEC: i32 = -1;
const TC_ACT_SHOT: i32 = 2;
/// cgroup_skb verdicts.
const CGROUP_SKB_DROP: i32 = 0;
const CGROUP_SKB_PASS: i32 = 1;
/// `bpf_clone_redirect` flag: into the interface's receive path rather than out of it.
const BPF_F_INGRESS: u64 = 1;
/// No interface has this index: a packet redirected there is dropped after the stack let it
/// go, so the sender's TCP sees a loss (TC_ACT_SHOT at egress is reported back to TCP, which
/// then resends at once without counting a loss).
const NO_IFINDEX: u32 = u32::MAX;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_ICMP: u32 = 1;
const IPPROTO_TCP: u32 = 6;
const IPPROTO_UDP: u32 = 17;
const IPPROTO_ICMPV6: u32 = 58;

/// What the filters look at in a packet, and where its TCP or UDP segment lies.
struct Packet {
    proto: u32,
    /// ETH_P_IP or ETH_P_IPV6 (not a bool: an `Option<Packet>` with a niche in it gets BTF the
    /// kernel refuses).
    ethertype: u16,
    src: [u32; 4],
    dst: [u32; 4],
    sport: u32,
    dport: u32,
    /// The offset of the TCP or UDP header and the segment's length from the IP header (0 for
    /// other protocols and later fragments).
    l4: usize,
    l4_len: usize,
    /// For a DNS fault: the offset just past the message's question.
    question_end: usize,
}

/// Where a program reads a packet from: an skb (TC, cgroup_skb) or an XDP buffer.
trait Bytes {
    /// The `T` at `offset` from the packet's start, if the packet is that long.
    fn read<T: Copy>(&self, offset: usize) -> Option<T>;
    /// For a DNS fault: the offset past the question of the DNS message the packet carries, if
    /// the fault acts on it. Only the TC programs read DNS messages.
    fn dns_message(&self, packet: &Packet, fault: &NetFault) -> Option<usize>;
}

impl Bytes for SkBuff {
    #[inline(always)]
    fn read<T: Copy>(&self, offset: usize) -> Option<T> {
        self.load(offset).ok()
    }

    #[inline(always)]
    fn dns_message(&self, packet: &Packet, fault: &NetFault) -> Option<usize> {
        dns::message(self, packet, fault)
    }
}

/// The farthest into an XDP buffer the program reads or writes: a bound the verifier needs on
/// the variable offsets (a jumbo frame's payload beyond it is left alone).
const XDP_MAX_OFFSET: usize = 0x3fff;

/// An XDP program's packet: the bytes from `start` to `end`, read and written in place.
struct XdpBytes {
    start: usize,
    end: usize,
}

impl XdpBytes {
    /// Where the `T` at `offset` lies, if it lies inside the buffer.
    #[inline(always)]
    fn at<T>(&self, offset: usize) -> Option<*mut T> {
        if offset > XDP_MAX_OFFSET {
            return None;
        }
        let at = self.start + offset;
        (at + core::mem::size_of::<T>() <= self.end).then_some(at as *mut T)
    }

    #[inline(always)]
    fn write<T: Copy>(&self, offset: usize, value: T) -> Option<()> {
        let at = self.at::<T>(offset)?;
        // SAFETY: `at` lies inside the packet buffer, which an XDP program may write.
        unsafe { at.write_unaligned(value) };
        Some(())
    }
}

impl Bytes for XdpBytes {
    #[inline(always)]
    fn read<T: Copy>(&self, offset: usize) -> Option<T> {
        let at = self.at::<T>(offset)?;
        // SAFETY: `at` lies inside the packet buffer.
        Some(unsafe { at.read_unaligned() })
    }

    fn dns_message(&self, _: &Packet, _: &NetFault) -> Option<usize> {
        None
    }
}

/// Reads the IP header (and the ports of TCP and UDP) that starts at `l3`, of the given
/// ethertype; `None` for anything but IPv4 and IPv6. IPv6 extension headers are not followed.
#[inline(always)]
fn parse(skb: &impl Bytes, l3: usize, ethertype: u16) -> Option<Packet> {
    let (proto, src, dst, l4, l4_len, first_fragment) = match ethertype {
        ETH_P_IP => {
            let version_ihl: u8 = skb.read(l3)?;
            let header_len = usize::from(version_ihl & 0x0f) * 4;
            let total_len = usize::from(u16::from_be(skb.read::<u16>(l3 + 2)?));
            let fragment = u16::from_be(skb.read::<u16>(l3 + 6)?);
            let proto: u8 = skb.read(l3 + 9)?;
            let src: u32 = skb.read(l3 + 12)?;
            let dst: u32 = skb.read(l3 + 16)?;
            (
                u32::from(proto),
                [0, 0, IPV4_MAPPED_WORD, src],
                [0, 0, IPV4_MAPPED_WORD, dst],
                l3 + header_len,
                total_len.saturating_sub(header_len),
                fragment & 0x1fff == 0,
            )
        }
        ETH_P_IPV6 => {
            let payload_len = usize::from(u16::from_be(skb.read::<u16>(l3 + 4)?));
            let proto: u8 = skb.read(l3 + 6)?;
            let src: [u32; 4] = skb.read(l3 + 8)?;
            let dst: [u32; 4] = skb.read(l3 + 24)?;
            (u32::from(proto), src, dst, l3 + 40, payload_len, true)
        }
        _ => return None,
    };
    let segment = first_fragment && (proto == IPPROTO_TCP || proto == IPPROTO_UDP);
    let (sport, dport) = if segment {
        let ports: u32 = skb.read(l4)?;
        // Both ports in network order, as they lie in the packet.
        let sport = u16::from_be(ports as u16);
        let dport = u16::from_be((ports >> 16) as u16);
        (u32::from(sport), u32::from(dport))
    } else {
        (0, 0)
    };
    Some(Packet {
        proto,
        ethertype,
        src,
        dst,
        sport,
        dport,
        l4: if segment { l4 } else { 0 },
        l4_len,
        question_end: 0,
    })
}

/// A TC or XDP program's packet: the Ethernet header first.
#[inline(always)]
fn parse_ethernet(bytes: &impl Bytes) -> Option<Packet> {
    let ethertype = u16::from_be(bytes.read::<u16>(12)?);
    parse(bytes, ETH_HLEN, ethertype)
}

/// A cgroup_skb program's packet: the IP header first, its ethertype in `skb->protocol`.
#[inline(always)]
fn parse_ip(skb: &SkBuff) -> Option<Packet> {
    parse(skb, 0, u16::from_be(skb.protocol() as u16))
}

#[inline(always)]
fn passes_filters(fault: &NetFault, packet: &Packet) -> bool {
    let proto_ok = fault.proto == 0
        || fault.proto == packet.proto
        || (fault.proto == IPPROTO_ICMP && packet.proto == IPPROTO_ICMPV6);
    proto_ok
        && (fault.sport == 0 || fault.sport == packet.sport)
        && (fault.dport == 0 || fault.dport == packet.dport)
        && in_network(&packet.src, &fault.src, &fault.src_mask)
        && in_network(&packet.dst, &fault.dst, &fault.dst_mask)
}

/// The fault if it acts on this packet, and the packet. Costs every packet one array lookup;
/// only live faults parse it. A copy this program made passes untouched.
#[inline(always)]
fn fault_for(
    skb: &SkBuff,
    direction: u32,
    packet: impl FnOnce(&SkBuff) -> Option<Packet>,
) -> Option<(&'static NetFault, Packet)> {
    let fault = NET_FAULTS.get(0)?;
    // SAFETY: the kernel hands the program a valid __sk_buff.
    if unsafe { (*skb.skb).mark } == DUPLICATE_MARK {
        return None;
    }
    let packet = acts_on(skb, fault, direction, packet)?;
    Some((fault, packet))
}

/// The packet, if it matches the fault and is picked (counted either way).
#[inline(always)]
fn acts_on<B: Bytes>(
    skb: &B,
    fault: &NetFault,
    direction: u32,
    packet: impl FnOnce(&B) -> Option<Packet>,
) -> Option<Packet> {
    // SAFETY: a helper call without arguments.
    if fault.directions & direction == 0 || unsafe { bpf_ktime_get_ns() } >= fault.deadline_ns {
        return None;
    }
    let mut packet = packet(skb)?;
    if !passes_filters(fault, &packet) {
        return None;
    }
    // Corruption needs a payload to flip a bit in: segments without one do not match.
    if is_corrupt(fault) && payload(skb, &packet).is_none() {
        return None;
    }
    // A DNS fault matches the DNS messages it acts on, nothing else.
    if dns::is_dns(fault) {
        packet.question_end = skb.dns_message(&packet, fault)?;
    }
    let counters = NET_COUNTERS.get_ptr_mut(direction - 1)?;
    // SAFETY: a per-CPU value; TC programs do not nest on one CPU.
    let counters = unsafe { &mut *counters };
    counters.matched += 1;
    if !picked(fault) {
        return None;
    }
    counters.injected += 1;
    Some(packet)
}

/// Whether the fault acts on this matching packet: a draw against its probability, or a step of
/// the Gilbert-Elliott model.
#[inline(always)]
fn picked(fault: &NetFault) -> bool {
    if fault.loss_model == NET_LOSS_GEMODEL {
        return gilbert_elliott(fault);
    }
    // SAFETY: a helper call without arguments.
    fault.probability >= PROBABILITY_ONE
        || u64::from(unsafe { bpf_get_prandom_u32() }) < fault.probability
}

/// One step of netem's Gilbert-Elliott model (loss_gilb_ell): first the state may change, then
/// the packet is lost with the loss of the state it is in. Racing CPUs may both step the state:
/// the model's rates hold on average.
#[inline(always)]
fn gilbert_elliott(fault: &NetFault) -> bool {
    let Some(state) = NET_GE_STATE.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: helper calls without arguments; `state` points into a live array map.
    unsafe {
        if *state == GE_GOOD {
            if bpf_get_prandom_u32() < fault.ge_p {
                *state = GE_BAD;
            }
            bpf_get_prandom_u32() < fault.ge_1k
        } else {
            if bpf_get_prandom_u32() < fault.ge_r {
                *state = GE_GOOD;
            }
            bpf_get_prandom_u32() > fault.ge_h
        }
    }
}

/// Sends a copy of the packet through the same interface in the same direction, marked so that
/// this program lets it pass; the original goes on with its own mark.
#[inline(always)]
fn duplicate(ctx: &TcContext, flags: u64) -> i32 {
    // SAFETY: the kernel hands the program a valid __sk_buff.
    let (mark, ifindex) = unsafe { ((*ctx.skb.skb).mark, (*ctx.skb.skb).ifindex) };
    ctx.set_mark(DUPLICATE_MARK);
    let _ = ctx.clone_redirect(ifindex, flags);
    ctx.set_mark(mark);
    TC_ACT_UNSPEC
}

/// Moves the packet's earliest departure time `delay ± jitter` past the later of now and the
/// time it already had; the fq qdisc on the interface holds it until then. Packets of one flow
/// leave in order (fq keeps a flow's queue in order), as with netem's default.
#[inline(always)]
fn delay(ctx: &TcContext, fault: &NetFault) -> i32 {
    // SAFETY: helper calls without arguments; the kernel hands the program a valid __sk_buff,
    // whose tstamp a TC egress program may write (kernel >= 5.18 marks it a delivery time).
    unsafe {
        let now = bpf_ktime_get_ns();
        let skb = ctx.skb.skb;
        let departs = if (*skb).tstamp > now {
            (*skb).tstamp
        } else {
            now
        };
        (*skb).tstamp = departs + sampled_delay(fault);
    }
    TC_ACT_UNSPEC
}

/// Gives the packet the next free departure slot at the fault's rate, or drops it when that
/// slot is more than [`LIMIT_QUEUE_NS`] away. The slot is taken with a plain read and write:
/// CPUs racing for it can send a packet each early, which slightly exceeds the rate.
#[inline(always)]
fn limit(ctx: &TcContext, fault: &NetFault) -> i32 {
    let Some(next) = NET_RATE_STATE.get_ptr_mut(0) else {
        return TC_ACT_UNSPEC;
    };
    // SAFETY: a helper call without arguments; the kernel hands the program a valid __sk_buff
    // whose tstamp a TC egress program may write; `next` points into a live array map.
    unsafe {
        let now = bpf_ktime_get_ns();
        let skb = ctx.skb.skb;
        let mut departs = if *next > now { *next } else { now };
        if (*skb).tstamp > departs {
            departs = (*skb).tstamp;
        }
        if departs - now > LIMIT_QUEUE_NS {
            return TC_ACT_SHOT;
        }
        // Nanoseconds the packet takes at the rate (checked_div: no panic path for the verifier).
        let cost = (u64::from((*skb).len) * 1_000_000_000)
            .checked_div(fault.rate_bytes)
            .unwrap_or(0);
        *next = departs + cost;
        (*skb).tstamp = departs;
    }
    TC_ACT_UNSPEC
}

/// One draw of the delay in ns: `delay` plus jitter, uniform in [-jitter, jitter) or, with a
/// table, netem's tabledist (`delay + jitter * t / NET_DIST_SCALE` for a random entry `t`);
/// never below zero. Signed division is avoided (BPF v3 has none).
#[inline(always)]
fn sampled_delay(fault: &NetFault) -> u64 {
    let (mu, sigma) = (fault.delay_ns, fault.jitter_ns);
    if sigma == 0 {
        return mu;
    }
    // SAFETY: a helper call without arguments.
    let random = u64::from(unsafe { bpf_get_prandom_u32() });
    // checked_rem: a plain `%` would bring a panic path the verifier refuses (the divisors are
    // never zero here).
    if fault.dist_size == 0 {
        let spread = random.checked_rem(2 * sigma).unwrap_or(0);
        return (mu + spread).saturating_sub(sigma);
    }
    let index = random.checked_rem(u64::from(fault.dist_size)).unwrap_or(0) as u32;
    let Some(&entry) = NET_DELAY_DIST.get(index) else {
        return mu;
    };
    let scale = NET_DIST_SCALE as u64;
    let t = u64::from(entry.unsigned_abs());
    let offset = ((sigma % scale) * t + scale / 2) / scale + (sigma / scale) * t;
    if entry < 0 {
        mu.saturating_sub(offset)
    } else {
        mu + offset
    }
}

/// Whether the fault's packets are simply lost.
#[inline(always)]
fn is_loss(fault: &NetFault) -> bool {
    fault.action == NET_ACTION_DROP || fault.action == NET_ACTION_DNS_DROP
}

#[inline(always)]
fn is_corrupt(fault: &NetFault) -> bool {
    fault.action == NET_ACTION_CORRUPT || fault.action == NET_ACTION_CORRUPT_SILENT
}

/// The part of a TCP or UDP segment a corrupt fault flips bits in.
struct Payload {
    /// Offsets of the segment's checksum field and of its payload.
    checksum: usize,
    start: usize,
    /// 16-bit words of payload (a trailing odd byte is left alone).
    words: u32,
}

#[inline(always)]
fn payload(skb: &impl Bytes, packet: &Packet) -> Option<Payload> {
    if packet.l4 == 0 {
        return None;
    }
    let (header_len, checksum) = if packet.proto == IPPROTO_TCP {
        let data_offset: u8 = skb.read(packet.l4 + 12)?;
        (usize::from(data_offset >> 4) * 4, packet.l4 + 16)
    } else {
        (8, packet.l4 + 6)
    };
    let words = (packet.l4_len.checked_sub(header_len)? / 2) as u32;
    (words > 0).then_some(Payload {
        checksum,
        start: packet.l4 + header_len,
        words,
    })
}

/// Flips one random bit of the payload. Silent: the checksum is fixed, and the application gets
/// the altered data (a packet whose checksum is yet to be computed needs no fix: the computation
/// covers the flipped bit). Otherwise the checksum is left as it was, so the receiver's check
/// drops the packet: a checksum a device or an earlier check vouched for (CHECKSUM_UNNECESSARY)
/// is marked unchecked again, and a packet whose checksum is yet to be computed, which nothing
/// would check, is lost here instead: true when the caller is to drop it.
#[inline(always)]
fn corrupt(ctx: &TcContext, fault: &NetFault, packet: &Packet) -> bool {
    let Some(payload) = payload(&ctx.skb, packet) else {
        return false;
    };
    // SAFETY: helper calls without arguments.
    let (word, bit) = unsafe { (bpf_get_prandom_u32(), bpf_get_prandom_u32() & 15) };
    // checked_rem: no panic path for the verifier (words > 0).
    let at = payload.start + 2 * word.checked_rem(payload.words).unwrap_or(0) as usize;
    let Ok(old) = ctx.load::<u16>(at) else {
        return false;
    };
    let new = old ^ (1 << bit);
    if fault.action == NET_ACTION_CORRUPT_SILENT {
        // UDP over IPv4 may carry no checksum (0): MARK_MANGLED_0 keeps it so.
        let udp = if packet.proto == IPPROTO_UDP {
            u64::from(BPF_F_MARK_MANGLED_0)
        } else {
            0
        };
        let _ = ctx.store(at, &new, 0);
        let _ = ctx.l4_csum_replace(payload.checksum, u64::from(old), u64::from(new), 2 | udp);
        return false;
    }
    if checksum_pending(&ctx.skb, packet, payload.checksum) {
        return true;
    }
    // RECOMPUTE_CSUM: a received packet's CHECKSUM_COMPLETE sum follows the data, so the check
    // made from it fails too.
    let _ = ctx.store(at, &new, u64::from(BPF_F_RECOMPUTE_CSUM));
    // SAFETY: the kernel hands the program a valid __sk_buff.
    unsafe { bpf_csum_level(ctx.skb.skb, u64::from(BPF_CSUM_LEVEL_RESET)) };
    false
}

/// Whether the segment's checksum (the field at `checksum_at`) is still to be computed
/// (CHECKSUM_PARTIAL, sent from this host with checksum offload): the field then holds just the
/// sum of the pseudo-header (addresses, protocol, length), which a finished checksum equals
/// once in 65,536 packets (a corrupted one is then lost in place of a failed check, which is
/// what it was picked for anyway). The kernel trusts such a packet's checksum on every path
/// within the host.
#[inline(always)]
fn checksum_pending(bytes: &impl Bytes, packet: &Packet, checksum_at: usize) -> bool {
    let Some(field) = bytes.read::<u16>(checksum_at) else {
        return false;
    };
    let sum = fold(pseudo_header_sum(packet, packet.l4_len));
    let is_zero = |value: u16| value == 0 || value == 0xffff;
    field == sum || (is_zero(field) && is_zero(sum))
}

/// The one's complement sum (unfolded) of the TCP/UDP pseudo-header's 16-bit words for a
/// segment of `len` bytes, in memory order like the checksum field as loaded.
#[inline(always)]
fn pseudo_header_sum(packet: &Packet, len: usize) -> u64 {
    let halves = |word: u32| u64::from(word & 0xffff) + u64::from(word >> 16);
    // IPv4 addresses are the last word of their IPv4-mapped form.
    let first = if packet.ethertype == ETH_P_IPV6 { 0 } else { 3 };
    let mut sum = 0u64;
    for i in first..4 {
        sum += halves(packet.src[i]) + halves(packet.dst[i]);
    }
    let len = len as u32;
    sum + u64::from(u16::from_ne_bytes([0, packet.proto as u8]))
        + u64::from(u16::from_ne_bytes(((len >> 16) as u16).to_be_bytes()))
        + u64::from(u16::from_ne_bytes((len as u16).to_be_bytes()))
}

/// Folds a one's complement sum to 16 bits.
#[inline(always)]
fn fold(mut sum: u64) -> u16 {
    for _ in 0..4 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Packets arriving on the interface: dropped (the receiver never sees them, as on a lossy
/// wire), duplicated (the copy arrives right behind) or corrupted.
#[classifier]
pub fn tc_ingress(ctx: TcContext) -> i32 {
    let lost = match fault_for(&ctx.skb, DIRECTION_INGRESS, parse_ethernet) {
        None => false,
        Some((fault, _)) if fault.action == NET_ACTION_DUPLICATE => {
            return duplicate(&ctx, BPF_F_INGRESS);
        }
        Some((fault, packet)) if is_corrupt(fault) => corrupt(&ctx, fault, &packet),
        Some((fault, packet)) if fault.action == NET_ACTION_DNS_RCODE => {
            dns::answer_with_error(&ctx, &packet, fault, packet.question_end);
            false
        }
        Some((fault, _)) => is_loss(fault),
    };
    if lost { TC_ACT_SHOT } else { TC_ACT_UNSPEC }
}

/// Packets leaving through the interface: dropped after the sender's stack let them go,
/// duplicated, corrupted, or delayed.
#[classifier]
pub fn tc_egress(ctx: TcContext) -> i32 {
    let lost = match fault_for(&ctx.skb, DIRECTION_EGRESS, parse_ethernet) {
        None => false,
        Some((fault, _)) if fault.action == NET_ACTION_DUPLICATE => return duplicate(&ctx, 0),
        Some((fault, _)) if fault.action == NET_ACTION_DELAY => return delay(&ctx, fault),
        Some((fault, _)) if fault.action == NET_ACTION_LIMIT => return limit(&ctx, fault),
        Some((fault, packet)) if is_corrupt(fault) => corrupt(&ctx, fault, &packet),
        Some((fault, packet)) if fault.action == NET_ACTION_DNS_RCODE => {
            dns::answer_with_error(&ctx, &packet, fault, packet.question_end);
            false
        }
        Some((fault, _)) => is_loss(fault),
    };
    if lost {
        // SAFETY: a helper call with plain integer arguments.
        unsafe { bpf_redirect(NO_IFINDEX, 0) as i32 }
    } else {
        TC_ACT_UNSPEC
    }
}

/// Flips one random bit of the payload in an XDP buffer, where the skb's checksum helpers are
/// not: silent, the checksum is fixed by hand (RFC 1624) unless it is yet to be computed or is
/// an IPv4 UDP datagram's "none"; otherwise it is left wrong for the receiver's check, and a
/// packet whose checksum is yet to be computed (from a local sender over veth, which no check
/// would catch) is dropped instead: true when the caller is to drop it. A device that vouched
/// for the checksum before the program ran (CHECKSUM_UNNECESSARY) makes the damage reach the
/// application: the README says so.
#[inline(always)]
fn xdp_corrupt(bytes: &XdpBytes, fault: &NetFault, packet: &Packet) -> bool {
    let Some(payload) = payload(bytes, packet) else {
        return false;
    };
    // SAFETY: helper calls without arguments.
    let (word, bit) = unsafe { (bpf_get_prandom_u32(), bpf_get_prandom_u32() & 15) };
    let at = payload.start + 2 * word.checked_rem(payload.words).unwrap_or(0) as usize;
    let (Some(old), Some(field)) = (bytes.read::<u16>(at), bytes.read::<u16>(payload.checksum))
    else {
        return false;
    };
    let new = old ^ (1 << bit);
    let pending = checksum_pending(bytes, packet, payload.checksum);
    if fault.action != NET_ACTION_CORRUPT_SILENT && pending {
        return true;
    }
    if bytes.write(at, new).is_none() {
        return false;
    }
    let unchecked = packet.proto == IPPROTO_UDP && field == 0;
    if fault.action == NET_ACTION_CORRUPT_SILENT && !pending && !unchecked {
        // HC' = ~(~HC + ~m + m'), in the one's complement arithmetic of 16-bit words.
        let sum = u64::from(!field) + u64::from(!old) + u64::from(new);
        let mut fixed = !fold(sum);
        if packet.proto == IPPROTO_UDP && fixed == 0 {
            fixed = 0xffff;
        }
        let _ = bytes.write(payload.checksum, fixed);
    }
    false
}

/// Packets arriving at the interface, before the stack builds an skb for them (a native XDP
/// driver) or right after (generic XDP): dropped or corrupted. A live fault costs every packet
/// one array lookup, as for TC.
#[xdp]
pub fn xdp_ingress(ctx: XdpContext) -> u32 {
    let Some(fault) = NET_FAULTS.get(0) else {
        return XDP_PASS;
    };
    let bytes = XdpBytes {
        start: ctx.data(),
        end: ctx.data_end(),
    };
    let lost = match acts_on(&bytes, fault, DIRECTION_INGRESS, parse_ethernet) {
        None => false,
        Some(packet) if is_corrupt(fault) => xdp_corrupt(&bytes, fault, &packet),
        Some(_) => is_loss(fault),
    };
    if lost { XDP_DROP } else { XDP_PASS }
}

/// Drops packets on their way to the sockets of the processes in the cgroup it is attached to
/// (cgroup_skb ingress, CONFIG_CGROUP_BPF): loss as the receiver sees it, for one cgroup's
/// traffic even when it shares a namespace with others (host-network containers).
#[cgroup_skb(ingress)]
pub fn cgroup_skb_ingress(ctx: SkBuffContext) -> i32 {
    match fault_for(&ctx.skb, DIRECTION_INGRESS, parse_ip) {
        Some(_) => CGROUP_SKB_DROP,
        None => CGROUP_SKB_PASS,
    }
}

chaos_ebpf::gpl_program!();
