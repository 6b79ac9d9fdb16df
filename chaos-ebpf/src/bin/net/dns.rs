//! DNS faults in the TC programs: which DNS messages a fault acts on (a response from port 53 or
//! a query to it, with one question whose name is under the fault's domain), and the rewrite of
//! a response into an error.

use aya_ebpf::{
    bindings::BPF_F_RECOMPUTE_CSUM,
    helpers::{bpf_csum_diff, bpf_skb_change_tail, bpf_skb_load_bytes},
    macros::map,
    maps::{Array, PerCpuArray},
    programs::{TcContext, sk_buff::SkBuff},
};
use chaos_common::net::{
    DNS_NAME_MAX, DNS_PORT, DnsName, NET_ACTION_DNS_DROP, NET_ACTION_DNS_RCODE, NetFault,
};

use super::{ETH_HLEN, ETH_P_IPV6, IPPROTO_UDP, Packet, checksum_pending, fold, pseudo_header_sum};

#[map]
static NET_DNS_NAME: Array<DnsName> = Array::with_max_entries(1, 0);

/// Room for a question's name, and for a rewritten response's whole UDP segment (UDP and DNS
/// headers, the name, its type and class: at most 279 bytes), zero-padded for bpf_csum_diff,
/// which sums multiples of 4 bytes.
const SCRATCH_LEN: usize = 288;

#[repr(C)]
struct Scratch {
    bytes: [u8; SCRATCH_LEN],
    /// Values written and read back: see [`launder`].
    laundry: [u64; 2],
}

#[map]
static DNS_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// `value` as the verifier sees what it reads from a map: unknown, whichever path computed it.
/// A loop over a name has one exit per label; laundering what comes out of it lets the verifier
/// check the code after it once instead of once per exit (which takes it minutes).
#[inline(always)]
fn launder(scratch: *mut Scratch, slot: usize, value: usize) -> usize {
    // SAFETY: `scratch` points at this CPU's live map value; `slot` is 0 or 1.
    unsafe {
        let cell = (&raw mut (*scratch).laundry[slot & 1]).cast::<u64>();
        core::ptr::write_volatile(cell, value as u64);
        core::ptr::read_volatile(cell) as usize
    }
}

const UDP_HEADER_LEN: usize = 8;
const DNS_HEADER_LEN: usize = 12;
/// Header flags: a response, the opcode (0: a standard query).
const QR_RESPONSE: u16 = 0x8000;
const OPCODE: u16 = 0x7800;
/// What a rewritten response keeps of its flags: QR, the opcode, RD and RA (AA, TC, Z, AD and
/// CD go: nothing is authoritative, truncated or authenticated any more).
const KEPT_FLAGS: u16 = 0xf980;
/// A label length above this is a compression pointer or reserved: no question's name has one.
const LABEL_MAX: u8 = 63;
/// The most labels a 255-byte name can have.
const LABELS_MAX: usize = 128;

#[inline(always)]
pub fn is_dns(fault: &NetFault) -> bool {
    fault.action == NET_ACTION_DNS_RCODE || fault.action == NET_ACTION_DNS_DROP
}

/// The offset just past the question of the DNS message in this packet, if the fault acts on
/// it: for an rcode fault a response from port 53, for a drop fault a query to port 53, with a
/// single question whose name is under the fault's domain (any name when it has none).
#[inline(always)]
pub fn message(skb: &SkBuff, packet: &Packet, fault: &NetFault) -> Option<usize> {
    if packet.proto != IPPROTO_UDP || packet.l4 == 0 {
        return None;
    }
    let response = fault.action == NET_ACTION_DNS_RCODE;
    let port = if response { packet.sport } else { packet.dport };
    if port != DNS_PORT {
        return None;
    }
    let dns = packet.l4 + UDP_HEADER_LEN;
    let flags = u16::from_be(skb.load::<u16>(dns + 2).ok()?);
    let questions = u16::from_be(skb.load::<u16>(dns + 4).ok()?);
    if (flags & QR_RESPONSE != 0) != response || flags & OPCODE != 0 || questions != 1 {
        return None;
    }
    let name_at = dns + DNS_HEADER_LEN;
    let scratch = DNS_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: a per-CPU value; TC programs do not nest on one CPU.
    let buf = unsafe { &mut (*scratch).bytes };
    let loaded = (packet.l4 + packet.l4_len)
        .checked_sub(name_at)?
        .min(DNS_NAME_MAX + 1);
    load_into(skb, name_at, buf, loaded)?;
    let name_len = launder(scratch, 0, name_length(buf, loaded)?);
    if name_len > DNS_NAME_MAX + 1 || !under(scratch, name_len, NET_DNS_NAME.get(0)?) {
        return None;
    }
    // The name, then its type and class.
    let end = name_at + name_len + 4;
    (end <= packet.l4 + packet.l4_len).then_some(end)
}

/// An index into the name's 256 bytes, for an offset the code already keeps below 256: the mask
/// shows the verifier the bound, and the volatile read keeps LLVM from dropping the mask as
/// redundant.
#[inline(always)]
fn byte_index(at: usize) -> usize {
    // SAFETY: a read of a local.
    unsafe { core::ptr::read_volatile(&at) & 0xff }
}

/// The length of the name at the start of `buf` (of which `loaded` bytes are the packet's),
/// its root label's 0 included; None for a name that does not end within them.
#[inline(always)]
fn name_length(buf: &[u8; SCRATCH_LEN], loaded: usize) -> Option<usize> {
    let mut at = 0usize;
    for _ in 0..LABELS_MAX {
        let label = buf[byte_index(at)];
        if label == 0 {
            return Some(at + 1);
        }
        if label > LABEL_MAX {
            return None;
        }
        at += usize::from(label) + 1;
        if at >= loaded {
            return None;
        }
    }
    None
}

/// Whether the name at the start of `buf` (`name_len` bytes) is `domain` or under it: its last
/// labels are the domain's, compared without regard to case (resolvers may randomise it).
#[inline(always)]
fn under(scratch: *mut Scratch, name_len: usize, domain: &DnsName) -> bool {
    // SAFETY: `scratch` points at this CPU's live map value.
    let buf = unsafe { &(*scratch).bytes };
    let suffix = domain.len as usize;
    if suffix == 0 {
        return true;
    }
    let Some(start) = name_len.checked_sub(suffix) else {
        return false;
    };
    // The domain must begin where a label does.
    let mut at = 0usize;
    for _ in 0..LABELS_MAX {
        if at >= start {
            break;
        }
        at += usize::from(buf[byte_index(at)]) + 1;
    }
    if launder(scratch, 1, usize::from(at == start)) == 0 {
        return false;
    }
    let start = launder(scratch, 0, start);
    for i in 0..=DNS_NAME_MAX {
        if i >= suffix {
            break;
        }
        if buf[byte_index(start + i)].to_ascii_lowercase() != domain.wire[i] {
            return false;
        }
    }
    true
}

/// Turns the response into an error: the fault's response code, no records, the packet cut
/// right after the question; the UDP and IP lengths and the checksums follow (every write
/// keeps a received CHECKSUM_COMPLETE sum right). A write the kernel refuses leaves the rest
/// undone.
#[inline(always)]
pub fn answer_with_error(ctx: &TcContext, packet: &Packet, fault: &NetFault, question_end: usize) {
    let _ = rewrite(ctx, packet, fault, question_end);
}

#[inline(always)]
fn rewrite(ctx: &TcContext, packet: &Packet, fault: &NetFault, question_end: usize) -> Option<()> {
    let recompute = u64::from(BPF_F_RECOMPUTE_CSUM);
    let dns = packet.l4 + UDP_HEADER_LEN;
    let checksum_at = packet.l4 + 6;
    // Decided before the lengths change: whether the checksum is still to be computed, and
    // whether there is one at all (UDP over IPv4 may go without).
    let pending = checksum_pending(&ctx.skb, packet, checksum_at);
    let unchecked = packet.ethertype != ETH_P_IPV6 && ctx.load::<u16>(checksum_at).ok()? == 0;

    let flags = u16::from_be(ctx.load::<u16>(dns + 2).ok()?);
    let flags = (flags & KEPT_FLAGS) | (fault.dns_rcode as u16 & 0x0f);
    ctx.store(dns + 2, &flags.to_be(), recompute).ok()?;
    // Answer, authority and additional counts.
    ctx.store(dns + 6, &[0u8; 6], recompute).ok()?;
    // SAFETY: the kernel hands the program a valid __sk_buff; TC programs may resize it.
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, question_end as u32, 0) } != 0 {
        return None;
    }
    let udp_len = (question_end - packet.l4) as u16;
    ctx.store(packet.l4 + 4, &udp_len.to_be(), recompute).ok()?;
    if packet.ethertype == ETH_P_IPV6 {
        ctx.store(ETH_HLEN + 4, &udp_len.to_be(), recompute).ok()?;
    } else {
        // The header checksum moves with the total length: together they sum as before, so a
        // CHECKSUM_COMPLETE sum needs no update for either.
        let total = ((question_end - ETH_HLEN) as u16).to_be();
        let old_total: u16 = ctx.load(ETH_HLEN + 2).ok()?;
        ctx.store(ETH_HLEN + 2, &total, 0).ok()?;
        ctx.l3_csum_replace(ETH_HLEN + 10, u64::from(old_total), u64::from(total), 2)
            .ok()?;
    }
    let checksum = if unchecked {
        0
    } else if pending {
        // Still to be computed over the new segment: the field holds the pseudo-header's sum.
        fold(pseudo_header_sum(packet, usize::from(udp_len)))
    } else {
        full_checksum(ctx, packet, usize::from(udp_len))?
    };
    ctx.store(checksum_at, &checksum, recompute).ok()
}

/// Copies `len` bytes (1 to SCRATCH_LEN) of the packet at `offset` to the start of `buf`, in
/// two pieces at most: the first 256 bytes, then the rest.
#[inline(always)]
fn load_into(skb: &SkBuff, offset: usize, buf: &mut [u8; SCRATCH_LEN], len: usize) -> Option<()> {
    if len == 0 || len > SCRATCH_LEN {
        return None;
    }
    let first = len.min(256);
    copy(skb, offset, buf.as_mut_ptr(), helper_size(first, 0xff))?;
    if len > first {
        // SAFETY: 256 bytes into a 288-byte buffer; the rest is at most 32 bytes.
        let rest = unsafe { buf.as_mut_ptr().add(256) };
        copy(skb, offset + 256, rest, helper_size(len - first, 0x1f))?;
    }
    Some(())
}

/// A size the helper is given: `n` (1 to mask + 1) as the verifier can bound it. A bound it
/// learns from a comparison is lost when LLVM passes a copy spilled before the comparison (the
/// 6.1 verifier then refuses the call); a bound made by masking travels with the value. The
/// volatile read keeps LLVM from dropping the mask as redundant.
#[inline(always)]
fn helper_size(n: usize, mask: usize) -> u32 {
    // SAFETY: a read of a local.
    let n = unsafe { core::ptr::read_volatile(&n) };
    ((n.wrapping_sub(1) & mask) + 1) as u32
}

#[inline(always)]
fn copy(skb: &SkBuff, offset: usize, to: *mut u8, size: u32) -> Option<()> {
    // SAFETY: the kernel hands the program a valid __sk_buff; the callers pass room for `size`.
    let copied = unsafe { bpf_skb_load_bytes(skb.skb.cast(), offset as u32, to.cast(), size) };
    (copied == 0).then_some(())
}

/// The UDP checksum of the segment at `packet.l4`, `len` bytes long, computed afresh.
#[inline(always)]
fn full_checksum(ctx: &TcContext, packet: &Packet, len: usize) -> Option<u16> {
    let scratch = DNS_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: a per-CPU value; TC programs do not nest on one CPU.
    let buf = unsafe { &mut (*scratch).bytes };
    // Zero first: the sum covers the whole buffer, and zeros add nothing.
    // SAFETY: the buffer is 288 bytes, 36 u64 words, aligned as map values are (8 bytes).
    let words = unsafe { &mut *buf.as_mut_ptr().cast::<[u64; SCRATCH_LEN / 8]>() };
    for word in words.iter_mut() {
        *word = 0;
    }
    load_into(&ctx.skb, packet.l4, buf, len)?;
    // The checksum field counts as 0.
    buf[6] = 0;
    buf[7] = 0;
    // SAFETY: a sum over the map value, no bytes taken away.
    let sum = unsafe {
        bpf_csum_diff(
            core::ptr::null_mut(),
            0,
            buf.as_mut_ptr().cast(),
            SCRATCH_LEN as u32,
            0,
        )
    };
    if sum < 0 {
        return None;
    }
    let checksum = !fold(u64::from(sum as u32) + pseudo_header_sum(packet, len));
    // 0 means "no checksum" in UDP: a sum of 0 is sent as its other form.
    Some(if checksum == 0 { 0xffff } else { checksum })
}
