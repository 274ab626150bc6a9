"""How much of the machine's CPU time a stretch of work had: busy, idle, or stolen by the
hypervisor of a shared virtual machine (from /proc/stat, where the system keeps one).

`lab3 run` records the shares per notebook in workbook.json, so a run that took longer than its
CPU needs says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# /proc/stat's first line: the CPU time of all cores so far, in clock ticks, by kind
PROC_STAT = Path("/proc/stat")
BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq")  # guest time is counted in user
IDLE_FIELDS = ("idle", "iowait")
STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


@dataclass(frozen=True)
class CpuTimes:
    """The machine's CPU time so far (all cores, clock ticks): busy with any process, idle, and
    stolen, which a virtual machine's hypervisor gave to other guests while this one waited."""

    busy: int
    idle: int
    steal: int

    @classmethod
    def now(cls, path: Path | None = None) -> CpuTimes | None:
        """The counters now; None where the system keeps no /proc/stat (macOS, Windows)."""
        try:
            first = (path or PROC_STAT).read_text().splitlines()[0].split()
            ticks = dict(zip(STAT_FIELDS, map(int, first[1 : 1 + len(STAT_FIELDS)]), strict=False))
        except (OSError, IndexError, ValueError):
            return None
        if first[0] != "cpu":
            return None
        return cls(
            busy=sum(ticks.get(k, 0) for k in BUSY_FIELDS),
            idle=sum(ticks.get(k, 0) for k in IDLE_FIELDS),
            steal=ticks.get("steal", 0),
        )

    def shares_since(self, earlier: CpuTimes) -> dict[str, float] | None:
        """The shares of the CPU time between `earlier` and now that were busy and stolen; None
        when no time passed."""
        busy, idle = self.busy - earlier.busy, self.idle - earlier.idle
        steal = self.steal - earlier.steal
        total = busy + idle + steal
        if total <= 0:
            return None
        return {"cpu_busy": round(busy / total, 3), "cpu_steal": round(steal / total, 3)}


def weighted_share(entries: list[dict], key: str) -> float | None:
    """One share over several recorded stretches (workbook.json's notebooks), each weighted by
    its seconds; None where none recorded it."""
    known = [e for e in entries if e.get(key) is not None and e.get("seconds")]
    seconds = sum(e["seconds"] for e in known)
    if not seconds:
        return None
    return round(sum(e[key] * e["seconds"] for e in known) / seconds, 3)
