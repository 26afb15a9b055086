"""A digest of one run's rows in an index: per table, the row count and an md5 over every row in a fixed order.

Rows are cast to text by DuckDB (floats in their shortest round-trip form, so equal digests mean bit-equal values).
Used to check that an extraction gives exactly the index of a stored reference run.
"""

RUN_TABLES = {
    "run_docs": "doc_id",
    "tokens": "doc_id, position",
    "token_norms": "doc_id, position",
    "unit_stats": "layer, unit",
    "top_examples": "layer, unit, rank",
    "intervals": "layer, unit, interval",
    "interval_samples": "layer, unit, interval, rank",
}


def run_digest(con, run_id: int, tables=RUN_TABLES) -> dict[str, list]:
    """{table: [rows, md5]} of the run's rows in each table (the run_id column left out)."""
    out = {}
    for table, order in tables.items():
        cols = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall() if r[0] != "run_id"]
        row = ", ".join(cols)
        n, digest = con.execute(
            f"SELECT count(*), md5(coalesce(string_agg(CAST(({row}) AS VARCHAR), '|' ORDER BY {order}), '')) "
            f"FROM {table} WHERE run_id = ?", [run_id]).fetchall()[0]
        out[table] = [int(n), digest]
    return out


def host_fingerprint() -> dict:
    """What besides package versions decides float results bit for bit: torch's CPU kernel level and the CPU's
    matrix and vector extensions (oneDNN picks AMX or AVX-512 BF16 kernels where present), and the CPU model."""
    import platform

    import torch

    flags, model = set(), ""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    keep = sorted(f for f in flags if f.startswith(("amx", "avx512", "avx2", "fma")))
    return {"machine": platform.machine(), "torch_cpu": torch.backends.cpu.get_cpu_capability(), "cpu": model,
            "flags": keep}
