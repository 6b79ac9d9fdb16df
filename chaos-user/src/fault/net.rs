//! Network faults: what `chaos net ACTION` asks the TC programs to do, parsed and checked.

use chaos_common::net;

use super::{Cidr, ParseError, probability_threshold};

/// Which way the packets a fault acts on travel, seen from the target interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
    Both,
}

impl Direction {
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

/// Parses `--proto`: tcp, udp or icmp (ICMPv6 too); returns the IP protocol number.
pub fn parse_proto(s: &str) -> Result<u32, ParseError> {
    match s {
        "tcp" => Ok(6),
        "udp" => Ok(17),
        "icmp" | "icmpv6" => Ok(1),
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
    /// Ports belong to TCP and UDP: `--proto icmp` with a port matches nothing, so it is refused.
    pub fn check(&self) -> Result<(), ParseError> {
        if self.proto == Some(1) && (self.sport.is_some() || self.dport.is_some()) {
            return Err(ParseError::PortWithoutPorts);
        }
        Ok(())
    }
}

/// What a packet fault does to the packets it picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketAction {
    /// Lost.
    Drop,
    /// Delivered twice.
    Duplicate,
}

impl PacketAction {
    pub const fn name(self) -> &'static str {
        match self {
            PacketAction::Drop => "drop",
            PacketAction::Duplicate => "duplicate",
        }
    }

    const fn kernel(self) -> u32 {
        match self {
            PacketAction::Drop => net::NET_ACTION_DROP,
            PacketAction::Duplicate => net::NET_ACTION_DUPLICATE,
        }
    }
}

/// A packet fault: the packets the filter picks, in `direction`, get `action` with
/// `probability`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PacketFault {
    pub action: PacketAction,
    pub direction: Direction,
    pub probability: f64,
    pub filter: PacketFilter,
}

impl PacketFault {
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
            _pad: 0,
            src,
            src_mask,
            dst,
            dst_mask,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::parse_cidr;

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
