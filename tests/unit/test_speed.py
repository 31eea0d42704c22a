"""The decode-speed estimate and the speed-aware choice (engine.models.speed).

The estimate is pure arithmetic: bandwidths are passed in, and the GPUs are
RECORDED, NOT REAL (test_offload.py's machines). One test measures this
machine's bandwidth for real and checks only that the figure is plausible and
cached: no timing thresholds (a busy CI machine must not fail it).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

import engine.models.speed as speed_module
from engine.models.memory import MIB
from engine.models.offload import plan_offload
from engine.models.speed import (
    CACHE_FILE,
    COMFORTABLE_TPS,
    QuantSpeed,
    bytes_per_token,
    choose_by_speed,
    estimate_tokens_per_s,
    measure_bandwidth,
    ram_bandwidth,
)
from tests.unit.test_offload import MACHINES, NINE

LAPTOP_BW = 50e9  # dual-channel DDR5, as a memchr scan on such a laptop reads it


def speed(quant: str, machine: str, *, n_ctx: int = 16384, in_use: int = 4096) -> float:
    arch = NINE[quant].arch
    assert arch is not None
    device = MACHINES[machine]
    plan = plan_offload(arch, device, n_ctx=n_ctx)
    return estimate_tokens_per_s(arch, plan, device, ram_bandwidth=LAPTOP_BW, context_in_use=in_use)


def test_a_cpu_token_reads_the_weights_but_one_embedding_row() -> None:
    """Worked by hand: Q4_K_M on the CPU at 4k of 16k: 5.68 GB of file less the 0.65 GB
    embedding (looked up by row), + a quarter of the 0.54 GB KV cache, + the 53 MB
    recurrent state read and written: 5.27 GB; at 50 GB/s, 9.5 tokens/s."""
    arch = NINE["Q4_K_M"].arch
    assert arch is not None
    plan = plan_offload(arch, MACHINES["no GPU"], n_ctx=16384)
    device, ram = bytes_per_token(arch, plan, context_in_use=4096)
    assert device == 0
    assert round(ram / 1e9, 2) == 5.27
    assert round(speed("Q4_K_M", "no GPU"), 1) == 9.5


def test_speeds_on_recorded_machines() -> None:
    """Bytes per token over bandwidth, device by device (GPU at 70 % of its spec)."""
    expected = {
        ("Q4_K_M", "no GPU"): 9.5,
        ("Q8_0", "no GPU"): 5.8,
        # 15 of 33 layers: 2.6 GB at 134 GB/s, then 2.6 GB at 50: RAM sets the pace.
        ("Q4_K_M", "4 GB laptop GPU"): 13.9,
        ("Q4_K_M", "8 GB laptop GPU"): 34.0,  # 5.27 GB at 0.7 x 256 GB/s
        ("Q4_K_M", "24 GB desktop GPU"): 133.8,
        ("Q8_0", "24 GB desktop GPU"): 81.3,
        ("Q4_K_M", "16 GB Apple unified"): 13.3,
        ("Q4_K_M", "36 GB Apple unified"): 19.9,
    }
    got = {key: round(speed(*key), 1) for key in expected}
    assert got == expected


def test_a_longer_chat_reads_more_cache() -> None:
    short = speed("Q4_K_M", "no GPU", n_ctx=65536, in_use=1024)
    long = speed("Q4_K_M", "no GPU", n_ctx=65536, in_use=32768)
    assert long < short


def test_an_unknown_device_bandwidth_is_taken_as_the_rams() -> None:
    arch = NINE["Q4_K_M"].arch
    assert arch is not None
    gpu = replace(MACHINES["24 GB desktop GPU"], bandwidth=0.0)
    plan = plan_offload(arch, gpu, n_ctx=16384)
    on_device, in_ram = bytes_per_token(arch, plan, context_in_use=4096)
    tps = estimate_tokens_per_s(arch, plan, gpu, ram_bandwidth=LAPTOP_BW, context_in_use=4096)
    assert tps == pytest.approx(LAPTOP_BW / (on_device + in_ram))
    with pytest.raises(ValueError, match="positive"):
        estimate_tokens_per_s(arch, plan, gpu, ram_bandwidth=0.0)


# -- the speed-aware choice ----------------------------------------------------------------


def row(label: str, rank: int, tps: float, *, fits: bool = True, ok: bool = True) -> QuantSpeed:
    return QuantSpeed(label=label, quality=(4, rank), fits=fits, tokens_per_s=tps, recommendable=ok)


def test_the_best_quality_that_is_comfortable() -> None:
    rows = [row("Q3_K_M", 20, 13.0), row("Q4_K_M", 40, 11.2), row("Q8_0", 80, 6.4),
            row("BF16", 90, 3.0, ok=False)]  # fmt: skip
    choice = choose_by_speed(rows)
    assert choice.choice is not None and choice.choice.label == "Q4_K_M"
    assert choice.reason == "Q4_K_M: about 11 tokens/s; Q8_0 would fit but runs at 6."


def test_the_best_quality_when_everything_is_fast() -> None:
    rows = [row("Q4_K_M", 40, 139.0), row("Q8_0", 80, 83.0), row("BF16", 90, 45.0, ok=False)]
    choice = choose_by_speed(rows)
    assert choice.choice is not None and choice.choice.label == "Q8_0"
    assert choice.reason == "Q8_0: about 83 tokens/s, the best that fits."


def test_the_fastest_when_nothing_is_comfortable() -> None:
    rows = [row("Q3_K_M", 20, 4.6), row("Q4_K_M", 40, 3.9), row("Q8_0", 80, 1.6, fits=False)]
    choice = choose_by_speed(rows)
    assert choice.choice is not None and choice.choice.label == "Q3_K_M"
    assert choice.reason == (
        f"Q3_K_M: about 5 tokens/s, the fastest that fits; none reaches "
        f"{COMFORTABLE_TPS:.0f} tokens/s on this computer."
    )


def test_a_faster_two_bit_file_is_not_called_the_fastest() -> None:
    rows = [row("UD-Q2_K_XL", 10, 6.6, ok=False), row("Q3_K_M", 20, 5.9), row("Q8_0", 80, 2.7)]
    choice = choose_by_speed(rows)
    assert choice.choice is not None and choice.choice.label == "Q3_K_M"
    assert choice.reason.startswith("Q3_K_M: about 6 tokens/s, the fastest recommended file")


def test_nothing_fits() -> None:
    choice = choose_by_speed([row("Q8_0", 80, 20.0, fits=False), row("BF16", 90, 9, ok=False)])
    assert choice.choice is None
    assert choice.reason == "None of these fits this computer's memory: pick a smaller model."


def test_the_choice_on_a_recorded_laptop_without_gpu() -> None:
    """End to end on the catalog: a 16 GB laptop at 50 GB/s, 16k context."""
    rows = []
    for quant, entry in NINE.items():
        assert entry.arch is not None
        plan = plan_offload(entry.arch, MACHINES["no GPU"], n_ctx=16384)
        fits = plan.badge.value == "cpu" and not plan.tight and plan.n_ctx == 16384
        rows.append(QuantSpeed(label=quant, quality=entry.quality_rank, fits=fits,
                               tokens_per_s=speed(quant, "no GPU"),
                               recommendable=entry.recommendable))  # fmt: skip
    choice = choose_by_speed(rows)
    assert choice.choice is not None
    assert choice.reason == "Q5_K_M: about 8 tokens/s; Q6_K would fit but runs at 7."


# -- measuring this machine ----------------------------------------------------------------


def test_bandwidth_is_measured_once_and_cached(tmp_path: Path) -> None:
    first = ram_bandwidth(tmp_path)
    # Plausible for any computer from a Raspberry Pi to a workstation (no timing limit).
    assert 0.2e9 < first.bytes_per_s < 2000e9
    assert first.threads >= 1 and first.method in ("memchr", "bytearray.find")
    saved = json.loads((tmp_path / CACHE_FILE).read_text())
    assert saved["bytes_per_s"] == first.bytes_per_s
    assert ram_bandwidth(tmp_path) == first  # read back, not measured again
    again = ram_bandwidth(tmp_path, remeasure=True)
    assert again.measured_at >= first.measured_at
    assert json.loads((tmp_path / CACHE_FILE).read_text())["bytes_per_s"] == again.bytes_per_s


def test_a_damaged_or_foreign_cache_is_measured_again(tmp_path: Path) -> None:
    (tmp_path / CACHE_FILE).write_text("{not json")
    measured = ram_bandwidth(tmp_path)
    assert measured.bytes_per_s > 0
    raw = json.loads((tmp_path / CACHE_FILE).read_text())
    raw.update(machine="another computer", bytes_per_s=1.0)
    (tmp_path / CACHE_FILE).write_text(json.dumps(raw))
    assert ram_bandwidth(tmp_path).bytes_per_s != 1.0


def test_without_libc_the_pure_python_scan_measures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where ctypes finds no libc, ``bytearray.find`` (one thread) takes over."""
    monkeypatch.setattr(speed_module, "_memchr", lambda: None)
    measured = measure_bandwidth(size=64 * MIB, threads=4, passes=2)
    assert measured.method == "bytearray.find" and measured.threads == 1
    assert measured.bytes_per_s > 0
