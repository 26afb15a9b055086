"""A compiled one-pass kernel for the reducers (core/units/fused.c), with the pure-torch path as its fallback.

`scan` makes one pass over a layer's (n, d) activations (rows split over the torch threads): the exact histogram
increments, the top-K candidates (activation >= the unit's K-th kept value) and the exact reservoir candidates
(activation > 0 and priority <= its bin's limit). `merge_top` and `merge_res` insert candidates into the sorted
per-unit lists in place (units split over threads). The torch path computes the same with masks, nonzero, sorts and
gathers. Both give identical reducer state (tests/core/units/test_fused.py).

It is compiled once per machine with the system C compiler (`cc -O3 -march=native -fopenmp`, no fast-math) into
$NEUROBOARD_CACHE/ext/, keyed by the source, the flags and the CPU. Without a compiler, or with NEUROBOARD_FUSED=0,
the torch path runs: slower, same numbers.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
from functools import cache
from importlib.resources import files
from pathlib import Path

import torch

log = logging.getLogger(__name__)
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-fast-math", "-fopenmp", "-shared", "-fPIC"]
ENV = "NEUROBOARD_FUSED"


def _cpu() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        return next((line for line in text.splitlines() if line.startswith("flags")), platform.processor())
    except OSError:
        return platform.processor()


def _build(src: str, out: Path) -> None:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise OSError("no C compiler (cc/gcc) found")
    out.parent.mkdir(parents=True, exist_ok=True)
    c_file = out.with_suffix(f".{os.getpid()}.c")
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    c_file.write_text(src)
    try:
        subprocess.run([cc, *FLAGS, str(c_file), "-o", str(tmp), "-lm"], check=True, capture_output=True, text=True)
        os.replace(tmp, out)
    finally:
        c_file.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)


@cache
def library():
    """The loaded kernel, or None (no compiler, a failed build, or NEUROBOARD_FUSED=0): the torch path runs."""
    if os.environ.get(ENV, "1") == "0":
        return None
    from core.model.load import cache_dir

    src = files("core.units").joinpath("fused.c").read_text(encoding="utf-8")
    key = hashlib.sha256("\0".join([src, *FLAGS, _cpu()]).encode()).hexdigest()[:16]
    path = cache_dir() / "ext" / f"nb_fused-{key}.so"
    try:
        if not path.exists():
            _build(src, path)
        lib = ctypes.CDLL(str(path))
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        log.warning("neuroboard: the fused reducer kernel is unavailable (%s); using the slower torch path",
                    detail.strip().splitlines()[-1] if detail.strip() else type(e).__name__)
        return None
    lib.nb_scan.restype = ctypes.c_int
    lib.nb_merge_top.restype = ctypes.c_int
    lib.nb_merge_res.restype = ctypes.c_int
    lib.nb_insert.restype = ctypes.c_int
    lib.nb_minmax.restype = ctypes.c_int
    return lib


def _p(t: torch.Tensor | None):
    return ctypes.c_void_p(t.data_ptr() if t is not None else 0)


def _check(bad: int) -> None:
    if bad & 2:
        raise MemoryError("a fused reducer kernel could not allocate its buffers")


def _i(x: int):
    return ctypes.c_int64(int(x))


def _threads(d: int) -> ctypes.c_int:
    return ctypes.c_int(max(1, min(torch.get_num_threads(), d)))


RES_CAP = 1 << 20
"""Reservoir candidates listed per thread and batch; with more (a run's first batches), `insert` takes them."""


def scan(acts: torch.Tensor, thash: torch.Tensor, uhash: torch.Tensor, scale: torch.Tensor, F: int,
         hist: torch.Tensor, top_thr: torch.Tensor, tau: torch.Tensor, cap: int):
    """nb_scan: `hist` (d, 2F) updated in place; returns (top candidates (m,) flat i*d+u, or None when more than
    `cap` per thread; reservoir candidates (flat idx, priority, group), or None when more than RES_CAP per
    thread). acts (n, d) float32 contiguous; thash (n,) and uhash (d,) int32; scale (d,) float32; top_thr (d,);
    tau (d*F,) int32."""
    lib = library()
    n, d = acts.shape
    T = _threads(d).value
    rcap = min(RES_CAP, n * d // T + 1)
    top_idx = torch.empty(T * cap, dtype=torch.int64)
    res_idx, res_grp = torch.empty(T * rcap, dtype=torch.int64), torch.empty(T * rcap, dtype=torch.int64)
    res_prio = torch.empty(T * rcap, dtype=torch.int32)
    top_cnt, res_cnt = torch.zeros(T, dtype=torch.int64), torch.zeros(T, dtype=torch.int64)
    bad = lib.nb_scan(_p(acts), _i(n), _i(d), _p(thash), _p(uhash), _p(scale), _i(F), _p(hist), _p(top_thr),
                      _p(tau), ctypes.c_int(T), _i(cap), _i(rcap), _p(top_idx), _p(top_cnt), _p(res_idx), _p(res_prio),
                      _p(res_grp), _p(res_cnt))
    if bad & 2:
        raise MemoryError("the fused reducer kernel could not allocate its counts")
    if bad:
        raise ValueError("NaN activations: the model produced NaN at this layer")

    def gather(cnt, c, *bufs):
        if int(cnt.max()) > c:
            return None
        keep = torch.cat([torch.arange(t * c, t * c + int(cnt[t])) for t in range(T)])
        return tuple(b[keep] for b in bufs)

    return gather(top_cnt, cap, top_idx), gather(res_cnt, rcap, res_idx, res_prio, res_grp)


def merge_top(cand: torch.Tensor, acts: torch.Tensor, tok: torch.Tensor, top_val: torch.Tensor,
              top_tok: torch.Tensor, top_ctx: torch.Tensor, ctx: tuple[torch.Tensor, torch.Tensor] | None) -> None:
    """nb_merge_top: candidates (flat i*d+u into acts (n, d)) into the top lists (K, d) and the contexts of the first
    Kc ranks (Kc, d, 2W+1), in place. ctx: (full (m, d), rows (n, 2W+1)) as LayerReducer.update takes it."""
    n, d = acts.shape
    K, (Kc, _, W2) = top_val.shape[0], top_ctx.shape
    full = rows = None
    if ctx is not None and Kc:
        full, rows = ctx[0].float().contiguous(), ctx[1].contiguous()
    _check(library().nb_merge_top(_i(cand.numel()), _p(cand), _p(acts), _p(tok), _i(d), _i(K), _p(top_val), _p(top_tok),
                           _i(Kc), _i(W2), _p(top_ctx), _p(full), _p(rows), _threads(d)))


def merge_res(grp: torch.Tensor, prio: torch.Tensor, tok: torch.Tensor, val: torch.Tensor, F: int,
              res_prio: torch.Tensor, res_tok: torch.Tensor, res_val: torch.Tensor) -> None:
    """nb_merge_res: candidates (group, priority, token int32, value float32) into the reservoirs (d*F, S'),
    in place."""
    S2 = res_prio.shape[1]
    d = res_prio.shape[0] // F
    _check(library().nb_merge_res(_i(grp.numel()), _p(grp), _p(prio), _p(tok), _p(val), _i(F), _i(S2),
                                  _p(res_prio), _p(res_tok), _p(res_val), _i(d), _threads(d)))


def insert(acts: torch.Tensor, tok: torch.Tensor, thash: torch.Tensor, uhash: torch.Tensor, scale: torch.Tensor,
           F: int, top: tuple | None, res: tuple | None, ctx: tuple[torch.Tensor, torch.Tensor] | None) -> None:
    """nb_insert: every activation offered straight to the top-K (top = (top_val, top_tok, top_ctx)) and/or every
    positive one to the reservoirs (res = (res_prio, res_tok, res_val)), in place; for batches whose candidates
    overflow the lists of `scan`."""
    n, d = acts.shape
    tv, tt, tc = top if top is not None else (None, None, None)
    rp, rt, rv = res if res is not None else (None, None, None)
    K = tv.shape[0] if tv is not None else 0
    Kc, W2 = (tc.shape[0], tc.shape[2]) if tc is not None else (0, 0)
    S2 = rp.shape[1] if rp is not None else 0
    full = rows = None
    if ctx is not None and Kc:
        full, rows = ctx[0].float().contiguous(), ctx[1].contiguous()
    bad = library().nb_insert(_p(acts), _i(n), _i(d), _p(tok), _p(thash), _p(uhash), _p(scale), _i(F),
                              ctypes.c_int(top is not None), _i(K), _p(tv), _p(tt), _i(Kc), _i(W2), _p(tc), _p(full),
                              _p(rows), ctypes.c_int(res is not None), _i(S2), _p(rp), _p(rt), _p(rv), _threads(d))
    if bad:
        raise ValueError("NaN activations: the model produced NaN at this layer")


def minmax(acts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """nb_minmax: (max (d,), min (d,)) over the rows of acts (n, d) float32 contiguous, in one pass."""
    n, d = acts.shape
    mx, mn = torch.empty(d), torch.empty(d)
    bad = library().nb_minmax(_p(acts), _i(n), _i(d), _p(mx), _p(mn), _threads(d))
    _check(bad)
    if bad:
        raise ValueError("NaN activations: the model produced NaN at this layer")
    return mx, mn
