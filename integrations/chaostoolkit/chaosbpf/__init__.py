"""Chaos Toolkit extension for chaos, the eBPF fault injector."""
from typing import List

from chaoslib.discovery.discover import (
    discover_actions,
    discover_probes,
    initialize_discovery_result,
)
from chaoslib.types import DiscoveredActivities, Discovery

__version__ = "0.1.0"
__all__ = ["discover", "__version__"]


def discover(discover_system: bool = True) -> Discovery:
    """What `chaos discover chaostoolkit-chaosbpf` reports: the extension's activities."""
    discovery = initialize_discovery_result("chaostoolkit-chaosbpf", __version__, "chaosbpf")
    discovery["activities"].extend(load_exported_activities())
    return discovery


def load_exported_activities() -> List[DiscoveredActivities]:
    return [*discover_actions("chaosbpf.actions"), *discover_probes("chaosbpf.probes")]
