"""Virtual machine sizes, named like Azure's, and what an instance of each gets on this machine.

Azure sizes are real machines; here an instance is a gunicorn process. A size decides its workers
and threads, and how much memory it reserves: the local provider counts reservations against this
machine's memory to refuse deployments that would not fit (with 20% extra for upgrades, as Azure
reserves). The reservation is an admission rule, not an enforced limit: no cgroups here.
"""

from dataclasses import dataclass

UPGRADE_RESERVE = 0.20


@dataclass(frozen=True)
class VMSize:
    name: str
    cores: int
    memory_gib: float
    workers: int
    threads: int
    reserved_mib: int

    @property
    def summary(self) -> str:
        return (
            f"{self.cores} cores, {self.memory_gib:g} GiB on Azure; here {self.workers} worker(s) x "
            f"{self.threads} threads, {self.reserved_mib} MiB reserved"
        )


SIZES = {
    size.name: size
    for size in (
        VMSize("Standard_DS1_v2", 1, 3.5, 1, 4, 256),
        VMSize("Standard_F2s_v2", 2, 4, 2, 4, 384),
        VMSize("Standard_DS2_v2", 2, 7, 2, 4, 512),
        VMSize("Standard_DS3_v2", 4, 14, 2, 8, 768),
        VMSize("Standard_DS4_v2", 8, 28, 4, 8, 1536),
        VMSize("Standard_E4s_v3", 4, 32, 2, 8, 1024),
    )
}
DEFAULT_SIZE = "Standard_DS3_v2"


def get(name: str) -> VMSize:
    return SIZES[name]


def choices() -> list[tuple[str, str]]:
    return [(name, f"{name} ({size.cores} cores, {size.memory_gib:g} GiB)") for name, size in SIZES.items()]


def instances_with_reserve(count: int) -> float:
    """Capacity an instance count needs, with Azure's 20% reserved for rolling upgrades."""
    return count * (1 + UPGRADE_RESERVE)
