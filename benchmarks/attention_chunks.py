r"""The CPU attention in dimension chunks against all dimensions at once, interleaved in one process.

Usage:
    python benchmarks/attention_chunks.py --threads 1
    python benchmarks/attention_chunks.py --threads 1 --cells 512 16 256 8 --repeats 10

Full attention on the CPU takes the input dimensions in chunks whose scores fit in
:data:`pfn_kernels.network.attention.SCORE_CHUNK_BYTES` (the same values, bit for bit). This script
times, for each (n, d) cell, the shipped network alone and the whole one pass
(:func:`~pfn_kernels.inference.decode_spectral_params`, ``InferenceConfig()``) with the chunk size
at its default and with it set so large that every dimension is one chunk (the code before the
chunks), alternating the two in every round after one untimed round (``interleaved_seconds``), on
one task of uniform inputs and Gaussian targets. Reported: medians and the median of the per-round
ratios chunked / whole. With ``--train-cells``, also a training step's forward and backward pass
(train mode, a batch of B tasks, the gradient of the decoded means and noise ratios). Run it
alone. Written: ``benchmarks/results/attention_chunks.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, uninstalled

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from benchmarks._common import (  # noqa: E402
    add_run_arguments, interleaved_seconds, machine_metadata, set_threads, write_json,
)
from pfn_kernels.inference import decode_spectral_params  # noqa: E402
from pfn_kernels.network import attention, default_decoder, load_decoder  # noqa: E402
from pfn_kernels.network.weights import weights_path  # noqa: E402

#: Chunk size standing for "every dimension at once".
WHOLE = 1 << 62


def with_chunks(size: int, fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` run with ``SCORE_CHUNK_BYTES`` set to ``size`` (the default restored after)."""
    chunk = attention.SCORE_CHUNK_BYTES

    def call() -> Any:
        attention.SCORE_CHUNK_BYTES = size
        try:
            return fn()
        finally:
            attention.SCORE_CHUNK_BYTES = chunk
    return call


def timed_calls(n: int, d: int) -> dict[str, Any]:
    """name -> call: the network and the pass, each with chunks and whole."""
    g = torch.Generator().manual_seed(n + 100 * d)
    x, y = torch.rand(1, n, d, generator=g), torch.randn(1, n, generator=g)
    decoder = default_decoder().eval()
    chunk = attention.SCORE_CHUNK_BYTES
    network = lambda: decoder(x[:, :512], y[:, :512])  # noqa: E731  (the pass reads at most 512)
    one_pass = lambda: decode_spectral_params(x[0].double(), y[0].double(), decoder)  # noqa: E731
    return {"network_whole": with_chunks(WHOLE, network), "network_chunks": with_chunks(chunk, network),
            "pass_whole": with_chunks(WHOLE, one_pass), "pass_chunks": with_chunks(chunk, one_pass)}


def training_calls(b: int, n: int, d: int) -> dict[str, Any]:
    """name -> call: one forward and backward pass in train mode, with chunks and whole."""
    g = torch.Generator().manual_seed(b + n + 100 * d)
    x, y = torch.rand(b, n, d, generator=g), torch.randn(b, n, generator=g)
    decoder = load_decoder(weights_path("default")).train()  # its own copy, not the shared one

    def step() -> None:
        decoder.zero_grad()
        out = decoder(x, y)
        (out.means.sum() + out.log_noise_ratio.sum()).backward()

    return {"train_whole": with_chunks(WHOLE, step),
            "train_chunks": with_chunks(attention.SCORE_CHUNK_BYTES, step)}


def summary(times: dict[str, list[float]], what: str) -> dict[str, Any]:
    whole, chunks = times[f"{what}_whole"], times[f"{what}_chunks"]
    return {"whole_ms": 1e3 * statistics.median(whole), "chunks_ms": 1e3 * statistics.median(chunks),
            "ratio": statistics.median(c / w for c, w in zip(chunks, whole)),
            "whole_times_ms": [1e3 * t for t in whole], "chunks_times_ms": [1e3 * t for t in chunks]}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=int, nargs="+", default=[512, 16, 1000, 16, 512, 8, 256, 16, 256, 8, 100, 6],
                   help="n d pairs")
    p.add_argument("--train-cells", type=int, nargs="*", default=[], help="B n d triples (training steps)")
    p.add_argument("--repeats", type=int, default=6, help="timed rounds per cell")
    add_run_arguments(p, "attention_chunks", threads=1, plot=False)
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if len(args.cells) % 2:
        raise SystemExit("--cells takes n d pairs")
    set_threads(args.threads)
    rows = []
    cells = list(zip(args.cells[::2], args.cells[1::2]))
    for n, d in tqdm(cells, desc="cells", disable=args.no_progress):
        calls = timed_calls(n, d)  # the decoder is loaded outside inference mode
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # d beyond the trained dimensions, n beyond the context
            times = interleaved_seconds(calls, args.repeats, warmup=1)
        rows.append({"n": n, "d": d, "network": summary(times, "network"), "pass": summary(times, "pass")})
    if len(args.train_cells) % 3:
        raise SystemExit("--train-cells takes B n d triples")
    train_rows = []
    triples = list(zip(args.train_cells[::3], args.train_cells[1::3], args.train_cells[2::3]))
    for b, n, d in tqdm(triples, desc="training cells", disable=args.no_progress):
        times = interleaved_seconds(training_calls(b, n, d), args.repeats, warmup=1)
        train_rows.append({"batch": b, "n": n, "d": d, "train": summary(times, "train")})
    result = {"meta": {"machine": machine_metadata(args.threads), "args": vars(args) | {"out": str(args.out)},
                       "score_chunk_bytes": attention.SCORE_CHUNK_BYTES},
              "rows": rows, "training": train_rows}
    write_json(result, args.out)
    print("| n | d | network: whole → chunks | ratio | one pass: whole → chunks | ratio |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        net, one = r["network"], r["pass"]
        print(f"| {r['n']} | {r['d']} | {net['whole_ms']:.0f} → {net['chunks_ms']:.0f} ms | {net['ratio']:.2f} "
              f"| {one['whole_ms']:.0f} → {one['chunks_ms']:.0f} ms | {one['ratio']:.2f} |")
    if train_rows:
        print("\n| B | n | d | training step: whole → chunks | ratio |")
        print("|---|---|---|---|---|")
        for r in train_rows:
            t = r["train"]
            print(f"| {r['batch']} | {r['n']} | {r['d']} | {t['whole_ms']:.0f} → {t['chunks_ms']:.0f} ms | {t['ratio']:.2f} |")
    print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
