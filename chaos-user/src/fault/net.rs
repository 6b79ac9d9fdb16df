//! Network faults: what `chaos net ACTION` asks the TC programs to do, parsed and checked.

use std::time::Duration;

use chaos_common::net;

use super::{Cidr, ParseError, probability_threshold};
pub use crate::attach::XdpMode;

/// Which way the packets a fault acts on travel, seen from the target interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
    Both,
}

impl Direction {
    /// As `--direction` takes it.
    pub const fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
            Direction::Both => "both",
        }
    }

    /// The directions as [`net::NetFault::directions`] bits.
    pub const fn bits(self) -> u32 {
        match self {
            Direction::Ingress => net::DIRECTION_INGRESS,
            Direction::Egress => net::DIRECTION_EGRESS,
            Direction::Both => net::DIRECTION_INGRESS | net::DIRECTION_EGRESS,
        }
    }
}

/// Parses `--direction`: ingress, egress or both.
pub fn parse_direction(s: &str) -> Result<Direction, ParseError> {
    match s {
        "ingress" | "in" => Ok(Direction::Ingress),
        "egress" | "out" => Ok(Direction::Egress),
        "both" => Ok(Direction::Both),
        other => Err(ParseError::UnknownDirection(other.to_owned())),
    }
}

/// Where on an interface a packet fault acts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NetHook {
    /// TC programs: both directions, every action, an skb with its helpers.
    #[default]
    Tc,
    /// An XDP program: arriving packets only, drop and corrupt, before the stack builds an skb
    /// (native) or right after (generic).
    Xdp(XdpMode),
}

impl NetHook {
    /// As `--hook` takes it.
    pub const fn name(self) -> &'static str {
        match self {
            NetHook::Tc => "tc",
            NetHook::Xdp(XdpMode::Auto) => "xdp",
            NetHook::Xdp(XdpMode::Native) => "xdp-native",
            NetHook::Xdp(XdpMode::Generic) => "xdp-generic",
        }
    }
}

/// Parses `--hook`: tc, xdp, xdp-native or xdp-generic.
pub fn parse_hook(s: &str) -> Result<NetHook, ParseError> {
    match s {
        "tc" => Ok(NetHook::Tc),
        "xdp" => Ok(NetHook::Xdp(XdpMode::Auto)),
        "xdp-native" | "xdp-drv" => Ok(NetHook::Xdp(XdpMode::Native)),
        "xdp-generic" | "xdp-skb" => Ok(NetHook::Xdp(XdpMode::Generic)),
        other => Err(ParseError::UnknownHook(other.to_owned())),
    }
}

/// Parses `--proto`: tcp, udp or icmp (ICMPv6 too); returns the IP protocol number.
/// IPPROTO_ICMP: `--proto icmp`, which the programs take for ICMPv6 too.
pub const IPPROTO_ICMP: u32 = 1;
pub const IPPROTO_UDP: u32 = 17;

pub fn parse_proto(s: &str) -> Result<u32, ParseError> {
    match s {
        "tcp" => Ok(6),
        "udp" => Ok(IPPROTO_UDP),
        "icmp" | "icmpv6" => Ok(IPPROTO_ICMP),
        other => Err(ParseError::UnknownProto(other.to_owned())),
    }
}

/// The packets a network fault acts on: `--proto`, ports, networks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketFilter {
    pub proto: Option<u32>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub src: Option<Cidr>,
    pub dst: Option<Cidr>,
}

impl PacketFilter {
    /// The filters as the command line gave them, for the report.
    pub fn describe(&self) -> Vec<String> {
        let proto = self.proto.map(|proto| match proto {
            IPPROTO_ICMP => "--proto icmp".to_owned(),
            IPPROTO_UDP => "--proto udp".to_owned(),
            _ => "--proto tcp".to_owned(),
        });
        proto
            .into_iter()
            .chain(self.sport.map(|port| format!("--sport {port}")))
            .chain(self.dport.map(|port| format!("--dport {port}")))
            .chain(self.src.map(|net| format!("--src {net}")))
            .chain(self.dst.map(|net| format!("--dst {net}")))
            .collect()
    }

    /// Ports belong to TCP and UDP: `--proto icmp` with a port matches nothing, so it is refused.
    pub fn check(&self) -> Result<(), ParseError> {
        if self.proto == Some(IPPROTO_ICMP) && (self.sport.is_some() || self.dport.is_some()) {
            return Err(ParseError::PortWithoutPorts);
        }
        Ok(())
    }
}

/// What a packet fault does to the packets it picks.
// A DNS fault's name makes this 264 bytes; a run has one fault, copied a few times.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketAction {
    /// Lost.
    Drop,
    /// Delivered twice.
    Duplicate,
    /// Held back (egress only).
    Delay(Delay),
    /// Paced to a rate in bytes per second (egress only).
    Limit(u64),
    /// One bit of the payload flipped; `silent`: with the checksum fixed, so the application
    /// gets the damage, else left for the receiver's checksum check to catch.
    Corrupt { silent: bool },
    /// DNS over UDP: responses rewritten to an error, or queries lost.
    Dns(Dns),
}

/// What a DNS fault does: answer with `rcode` (None: the queries vanish), for names under
/// `name` (length 0: every name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dns {
    pub rcode: Option<Rcode>,
    pub name: net::DnsName,
}

/// The DNS response codes a DNS fault answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rcode {
    ServFail = 2,
    NxDomain = 3,
    Refused = 5,
}

impl Rcode {
    pub const fn name(self) -> &'static str {
        match self {
            Rcode::ServFail => "SERVFAIL",
            Rcode::NxDomain => "NXDOMAIN",
            Rcode::Refused => "REFUSED",
        }
    }
}

pub fn parse_rcode(s: &str) -> Result<Rcode, ParseError> {
    match s.to_ascii_uppercase().as_str() {
        "SERVFAIL" => Ok(Rcode::ServFail),
        "NXDOMAIN" => Ok(Rcode::NxDomain),
        "REFUSED" => Ok(Rcode::Refused),
        _ => Err(ParseError::UnknownRcode(s.to_owned())),
    }
}

/// A domain name as the programs compare it: wire format, lowercase. `example.com` and
/// `example.com.` alike; labels of letters, digits, `-` and `_`, 1 to 63 bytes, 255 in all.
pub fn parse_dns_name(s: &str) -> Result<net::DnsName, ParseError> {
    let error = || ParseError::InvalidDnsName(s.to_owned());
    let text = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    if text.is_empty() {
        return Err(error());
    }
    let mut name = net::DnsName::default();
    let mut at = 0;
    for label in text.split('.') {
        let valid = (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid || at + 1 + label.len() + 1 > net::DNS_NAME_MAX {
            return Err(error());
        }
        name.wire[at] = label.len() as u8;
        name.wire[at + 1..at + 1 + label.len()].copy_from_slice(label.as_bytes());
        at += 1 + label.len();
    }
    name.len = at as u32 + 1; // the root label's 0 is already there
    Ok(name)
}

/// The name back in dotted form, for messages.
pub fn dns_name_text(name: &net::DnsName) -> String {
    let mut labels = Vec::new();
    let mut at = 0;
    while at < name.len as usize && name.wire[at] != 0 {
        let len = usize::from(name.wire[at]);
        labels.push(String::from_utf8_lossy(&name.wire[at + 1..at + 1 + len]).into_owned());
        at += 1 + len;
    }
    labels.join(".")
}

impl PacketAction {
    pub const fn name(self) -> &'static str {
        match self {
            PacketAction::Drop => "drop",
            PacketAction::Duplicate => "duplicate",
            PacketAction::Delay(_) => "delay",
            PacketAction::Limit(_) => "limit",
            PacketAction::Corrupt { .. } => "corrupt",
            PacketAction::Dns(_) => "dns",
        }
    }

    /// Delays and limits time packets' departures, which the fq qdisc honours.
    pub const fn needs_fq(self) -> bool {
        matches!(self, PacketAction::Delay(_) | PacketAction::Limit(_))
    }

    const fn kernel(self) -> u32 {
        match self {
            PacketAction::Drop => net::NET_ACTION_DROP,
            PacketAction::Duplicate => net::NET_ACTION_DUPLICATE,
            PacketAction::Delay(_) => net::NET_ACTION_DELAY,
            PacketAction::Limit(_) => net::NET_ACTION_LIMIT,
            PacketAction::Corrupt { silent: false } => net::NET_ACTION_CORRUPT,
            PacketAction::Corrupt { silent: true } => net::NET_ACTION_CORRUPT_SILENT,
            PacketAction::Dns(Dns { rcode: Some(_), .. }) => net::NET_ACTION_DNS_RCODE,
            PacketAction::Dns(Dns { rcode: None, .. }) => net::NET_ACTION_DNS_DROP,
        }
    }
}

/// The horizon of the fq qdisc (its default): a packet timed further ahead is dropped by fq.
pub const FQ_HORIZON: Duration = Duration::from_secs(10);

/// How a delay fault holds packets back: `delay` plus jitter drawn from `distribution` with
/// `jitter` as its spread (netem's mu and sigma).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delay {
    pub delay: Duration,
    pub jitter: Duration,
    pub distribution: Distribution,
}

impl Delay {
    /// Checks the delay against fq's horizon (netem's tables reach 4 sigma).
    pub fn check(&self) -> Result<(), ParseError> {
        if self.distribution != Distribution::Uniform && self.jitter.is_zero() {
            return Err(ParseError::DistributionWithoutJitter(
                self.distribution.name().into(),
            ));
        }
        if self.delay + self.jitter * 4 > FQ_HORIZON {
            return Err(ParseError::DelayPastHorizon {
                delay: humantime::format_duration(self.delay).to_string(),
                jitter: humantime::format_duration(self.jitter).to_string(),
                horizon: FQ_HORIZON,
            });
        }
        Ok(())
    }
}

/// The shape of a delay's jitter: uniform, or one of netem's tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distribution {
    Uniform,
    Normal,
    Pareto,
    Paretonormal,
}

/// Where iproute2 installs netem's distribution tables.
const DIST_DIRS: [&str; 4] = [
    "/usr/lib/x86_64-linux-gnu/tc",
    "/usr/lib/aarch64-linux-gnu/tc",
    "/usr/lib/tc",
    "/usr/lib64/tc",
];

impl Distribution {
    pub const fn name(self) -> &'static str {
        match self {
            Distribution::Uniform => "uniform",
            Distribution::Normal => "normal",
            Distribution::Pareto => "pareto",
            Distribution::Paretonormal => "paretonormal",
        }
    }

    /// The table the kernel samples: netem's own, iproute2's NAME.dist (entries scaled by
    /// NET_DIST_SCALE); empty for uniform jitter.
    pub fn table(self) -> Result<Vec<i16>, ParseError> {
        if self == Distribution::Uniform {
            return Ok(Vec::new());
        }
        let name = self.name();
        let error = |reason: String| ParseError::DistributionTable {
            name,
            searched: DIST_DIRS.join(", "),
            reason,
        };
        let text = DIST_DIRS
            .iter()
            .find_map(|dir| std::fs::read_to_string(format!("{dir}/{name}.dist")).ok())
            .ok_or_else(|| error("not found".into()))?;
        let table = text
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .flat_map(str::split_whitespace)
            .map(|word| {
                word.parse::<i16>()
                    .map_err(|_| error(format!("'{word}' is not a table entry")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if table.is_empty() || table.len() > net::NET_DIST_MAX as usize {
            return Err(error(format!(
                "{} entries, expected 1 to {}",
                table.len(),
                net::NET_DIST_MAX
            )));
        }
        Ok(table)
    }
}

/// Parses a rate as tc writes them: `10mbit` (bits per second; bit, kbit, mbit, gbit, decimal
/// prefixes) or `1mbps` (bytes per second); returns bytes per second.
pub fn parse_rate(s: &str) -> Result<u64, ParseError> {
    let error = || ParseError::InvalidRate(s.to_owned());
    let lower = s.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(error)?;
    let (number, unit) = lower.split_at(split);
    let number: f64 = number.parse().map_err(|_| error())?;
    let bits_per_unit = match unit {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        _ => return Err(error()),
    };
    let bits = number * bits_per_unit;
    if !(8e3..=100e9).contains(&bits) {
        return Err(error());
    }
    Ok((bits / 8.0) as u64)
}

pub fn parse_distribution(s: &str) -> Result<Distribution, ParseError> {
    match s {
        "uniform" => Ok(Distribution::Uniform),
        "normal" => Ok(Distribution::Normal),
        "pareto" => Ok(Distribution::Pareto),
        "paretonormal" => Ok(Distribution::Paretonormal),
        other => Err(ParseError::UnknownDistribution(other.to_owned())),
    }
}

/// What a network fault's programs read besides the fault itself.
pub struct NetTables {
    pub delay: Vec<i16>,
    pub dns_name: net::DnsName,
}

/// A packet fault: the packets the filter picks, in `direction`, get `action` with
/// `probability`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PacketFault {
    pub action: PacketAction,
    pub direction: Direction,
    pub probability: f64,
    pub filter: PacketFilter,
    /// Correlated loss instead of `probability` (drops only).
    pub loss_model: Option<GilbertElliott>,
    pub hook: NetHook,
}

/// netem's Gilbert-Elliott loss model, in percent: `p` good to bad, `r` bad to good, the loss
/// in the bad state (1-h) and in the good state (1-k), each per packet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GilbertElliott {
    pub p: f64,
    pub r: f64,
    pub loss_bad: f64,
    pub loss_good: f64,
}

impl GilbertElliott {
    /// The share of packets lost in the long run: the time in each state by its loss.
    pub fn mean_loss(&self) -> f64 {
        let bad = self.p / (self.p + self.r);
        (bad * self.loss_bad + (1.0 - bad) * self.loss_good) / 100.0
    }
}

/// Parses `gemodel:P,R[,1-H[,1-K]]` (percentages; netem's defaults: R = 100 - P, 1-H = 100,
/// 1-K = 0).
pub fn parse_loss_model(s: &str) -> Result<GilbertElliott, ParseError> {
    let error = || ParseError::InvalidLossModel(s.to_owned());
    let values = s.strip_prefix("gemodel:").ok_or_else(error)?;
    let numbers: Vec<f64> = values
        .split(',')
        .map(|v| v.trim().trim_end_matches('%').parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| error())?;
    if numbers.is_empty() || numbers.len() > 4 || numbers.iter().any(|n| !(0.0..=100.0).contains(n))
    {
        return Err(error());
    }
    let p = numbers[0];
    let model = GilbertElliott {
        p,
        r: numbers.get(1).copied().unwrap_or(100.0 - p),
        loss_bad: numbers.get(2).copied().unwrap_or(100.0),
        loss_good: numbers.get(3).copied().unwrap_or(0.0),
    };
    if model.p + model.r == 0.0 {
        return Err(error());
    }
    Ok(model)
}

/// A percentage as the threshold of a 32-bit random draw.
fn threshold(percent: f64) -> u32 {
    (percent / 100.0 * f64::from(u32::MAX)).round() as u32
}

/// A probability as a percentage without trailing zeros: 100, 0.5, 0.0001.
pub fn percent(probability: f64) -> String {
    let text = format!("{:.4}", probability * 100.0);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

impl PacketFault {
    /// XDP sees arriving packets before any skb or socket exists: it can drop them or rewrite
    /// them in place, nothing else, and knows no cgroup.
    pub fn check_hook(&self, cgroup: bool) -> Result<(), ParseError> {
        if self.hook == NetHook::Tc {
            return Ok(());
        }
        let reason = match self.action {
            PacketAction::Duplicate => Some("XDP has no clone helper to make the copy"),
            PacketAction::Delay(_) | PacketAction::Limit(_) => Some(
                "XDP runs before any skb or qdisc exists, and only on arriving packets: nothing can hold a packet back there",
            ),
            PacketAction::Dns(_) => Some(
                "a DNS fault rewrites and resizes responses with the skb helpers, which XDP lacks",
            ),
            PacketAction::Drop | PacketAction::Corrupt { .. } => None,
        };
        let reason = reason
            .or((self.direction != Direction::Ingress)
                .then_some("XDP sees only the packets arriving at an interface"))
            .or(cgroup.then_some(
                "XDP runs before any socket, so it cannot tell a cgroup's packets (--cgroup)",
            ));
        reason.map_or(Ok(()), |reason| Err(ParseError::XdpCannot(reason)))
    }

    /// The fault's parameters in a few words, for reports and `chaos list`: `30%`,
    /// `gemodel:1,10,100,0`, `50ms ± 10ms normal`, `80 Mbit/s`, `SERVFAIL for db.internal`.
    pub fn setting(&self) -> String {
        let share = match self.loss_model {
            Some(m) => format!("gemodel:{},{},{},{}", m.p, m.r, m.loss_bad, m.loss_good),
            None => format!("{}%", percent(self.probability)),
        };
        match self.action {
            PacketAction::Drop | PacketAction::Duplicate => share,
            PacketAction::Corrupt { silent } => {
                format!("{share}{}", if silent { " silent" } else { "" })
            }
            PacketAction::Delay(d) => {
                let mut text = humantime::format_duration(d.delay).to_string();
                if !d.jitter.is_zero() {
                    text += &format!(
                        " ± {} {}",
                        humantime::format_duration(d.jitter),
                        d.distribution.name()
                    );
                }
                if self.probability < 1.0 {
                    text += &format!(" {share}");
                }
                text
            }
            PacketAction::Limit(rate) => format!("{} bit/s", rate * 8),
            PacketAction::Dns(dns) => {
                let effect = dns.rcode.map_or("drop", Rcode::name);
                let name = if dns.name.len == 0 {
                    String::new()
                } else {
                    format!(" for {}", dns_name_text(&dns.name))
                };
                format!("{effect}{name} {share}")
            }
        }
    }

    /// What the programs read besides the fault: the distribution table a delay's jitter
    /// samples, a DNS fault's name.
    pub fn tables(&self) -> Result<NetTables, ParseError> {
        Ok(NetTables {
            delay: match self.action {
                PacketAction::Delay(delay) => delay.distribution.table()?,
                _ => Vec::new(),
            },
            dns_name: match self.action {
                PacketAction::Dns(dns) => dns.name,
                _ => net::DnsName::default(),
            },
        })
    }

    /// The fault as the TC programs read it (the deadline is set when attaching).
    pub fn kernel(&self) -> net::NetFault {
        let (src, src_mask) = self
            .filter
            .src
            .map_or(([0; 4], [0; 4]), |c| c.kernel_words());
        let (dst, dst_mask) = self
            .filter
            .dst
            .map_or(([0; 4], [0; 4]), |c| c.kernel_words());
        net::NetFault {
            deadline_ns: 0,
            probability: probability_threshold(self.probability),
            action: self.action.kernel(),
            directions: self.direction.bits(),
            proto: self.filter.proto.unwrap_or(0),
            sport: self.filter.sport.map_or(0, u32::from),
            dport: self.filter.dport.map_or(0, u32::from),
            dist_size: 0,
            src,
            src_mask,
            dst,
            dst_mask,
            delay_ns: match self.action {
                PacketAction::Delay(d) => d.delay.as_nanos() as u64,
                _ => 0,
            },
            jitter_ns: match self.action {
                PacketAction::Delay(d) => d.jitter.as_nanos() as u64,
                _ => 0,
            },
            rate_bytes: match self.action {
                PacketAction::Limit(rate) => rate,
                _ => 0,
            },
            loss_model: if self.loss_model.is_some() {
                net::NET_LOSS_GEMODEL
            } else {
                net::NET_LOSS_INDEPENDENT
            },
            ge_p: self.loss_model.map_or(0, |m| threshold(m.p)),
            ge_r: self.loss_model.map_or(0, |m| threshold(m.r)),
            ge_h: self.loss_model.map_or(0, |m| threshold(100.0 - m.loss_bad)),
            ge_1k: self.loss_model.map_or(0, |m| threshold(m.loss_good)),
            dns_rcode: match self.action {
                PacketAction::Dns(Dns {
                    rcode: Some(rcode), ..
                }) => rcode as u32,
                _ => 0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dns_names_become_lowercase_wire_format() {
        let name = parse_dns_name("Db.Internal.").unwrap();
        assert_eq!(&name.wire[..name.len as usize], b"\x02db\x08internal\x00");
        assert_eq!(dns_name_text(&name), "db.internal");
        for bad in [
            "",
            ".",
            "a..b",
            "a b.c",
            &"x".repeat(64),
            &["abc"; 64].join("."),
        ] {
            assert!(parse_dns_name(bad).is_err(), "{bad:?}");
        }
        // 253 characters is the longest a name can be written.
        let longest = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(parse_dns_name(&longest).unwrap().len, 255);
    }

    #[test]
    fn rcodes_by_name() {
        assert_eq!(parse_rcode("servfail").unwrap() as u32, 2);
        assert_eq!(parse_rcode("NXDOMAIN").unwrap() as u32, 3);
        assert_eq!(parse_rcode("REFUSED").unwrap() as u32, 5);
        assert!(parse_rcode("NOERROR").is_err());
    }

    use super::*;
    use crate::fault::parse_cidr;

    #[test]
    fn parses_gemodel_as_netem_does() {
        let m = parse_loss_model("gemodel:5,20").unwrap();
        assert_eq!((m.p, m.r, m.loss_bad, m.loss_good), (5.0, 20.0, 100.0, 0.0));
        assert!((m.mean_loss() - 0.2).abs() < 1e-9);
        let m = parse_loss_model("gemodel:1%").unwrap();
        assert_eq!(m.r, 99.0);
        for bad in [
            "gemodel:",
            "gemodel:101",
            "gemodel:1,2,3,4,5",
            "ge:1,2",
            "gemodel:0,0",
            "gemodel:x",
        ] {
            let err = parse_loss_model(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("'{bad}'")), "{bad}: {err}");
        }
        let kernel = PacketFault {
            action: PacketAction::Drop,
            direction: Direction::Ingress,
            probability: 1.0,
            filter: PacketFilter::default(),
            loss_model: Some(parse_loss_model("gemodel:50,100,100,0").unwrap()),
            hook: NetHook::Tc,
        }
        .kernel();
        assert_eq!(kernel.loss_model, net::NET_LOSS_GEMODEL);
        assert_eq!(
            (kernel.ge_p, kernel.ge_r, kernel.ge_h, kernel.ge_1k),
            (u32::MAX / 2 + 1, u32::MAX, 0, 0)
        );
    }

    #[test]
    fn parses_rates_as_tc_does() {
        assert_eq!(parse_rate("10mbit"), Ok(1_250_000));
        assert_eq!(parse_rate("1Gbit"), Ok(125_000_000));
        assert_eq!(parse_rate("512kbit"), Ok(64_000));
        assert_eq!(parse_rate("2mbps"), Ok(2_000_000));
        assert_eq!(parse_rate("1.5mbit"), Ok(187_500));
        for bad in ["10", "fast", "10mb", "-1mbit", "1bit", "1tbit", ""] {
            let err = parse_rate(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("'{bad}'")), "{bad}: {err}");
        }
    }

    #[test]
    fn xdp_takes_arriving_drops_and_corruption_only() {
        assert_eq!(parse_hook("xdp"), Ok(NetHook::Xdp(XdpMode::Auto)));
        assert_eq!(
            parse_hook("xdp-generic"),
            Ok(NetHook::Xdp(XdpMode::Generic))
        );
        assert!(parse_hook("bpf").unwrap_err().to_string().contains("'bpf'"));
        let at_xdp = |action, direction| PacketFault {
            action,
            direction,
            probability: 1.0,
            filter: PacketFilter::default(),
            loss_model: None,
            hook: NetHook::Xdp(XdpMode::Auto),
        };
        let ingress = Direction::Ingress;
        assert!(
            at_xdp(PacketAction::Drop, ingress)
                .check_hook(false)
                .is_ok()
        );
        let corrupt = PacketAction::Corrupt { silent: true };
        assert!(at_xdp(corrupt, ingress).check_hook(false).is_ok());
        for (action, direction, cgroup) in [
            (PacketAction::Duplicate, ingress, false),
            (PacketAction::Limit(1000), Direction::Egress, false),
            (PacketAction::Drop, Direction::Both, false),
            (PacketAction::Drop, ingress, true),
        ] {
            let err = at_xdp(action, direction).check_hook(cgroup).unwrap_err();
            assert!(matches!(err, ParseError::XdpCannot(_)), "{err}");
        }
    }

    #[test]
    fn parses_directions_and_protocols() {
        assert_eq!(parse_direction("both").unwrap().bits(), 3);
        assert_eq!(
            parse_direction("sideways"),
            Err(ParseError::UnknownDirection("sideways".into()))
        );
        assert_eq!(parse_proto("udp"), Ok(17));
        assert!(
            parse_proto("sctp")
                .unwrap_err()
                .to_string()
                .contains("sctp")
        );
    }

    #[test]
    fn a_drop_becomes_the_kernel_fault() {
        let fault = PacketFault {
            action: PacketAction::Drop,
            direction: Direction::Ingress,
            probability: 0.25,
            filter: PacketFilter {
                proto: Some(17),
                dport: Some(53),
                dst: Some(parse_cidr("10.0.0.0/8").unwrap()),
                ..PacketFilter::default()
            },
            loss_model: None,
            hook: NetHook::Tc,
        };
        let kernel = fault.kernel();
        assert_eq!(kernel.probability, 1 << 30);
        assert_eq!((kernel.proto, kernel.sport, kernel.dport), (17, 0, 53));
        assert_eq!(kernel.directions, net::DIRECTION_INGRESS);
        assert_eq!(kernel.src_mask, [0; 4], "no --src: any source");
        assert_ne!(kernel.dst_mask, [0; 4]);
        let icmp_port = PacketFilter {
            proto: Some(1),
            dport: Some(1),
            ..PacketFilter::default()
        };
        assert_eq!(icmp_port.check(), Err(ParseError::PortWithoutPorts));
    }
}
