//! `chaos net`: network faults on an interface or in a network namespace.

use std::time::Duration;

use clap::{Args, Subcommand};

use crate::{
    cli::{
        error::{Error, exit},
        how_it_ends, require_privileges,
    },
    fault::{
        self,
        net::{
            self as net_fault, Delay, Direction, Distribution, GilbertElliott, NetHook,
            PacketAction, PacketFault, PacketFilter, percent,
        },
    },
    plan,
    run::{self, NetFaultRun},
    target::net::{NetTarget, NetTargetSpec},
};

/// Network faults: packets of one interface or network namespace are lost, duplicated,
/// corrupted, delayed or rate-limited, by TC (or XDP) programs that only the faulted interfaces
/// run and that go away when the run ends.
///
/// Examples:
///   chaos net drop --netns /run/netns/app --probability 0.1 --for 5m
///   chaos net drop --iface veth1a2b --direction egress --proto tcp --dport 5432 --probability 1
///   chaos net drop --netns 4242 --src 10.0.0.0/8 --probability 0.3 --json
///   chaos net duplicate --container web1 --proto tcp --probability 0.01
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct NetArgs {
    #[command(subcommand)]
    pub action: NetAction,
}

#[derive(Debug, Subcommand)]
pub enum NetAction {
    /// Lose packets: the receiver's TCP sees real loss and retransmits.
    ///
    /// Ingress drops happen on arrival at the interface (the receiver never sees the packet);
    /// egress drops happen after the sender's stack let the packet go (a redirect to no device),
    /// so the sender's TCP too sees a loss, not a local error. Needs kernel >= 6.6 (tcx links)
    /// or clsact. With --hook xdp, arriving packets are dropped before the stack sees them.
    ///
    /// Examples:
    ///   chaos net drop --netns /run/netns/app --probability 0.1 --for 5m
    ///   chaos net drop --iface veth1a2b --direction egress --proto udp --dport 53 --probability 1
    ///   chaos net drop --iface eth1 --hook xdp --proto tcp --dport 2049 --probability 0.01
    #[command(verbatim_doc_comment)]
    Drop(PacketArgs),
    /// Deliver packets twice: a copy follows the packet through the same interface.
    ///
    /// The copy is made with bpf_clone_redirect into the same direction of the same interface
    /// and carries skb->mark 0x6368616f, by which the program lets it pass; the mark stays on
    /// the copy inside the receiving namespace. Needs kernel >= 6.6 (tcx links).
    ///
    /// Examples:
    ///   chaos net duplicate --netns /run/netns/app --probability 0.05 --for 5m
    ///   chaos net duplicate --iface veth1a2b --proto udp --probability 0.5
    #[command(verbatim_doc_comment)]
    Duplicate(PacketArgs),
    /// Flip a bit in packets' payloads, as a bad wire or a faulty device would.
    ///
    /// One random bit of the TCP or UDP payload (not the headers) of each picked packet flips;
    /// packets without payload (bare ACKs) do not match. By default the checksum is left as it
    /// was, so the receiver's checksum check drops the packet (its Udp/Tcp InCsumErrors count
    /// it) and TCP retransmits: loss, as on a bad wire. A packet this host sent with checksum
    /// offload has no checksum yet, and the kernel trusts such a packet on every path inside the
    /// host: chaos drops it in place of the check. With --silent the checksum is fixed and the
    /// application receives the altered bytes: the test of end-to-end integrity checks. IPv4
    /// and IPv6; a TSO/GRO packet counts as one. Needs kernel >= 6.6 (tcx links) or clsact.
    ///
    /// Examples:
    ///   chaos net corrupt --netns /run/netns/app --probability 0.01 --for 5m
    ///   chaos net corrupt --container db --proto tcp --sport 5432 --probability 0.001 --silent
    #[command(verbatim_doc_comment)]
    Corrupt(CorruptArgs),
    /// Break name resolution: DNS answers come back as errors, or queries vanish.
    ///
    /// --rcode: each DNS response (UDP from port 53) with one question, passing the target's
    /// interfaces either way, gets that response code and loses its answer, authority and
    /// additional sections (lengths and checksums fixed): resolvers see a real SERVFAIL,
    /// NXDOMAIN or REFUSED from their server. --drop: the queries (UDP to port 53) vanish and
    /// resolvers time out. --name limits either to names under a domain (the domain itself
    /// included), so everything else still resolves. DNS over TCP is not touched. Needs kernel
    /// >= 6.6 (tcx links) or clsact.
    ///
    /// Examples:
    ///   chaos net dns --container web --rcode SERVFAIL --for 2m
    ///   chaos net dns --netns /run/netns/app --rcode NXDOMAIN --name db.internal --probability 0.5
    ///   chaos net dns --iface veth1a2b --drop --name example.com
    #[command(verbatim_doc_comment)]
    Dns(DnsArgs),
    /// Hold packets back: each leaving packet departs DELAY (± jitter) later, as with netem.
    ///
    /// A TC egress program moves the packet's earliest departure time (skb->tstamp) and the fq
    /// qdisc holds it until then; chaos puts fq in place of the interface's default root qdisc
    /// for the run and the default back afterwards (a killed run's qdisc is put back by the next
    /// chaos invocation, or `chaos cleanup`). Only leaving packets: to delay both ways, delay
    /// both ends. Packets of one flow stay in order. Needs kernel >= 6.6 (tcx links) and
    /// CONFIG_NET_SCH_FQ (chaos installs the qdisc itself, through rtnetlink).
    ///
    /// Examples:
    ///   chaos net delay --netns /run/netns/app --delay 100ms --for 5m
    ///   chaos net delay --iface veth1a2b --delay 50ms --jitter 10ms --distribution normal
    ///   chaos net delay --container db --proto tcp --sport 5432 --delay 200ms
    #[command(verbatim_doc_comment)]
    Delay(DelayArgs),
    /// Limit the bandwidth: the leaving packets of the target, together, depart at no more than
    /// RATE, as through a slower link.
    ///
    /// A TC egress program gives each packet the next free departure time at that rate (its
    /// skb->tstamp) and the fq qdisc holds it until then, as for `chaos net delay` (fq installed
    /// and put back the same way). A packet that would wait more than 1 s is dropped, as by a
    /// full queue; the sender's TCP slows down. Packets racing on several CPUs can exceed the
    /// rate slightly. Needs kernel >= 6.6 (tcx links) and CONFIG_NET_SCH_FQ.
    ///
    /// Examples:
    ///   chaos net limit --netns /run/netns/app --rate 10mbit --for 5m
    ///   chaos net limit --container db --proto tcp --sport 5432 --rate 512kbit
    #[command(verbatim_doc_comment)]
    Limit(LimitArgs),
    // Its help is ResetArgs's.
    Reset(super::reset::ResetArgs),
}

/// A packet fault's target, filters and run.
#[derive(Debug, Args)]
pub struct PacketArgs {
    #[command(flatten)]
    pub target: NetTargetArgs,

    /// Act on each matching packet with this probability (0 < P <= 1).
    #[arg(long, value_name = "P", value_parser = fault::parse_probability,
          required_unless_present = "loss_model", conflicts_with = "loss_model")]
    pub probability: Option<f64>,

    /// Correlated loss instead of --probability (drop only): netem's Gilbert-Elliott model,
    /// gemodel:P,R[,1-H[,1-K]] in percent — P good to bad, R bad to good (defaults to 100-P),
    /// 1-H the loss in the bad state (100), 1-K the loss in the good state (0). gemodel:5,20
    /// loses 20 % of the packets in bursts of 5 on average.
    #[arg(long, value_name = "MODEL", value_parser = net_fault::parse_loss_model)]
    pub loss_model: Option<GilbertElliott>,

    /// Which packets, seen from the interface: ingress (arriving), egress (leaving) or both.
    #[arg(long, default_value = "ingress", value_parser = net_fault::parse_direction)]
    pub direction: Direction,

    #[command(flatten)]
    pub filter: PacketFilterArgs,

    #[command(flatten)]
    pub run: NetRunArgs,
}

/// A corrupt fault: a packet fault and whether the damage reaches the application.
#[derive(Debug, Args)]
pub struct CorruptArgs {
    #[command(flatten)]
    pub packet: PacketArgs,

    /// Fix the checksum of each corrupted packet, so the application receives the altered
    /// payload instead of the receiver dropping it.
    #[arg(long)]
    pub silent: bool,
}

impl CorruptArgs {
    /// The corrupt fault, checked as far as that is possible without the kernel and the target.
    pub fn fault(&self) -> Result<PacketFault, fault::ParseError> {
        if self.packet.filter.proto == Some(net_fault::IPPROTO_ICMP) {
            return Err(fault::ParseError::CorruptNeedsTcpOrUdp);
        }
        self.packet.fault(PacketAction::Corrupt {
            silent: self.silent,
        })
    }
}

/// A DNS fault's target, effect, name and run.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("dns_effect").required(true).args(["rcode", "drop"])))]
pub struct DnsArgs {
    #[command(flatten)]
    pub target: NetTargetArgs,

    /// The response code resolvers get: SERVFAIL, NXDOMAIN or REFUSED.
    #[arg(long, value_parser = net_fault::parse_rcode)]
    pub rcode: Option<net_fault::Rcode>,

    /// Let the queries vanish instead: resolvers time out.
    #[arg(long)]
    pub drop: bool,

    /// Only names under this domain, the domain included: db.internal, example.com. Also
    /// spelt --domain (an experiment file's `domain`: there `name` names the fault).
    #[arg(long, visible_alias = "domain", value_name = "DOMAIN", value_parser = net_fault::parse_dns_name)]
    pub name: Option<chaos_common::net::DnsName>,

    /// Act on each matching response (or query) with this probability (0 < P <= 1).
    #[arg(long, value_name = "P", default_value = "1", value_parser = fault::parse_probability)]
    pub probability: f64,

    #[command(flatten)]
    pub run: NetRunArgs,
}

impl DnsArgs {
    /// The DNS fault: UDP in both directions, the programs telling queries from responses.
    pub fn fault(&self) -> Result<PacketFault, fault::ParseError> {
        if self.target.cgroup.is_some() {
            return Err(fault::ParseError::CgroupNetIngressDropOnly);
        }
        Ok(PacketFault {
            action: PacketAction::Dns(net_fault::Dns {
                rcode: self.rcode,
                name: self.name.unwrap_or_default(),
            }),
            direction: Direction::Both,
            probability: self.probability,
            filter: PacketFilter {
                proto: Some(net_fault::IPPROTO_UDP),
                ..PacketFilter::default()
            },
            loss_model: None,
            hook: self.run.hook,
        })
    }
}

/// A delay fault's target, delay, filters and run.
#[derive(Debug, Args)]
pub struct DelayArgs {
    #[command(flatten)]
    pub target: NetTargetArgs,

    /// How long each packet is held back: 100ms, 1s (with 4 x jitter, at most fq's 10 s
    /// horizon).
    #[arg(long, value_parser = fault::parse_duration, allow_hyphen_values = true)]
    pub delay: Duration,

    /// The spread of the delay (netem's jitter): uniform in [-J, +J), or the standard deviation
    /// of --distribution. A draw below zero delays by nothing.
    #[arg(long, value_name = "J", value_parser = fault::parse_duration, allow_hyphen_values = true)]
    pub jitter: Option<Duration>,

    /// The shape of the jitter: uniform, or netem's normal, pareto or paretonormal table
    /// (iproute2's .dist files).
    #[arg(long, default_value = "uniform", value_parser = net_fault::parse_distribution)]
    pub distribution: Distribution,

    /// Delay each matching packet with this probability (0 < P <= 1).
    #[arg(long, value_name = "P", default_value = "1", value_parser = fault::parse_probability)]
    pub probability: f64,

    #[command(flatten)]
    pub filter: PacketFilterArgs,

    #[command(flatten)]
    pub run: NetRunArgs,
}

impl DelayArgs {
    /// The delay fault, checked as far as that is possible without the kernel and the target.
    pub fn fault(&self) -> Result<PacketFault, fault::ParseError> {
        let delay = Delay {
            delay: self.delay,
            jitter: self.jitter.unwrap_or_default(),
            distribution: self.distribution,
        };
        delay.check()?;
        egress_fault(
            PacketAction::Delay(delay),
            self.probability,
            &self.filter,
            &self.target,
            self.run.hook,
        )
    }
}

/// A rate limit's target, rate, filters and run.
#[derive(Debug, Args)]
pub struct LimitArgs {
    #[command(flatten)]
    pub target: NetTargetArgs,

    /// The most the target's matching packets may send, together: 10mbit, 512kbit, 1gbit
    /// (bits per second) or 2mbps (bytes per second), as tc writes rates.
    #[arg(long, value_parser = net_fault::parse_rate, allow_hyphen_values = true)]
    pub rate: u64,

    #[command(flatten)]
    pub filter: PacketFilterArgs,

    #[command(flatten)]
    pub run: NetRunArgs,
}

impl LimitArgs {
    /// The rate limit, checked as far as that is possible without the kernel and the target.
    pub fn fault(&self) -> Result<PacketFault, fault::ParseError> {
        egress_fault(
            PacketAction::Limit(self.rate),
            1.0,
            &self.filter,
            &self.target,
            self.run.hook,
        )
    }
}

/// A fault that times leaving packets (delay, limit), checked: fq paces egress only, and a
/// cgroup target has no interface to put fq on.
fn egress_fault(
    action: PacketAction,
    probability: f64,
    filter: &PacketFilterArgs,
    target: &NetTargetArgs,
    hook: NetHook,
) -> Result<PacketFault, fault::ParseError> {
    let fault = PacketFault {
        action,
        direction: Direction::Egress,
        probability,
        filter: filter.filter(),
        loss_model: None,
        hook,
    };
    fault.filter.check()?;
    if target.cgroup.is_some() {
        return Err(fault::ParseError::CgroupNetIngressDropOnly);
    }
    Ok(fault)
}

/// Where a network fault acts.
#[derive(Debug, Args)]
#[group(id = "net_target", required = true, multiple = true)]
pub struct NetTargetArgs {
    /// The interface to fault (inside --netns when given).
    #[arg(long, value_name = "IF", group = "net_target")]
    pub iface: Option<String>,

    /// A network namespace: a path (/run/netns/NAME, /proc/PID/ns/net), a PID, or a name under
    /// /run/netns. Without --iface, every interface in it but lo.
    #[arg(
        long,
        value_name = "NETNS",
        group = "net_target",
        conflicts_with_all = ["container", "pod_uid", "pod"]
    )]
    pub netns: Option<String>,

    /// A container's network namespace (its full ID, a unique prefix, its name or
    /// RUNTIME://ID, as for `chaos fail`): every interface in it but lo, or --iface inside it.
    /// A Kubernetes container's is its pod's, found through the pod's sandbox.
    #[arg(
        long,
        value_name = "ID",
        group = "net_target",
        conflicts_with = "pod_uid"
    )]
    pub container: Option<String>,

    /// The network namespace of the pod with this UID on this node (its sandbox's).
    #[arg(long, value_name = "UID", group = "net_target", conflicts_with = "pod")]
    pub pod_uid: Option<String>,

    /// The network namespace of the pod NAMESPACE/NAME on this node (as for `chaos fail`).
    #[arg(
        long,
        value_name = "NAMESPACE/NAME",
        group = "net_target",
        conflicts_with = "container"
    )]
    pub pod: Option<String>,

    /// With --pod or --pod-uid: that container of the pod (its network namespace is the pod's).
    #[arg(long, value_name = "NAME")]
    pub container_name: Option<String>,

    /// The packets arriving for the sockets of the processes in this cgroup v2 directory (and
    /// below), whatever namespace or interface they use: a host-network container, one service.
    /// Ingress drops only (cgroup_skb).
    #[arg(long, value_name = "PATH", group = "net_target", conflicts_with_all = ["iface", "netns", "container", "pod_uid", "pod"])]
    pub cgroup: Option<std::path::PathBuf>,
}

/// Which packets a network fault acts on; IPv4 and IPv6 alike.
#[derive(Debug, Args)]
pub struct PacketFilterArgs {
    /// Only packets of this protocol: tcp, udp or icmp (ICMPv6 too).
    #[arg(long, value_parser = net_fault::parse_proto)]
    pub proto: Option<u32>,

    /// Only TCP and UDP packets from this source port.
    #[arg(long, value_name = "PORT", value_parser = fault::parse_port)]
    pub sport: Option<u16>,

    /// Only TCP and UDP packets to this destination port.
    #[arg(long, value_name = "PORT", value_parser = fault::parse_port)]
    pub dport: Option<u16>,

    /// Only packets from this network: 10.0.0.5, 10.0.0.0/8, 2001:db8::/32.
    #[arg(long, value_name = "CIDR", value_parser = fault::parse_cidr)]
    pub src: Option<fault::Cidr>,

    /// Only packets to this network.
    #[arg(long, value_name = "CIDR", value_parser = fault::parse_cidr)]
    pub dst: Option<fault::Cidr>,
}

impl PacketFilterArgs {
    pub fn filter(&self) -> PacketFilter {
        PacketFilter {
            proto: self.proto,
            sport: self.sport,
            dport: self.dport,
            src: self.src,
            dst: self.dst,
        }
    }
}

/// How long a network fault lasts, and how it reports.
#[derive(Debug, Args)]
pub struct NetRunArgs {
    /// How long the fault lasts: 30s, 1m30s, 250ms.
    #[arg(long = "for", value_name = "DURATION", default_value = "60s",
          value_parser = fault::parse_duration, allow_hyphen_values = true)]
    pub duration: Duration,

    /// Print the final report as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// Allow an interface of this machine's own namespace that carries the default route.
    #[arg(long)]
    pub force: bool,

    /// Where on the interface the fault acts: tc (both directions, every fault: the hook for
    /// containers' veths), or xdp: arriving packets only, drop and corrupt, before the stack
    /// builds anything for them (the hook for NICs, and for traffic with no process behind
    /// it); native where the driver has it, generic otherwise; xdp-native or xdp-generic
    /// insist on one mode.
    #[arg(long, default_value = "tc", value_name = "HOOK", value_parser = net_fault::parse_hook)]
    pub hook: NetHook,

    /// Start the run and return at once, printing its ID: its links stay pinned under
    /// /sys/fs/bpf/chaos/ID and the in-kernel deadline (--for) ends it. See `chaos list`.
    #[arg(long)]
    pub detach: bool,
}

impl NetRunArgs {
    /// Prints the end of the run: the human summary on stderr, the JSON report on stdout with
    /// --json.
    pub fn print(&self, report: &crate::report::Report) {
        crate::report::print_final(&report.human(), || report.json(), self.json);
    }
}

impl NetAction {
    /// The arguments, checked as far as that is possible without the kernel and the target.
    pub fn check(&self) -> Result<(), fault::ParseError> {
        match self {
            // Its options are all checked by clap.
            NetAction::Reset(_) => Ok(()),
            packets => packets.fault().map(drop),
        }
    }

    /// The packet fault the arguments ask for, checked as far as that is possible without the
    /// kernel and the target.
    fn fault(&self) -> Result<PacketFault, fault::ParseError> {
        let fault = match self {
            NetAction::Reset(_) => Err(fault::ParseError::NotAFault("net reset".into())),
            NetAction::Drop(args) => args.fault(PacketAction::Drop),
            NetAction::Duplicate(args) => args.fault(PacketAction::Duplicate),
            NetAction::Corrupt(args) => args.fault(),
            NetAction::Dns(args) => args.fault(),
            NetAction::Delay(args) => args.fault(),
            NetAction::Limit(args) => args.fault(),
        }?;
        let (target, _) = self.target_and_run();
        fault.check_hook(target.cgroup.is_some())?;
        Ok(fault)
    }

    /// Where the packet fault acts and how it runs.
    fn target_and_run(&self) -> (&NetTargetArgs, &NetRunArgs) {
        match self {
            NetAction::Reset(_) => unreachable!("net reset is run by reset::execute"),
            NetAction::Drop(args) | NetAction::Duplicate(args) => (&args.target, &args.run),
            NetAction::Corrupt(args) => (&args.packet.target, &args.packet.run),
            NetAction::Dns(args) => (&args.target, &args.run),
            NetAction::Delay(args) => (&args.target, &args.run),
            NetAction::Limit(args) => (&args.target, &args.run),
        }
    }
}

pub fn execute(args: NetArgs) -> Result<u8, Error> {
    if let NetAction::Reset(reset) = args.action {
        return super::reset::execute(reset);
    }
    run::defer_interrupts();
    let fault = args.action.fault()?;
    let (target, run_args) = args.action.target_and_run();
    packet_fault(fault, target, run_args)
}

impl PacketArgs {
    /// The packet fault these arguments ask for, checked as far as that is possible without the
    /// kernel and the target.
    pub fn fault(&self, action: PacketAction) -> Result<PacketFault, fault::ParseError> {
        let fault = PacketFault {
            action,
            direction: self.direction,
            probability: self.probability.unwrap_or(1.0),
            filter: self.filter.filter(),
            loss_model: self.loss_model,
            hook: self.run.hook,
        };
        fault.filter.check()?;
        if fault.loss_model.is_some() && action != PacketAction::Drop {
            return Err(fault::ParseError::LossModelOnlyForDrop(action.name()));
        }
        if self.target.cgroup.is_some()
            && (action != PacketAction::Drop || fault.direction != Direction::Ingress)
        {
            return Err(fault::ParseError::CgroupNetIngressDropOnly);
        }
        Ok(fault)
    }
}

/// Runs a checked packet fault: privileges, the target, the kernel's support, then the run.
fn packet_fault(
    fault: PacketFault,
    target: &NetTargetArgs,
    run_args: &NetRunArgs,
) -> Result<u8, Error> {
    require_privileges()?;
    let spec = NetTargetSpec {
        cgroup: target.cgroup.as_deref(),
        netns: target.netns.as_deref(),
        container: target.container.as_deref(),
        pod: super::pod_ref(target.pod_uid.as_deref(), target.pod.as_deref()),
        container_name: target.container_name.as_deref(),
        iface: target.iface.as_deref(),
    };
    let target = NetTarget::resolve(spec, run_args.force)?;
    plan::check_packet_action(fault.action)?;
    eprintln!(
        "chaos: {} of the {} packets of {} for {}{}",
        match fault.action {
            PacketAction::Drop => match fault.loss_model {
                Some(m) => format!(
                    "dropping (Gilbert-Elliott p={}% r={}% 1-h={}% 1-k={}%, {}% on average)",
                    m.p,
                    m.r,
                    m.loss_bad,
                    m.loss_good,
                    percent(m.mean_loss())
                ),
                None => format!("dropping {}%", percent(fault.probability)),
            },
            PacketAction::Duplicate => format!("duplicating {}%", percent(fault.probability)),
            PacketAction::Corrupt { silent } => format!(
                "corrupting {}% ({})",
                percent(fault.probability),
                if silent {
                    "checksums fixed: the application gets the damage"
                } else {
                    "left to the receiver's checksum check"
                }
            ),
            PacketAction::Delay(d) => format!(
                "delaying {}% by {}{}",
                percent(fault.probability),
                humantime::format_duration(d.delay),
                if d.jitter.is_zero() {
                    String::new()
                } else {
                    format!(
                        " ± {} ({})",
                        humantime::format_duration(d.jitter),
                        d.distribution.name()
                    )
                }
            ),
            PacketAction::Limit(rate) => format!("limiting to {} bit/s all", rate * 8),
            PacketAction::Dns(dns) => format!(
                "{} {}% of the DNS {}",
                match dns.rcode {
                    Some(rcode) => format!("answering {} to", rcode.name()),
                    None => "dropping".to_owned(),
                },
                percent(fault.probability),
                if dns.name.len == 0 {
                    "queries".to_owned()
                } else {
                    format!("queries for {}", net_fault::dns_name_text(&dns.name))
                }
            ),
        },
        match fault.direction {
            Direction::Ingress => "arriving",
            Direction::Egress => "leaving",
            Direction::Both => "arriving and leaving",
        },
        target.describe(),
        humantime::format_duration(run_args.duration),
        how_it_ends(run_args.detach),
    );
    let run = NetFaultRun {
        target: &target,
        fault: &fault,
    };
    if run_args.detach {
        let run = run::net_detached(&run, run_args.duration)?;
        super::detached::announce(&run, run_args.json, run_args.duration);
        return Ok(exit::OK);
    }
    let report = run::net_run(&run, run_args.duration)?;
    run_args.print(&report);
    Ok(exit::OK)
}
