"""One line per GPU: temperature against the thermal limit and resume threshold, load, memory, power."""

from __future__ import annotations

from typing import Any

from omni_tui.state import RunView
from omni_tui.widgets.panel import TextPanel
from rich.markup import escape


def temperature_style(temp: float | None, limit: float | None, resume: float | None) -> str:
    """Red at or over the limit, yellow between the resume threshold and the limit, green below."""
    if temp is None or limit is None:
        return "white"
    if temp >= limit:
        return "bold red"
    if resume is not None and temp >= resume:
        return "yellow"
    return "green"


def gpu_line(gpu: dict[str, Any], limit: float | None, resume: float | None) -> str:
    temp = gpu.get("temperature_c")
    style = temperature_style(temp, limit, resume)
    bounds = []
    if limit is not None:
        bounds.append(f"limit {limit:g}")
    if resume is not None:
        bounds.append(f"resume {resume:g}")
    temp_text = "—" if temp is None else f"{temp:g} °C"
    host = f"{escape(str(gpu['host']))} " if gpu.get("host") else ""
    head = f"[b]{host}GPU {gpu.get('index', '?')}[/b] {escape(str(gpu.get('name') or ''))}"
    parts = [f"[{style}]{temp_text}[/]" + (f" ({', '.join(bounds)})" if bounds else "")]
    if gpu.get("utilization_pct") is not None:
        parts.append(f"util {gpu['utilization_pct']:g}%")
    if gpu.get("memory_used_mb") is not None and gpu.get("memory_total_mb"):
        parts.append(f"mem {gpu['memory_used_mb'] / 1024:.1f}/{gpu['memory_total_mb'] / 1024:.1f} GB")
    if gpu.get("power_w") is not None:
        limit_w = f"/{gpu['power_limit_w']:g}" if gpu.get("power_limit_w") else ""
        parts.append(f"power {gpu['power_w']:g}{limit_w} W")
    throttle = [str(r) for r in gpu.get("throttle_reasons") or []]
    parts.append("[yellow]throttle: " + escape(", ".join(throttle)) + "[/]" if throttle else "no throttling")
    return f"{head}\n  " + "  ".join(parts)


class GpuPanel(TextPanel):
    def render_view(self, view: RunView) -> None:
        if not view.gpus:
            note = f"\n{escape(view.gpu_note)}" if view.gpu_note else ""
            ram = ""
            if view.ram_used_mb is not None and view.ram_total_mb:
                ram = f"\nRAM {view.ram_used_mb / 1024:.1f}/{view.ram_total_mb / 1024:.1f} GB"
            cpu = f"   CPU {view.cpu_pct:g}%" if view.cpu_pct is not None else ""
            self.show(f"[b reverse] No GPU [/] training on the CPU{note}{ram}{cpu}")
            self.add_class("-no-gpu")
            return
        self.remove_class("-no-gpu")
        simulated = "  [i](simulated)[/i]" if view.gpu_source == "simulated" else ""
        lines = [gpu_line(g, view.thermal_limit_c, view.thermal_resume_c) for g in view.gpus]
        self.show("\n".join(lines) + simulated)
