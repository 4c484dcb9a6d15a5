"""Does a deployment fit on this machine? Counted in reserved memory, with 20% extra for upgrades."""

from __future__ import annotations

import math
import os

from django.conf import settings

from endpoints import sizes
from endpoints.models import Deployment, DeploymentState


def total_mib() -> int:
    if settings.FLOWDEPLOY_LOCAL_CAPACITY_MIB:
        return settings.FLOWDEPLOY_LOCAL_CAPACITY_MIB
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    return int(physical * 0.8)


def reserved_mib(size_name: str, instance_count: int) -> int:
    size = sizes.get(size_name)
    return math.ceil(sizes.instances_with_reserve(instance_count) * size.reserved_mib)


def used_mib(excluding: Deployment | None = None) -> int:
    active = Deployment.objects.exclude(state__in=(DeploymentState.FAILED, DeploymentState.DELETING))
    if excluding is not None and excluding.pk:
        active = active.exclude(pk=excluding.pk)
    return sum(reserved_mib(d.vm_size, d.instance_count) for d in active.only("vm_size", "instance_count"))


def free_mib(excluding: Deployment | None = None) -> int:
    return max(0, total_mib() - used_mib(excluding))


def shortfall_for(size_name: str, instance_count: int, excluding: Deployment | None = None) -> str:
    """An empty string when it fits, else a message saying how much is needed and free."""
    needed = reserved_mib(size_name, instance_count)
    free = free_mib(excluding)
    if needed <= free:
        return ""
    return (
        f"{instance_count} x {size_name} needs {needed / 1024:.1f} GiB "
        f"(including 20% reserved for upgrades), but this machine has {free / 1024:.1f} GiB free "
        f"of {total_mib() / 1024:.1f} GiB. Choose a smaller size or fewer instances, or delete a deployment."
    )


def shortfall(deployment: Deployment) -> str:
    return shortfall_for(deployment.vm_size, deployment.instance_count, excluding=deployment)
