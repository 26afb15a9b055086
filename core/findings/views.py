"""Each page kind's snapshot, computed from its URL parameters alone (so the CLI computes the same one the page
saves), and its recheck: the same computation again from the manifest, compared with the snapshot.

  neurons   /neurons?run&layer&unit       the unit's stats and top examples from the index, and the model's own
                                         activations over each example's tokens (the numbers recheck recomputes)
  features  /features?run&sae&feature    the same for an SAE feature (its SAE's files)
  trajectories  view=lens: the lens trajectory at the chosen position (core.lens.query.lens_json); view=stream:
                the residual geometry of the prompt; view=sets: separation metrics per layer of each model, and
                their CKA when two are compared
  heads     /heads?model&layer&head&prompt  the head's stored role scores and its attention pattern on the text
  steering  /steering?model&direction&layer&alpha&prompt&tokens&mode   core.interventions.steer / ablate
  patching  /patching?model&clean&corrupted&answer&foil                core.interventions.patching.patch_grid
  circuits  /circuits?graph&logit&pinned&groups   the pinned subgraph and supernodes of a stored (or computed)
                                                  attribution graph (core.findings.circuits)
Home and the findings page itself have no snapshot: saving one says so.

The numbers recheck compares are the model's outputs (activations, probabilities, logit differences), recomputed
with the same function on the same inputs: on an unchanged model the difference is exactly 0; a changed weight
shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from core.errors import UserError
from core.findings.manifest import manifest
from core.findings.store import Finding, parse_url

K_EXAMPLES = 8
WINDOW = 12
PAGES = ("neurons", "features", "trajectories", "heads", "steering", "patching", "circuits")


class SnapshotError(UserError):
    """A view that cannot be snapshotted (one line)."""


def _int(params: dict, key: str, default: int | None = None) -> int:
    v = params.get(key)
    if v is None or v == "":
        if default is None:
            raise SnapshotError(f"the URL has no {key}=")
        return default
    try:
        return int(v)
    except ValueError:
        raise SnapshotError(f"{key}={v!r} is not a whole number") from None


def _float(params: dict, key: str, default: float) -> float:
    try:
        return float(params.get(key, default))
    except ValueError:
        raise SnapshotError(f"{key}={params.get(key)!r} is not a number") from None


def _unit(params: dict, db: str | None, load: Callable, feature: bool) -> tuple[dict, dict]:
    from core.index import queries
    from core.index.db import connect
    from core.model.tokens import token_texts
    from core.units.kinds import source

    if not db:
        raise SnapshotError("this view reads an index: give the index file (--db)")
    run_id = _int(params, "run")
    con = connect(db, read_only=True)
    try:
        if feature:
            sae_id, unit = _int(params, "sae", 1), _int(params, "feature", 0)
            info = next((s for s in queries.run_saes(con, run_id) if s.sae_id == sae_id), None)
            if info is None:
                raise SnapshotError(f"run {run_id} has no SAE {sae_id}")
            src, layer = source(f"feature:{info.path}"), sae_id
            src.site = info.site
        else:
            run0 = queries.get_run(con, run_id)
            layer, unit = _int(params, "layer", run0.layers[0]), _int(params, "unit", 0)
            src = source("neuron")
        view = src.gather(con, run_id, layer, unit, K_EXAMPLES, WINDOW)
    except queries.QueryError as e:
        raise SnapshotError(str(e)) from None
    finally:
        con.close()
    lm = load(view.run.model)
    seqs = [ex.seq for ex in view.top]
    live = src.activations(lm, layer, unit, seqs)
    examples = [{"doc_id": ex.doc_id, "position": ex.position, "index_activation": ex.activation,
                 "tokens": token_texts(lm.tokenizer, ex.shown_ids()), "focus": ex.focus - ex.first_shown,
                 "live": [float(x) for x in a[ex.first_shown:]]} for ex, a in zip(view.top, live, strict=True)]
    stats = {k: (float(v) if isinstance(v, int | float) else v) for k, v in view.stats.items()
             if k in ("n_tokens", "count_active", "density", "mean", "max", "min")}
    snap = {"kind": "features" if feature else "neurons", "run": run_id, "layer": layer, "unit": unit,
            "model": view.run.model, "stats": stats, "examples": examples,
            "hist_exp": view.stats.get("hist_exp"), "hist": list(view.stats.get("hist") or [])}
    return snap, manifest("features" if feature else "neurons", params, lm=lm, run=view.run)


def _lens(params: dict, load: Callable) -> tuple[dict, dict]:
    view = params.get("view", "lens")
    name = params.get("model") or "smollm2-135m"
    if view == "sets":
        return _sets(params, load, name)
    lm = load(name)
    prompt = params.get("prompt", "")
    if not prompt.strip():
        raise SnapshotError("the trajectories page needs a prompt")
    if view == "stream":
        from core.geometry.residual import residual_geometry
        from core.lens.logit import stream
        from core.model.tokens import encode_prompt, token_texts

        ids = encode_prompt(lm, prompt)
        g = residual_geometry(stream(lm, ids))
        snap = {"kind": "stream", "model": name, "prompt": prompt, "tokens": token_texts(lm.tokenizer, ids),
                "norms": g.norms.tolist(), "cos_prev": g.cos_prev.tolist(), "median_update": g.median_update.tolist(),
                "quiet": g.quiet}
        return snap, manifest("trajectories", params, lm=lm)
    from core.lens.query import LensQuery, lens_json

    q = LensQuery(model=name, prompt=prompt, position=_int(params, "pos", -1), target=params.get("target") or None,
                  lens=params.get("lens", "logit"))
    return {"kind": "trajectories"} | lens_json(lm, q), manifest("trajectories", params, lm=lm)


def _sets(params: dict, load: Callable, name: str) -> tuple[dict, dict]:
    """The prompt-set view: separation metrics per layer of each model, and their CKA when two are compared."""
    from core.data.prompt_sets import PromptSetError, layer_representations, load_prompt_set
    from core.geometry.separation import set_geometry

    spec = params.get("set", "truth")
    try:
        ps = load_prompt_set(spec)
    except PromptSetError as e:
        raise SnapshotError(str(e)) from None
    names = [name] + ([params["compare"]] if params.get("compare") not in (None, "", "none") else [])
    reps, snap = {}, {"kind": "sets", "set": spec, "prompts": len(ps.texts), "models": {}}
    for n in names:
        lm = load(n)
        reps[n] = layer_representations(lm, ps.texts)
        g = set_geometry(reps[n], ps.labels, groups=ps.groups)
        snap["models"][n] = {"probe_acc": g.probe_acc.tolist(), "silhouette": g.silhouette.tolist(),
                             "centroid_dist": g.centroid_dist.tolist()}
    if len(names) == 2:
        from core.geometry.cka import cka_matrix

        kind = params.get("cka", "debiased")
        snap["cka"] = {"kind": kind, "a": names[0], "b": names[1],
                       "values": cka_matrix(reps[names[0]], reps[names[1]], kind).tolist()}
    return snap, manifest("trajectories", params, lm=load(name), seeds={"probe_folds": 0})


def _heads(params: dict, db: str | None, load: Callable) -> tuple[dict, dict]:
    """The head panel: its stored role scores (index) and its attention pattern on the user's text (live)."""
    from core.index import heads as ih
    from core.index.db import connect

    if not db:
        raise SnapshotError("this view reads an index: give the index file (--db)")
    con = connect(db, read_only=True)
    try:
        sets = {s.model: s for s in ih.head_sets(con)}
        name = params.get("model") or (next(iter(sets)) if sets else "")
        if name not in sets:
            raise SnapshotError(f"the index has no head scores for {name or 'any model'}")
        arrays = ih.head_score_arrays(con, sets[name].model_id)
    finally:
        con.close()
    layer, head = _int(params, "layer", 0), _int(params, "head", 0)
    hs = sets[name]
    if not (0 <= layer < hs.n_layers and 0 <= head < hs.n_heads):
        raise SnapshotError(f"head {layer}.{head} is out of range ({hs.n_layers} layers × {hs.n_heads} heads)")
    lm = load(name)
    snap = {"kind": "heads", "model": name, "layer": layer, "head": head,
            "scores": {r: float(v[layer, head]) for r, v in arrays.items()}}
    prompt = params.get("prompt", "")
    if prompt.strip():
        from core.model.load import set_attn
        from core.model.tokens import encode_prompt, token_texts
        from core.units.live import attention_pattern

        ids = encode_prompt(lm, prompt)[:64]
        snap["tokens"] = token_texts(lm.tokenizer, ids)
        impl = getattr(lm.model.config, "_attn_implementation", None)
        if impl != "eager":  # attention weights come from the eager implementation only
            set_attn(lm.model, "eager")
        try:
            snap["pattern"] = attention_pattern(lm, layer, ids)[head].tolist()
        finally:
            if impl and impl != "eager":
                set_attn(lm.model, impl)
    return snap, manifest("heads", params, lm=lm)


def _steer(params: dict, load: Callable) -> tuple[dict, dict]:
    from core.interventions.directions import from_spec
    from core.interventions.steer import ablate, steer

    name = params.get("model") or "smollm2-135m"
    lm = load(name)
    layer, tokens = _int(params, "layer", 6), _int(params, "tokens", 24)
    d = from_spec(lm, params.get("direction", "diffmeans:sentiment"), layer)
    prompt = params.get("prompt", "")
    if params.get("mode") == "ablate":
        res = ablate(lm, prompt, d.vector, tokens).as_dict()
    else:
        res = steer(lm, prompt, layer, d.vector, _float(params, "alpha", 0.5), tokens).as_dict()
    return ({"kind": "steering", "model": name, "direction": d.describe()} | res,
            manifest("steering", params, lm=lm, seeds={"sampling": 0}))


def _patch(params: dict, load: Callable) -> tuple[dict, dict]:
    from core.interventions.patching import patch_grid

    name = params.get("model") or "smollm2-135m"
    lm = load(name)
    keys = ("clean", "corrupted", "answer", "foil")
    if any(not params.get(k) for k in keys):
        raise SnapshotError("the patching view needs clean=, corrupted=, answer= and foil=")
    res = patch_grid(lm, *(params[k] for k in keys)).as_dict()
    return {"kind": "patching", "model": name} | res, manifest("patching", params, lm=lm)


def snapshot(page: str, params: dict, *, db: str | None = None, load: Callable | None = None) -> tuple[dict, dict]:
    """(snapshot, manifest) of the view `page` with URL `params`; `load(name)` gives a loaded model (default:
    core.model.load.load_model); `db`: the index file for views that read one."""
    if load is None:
        from core.model.load import load_model as load
    if page == "neurons":
        return _unit(params, db, load, feature=False)
    if page == "features":
        return _unit(params, db, load, feature=True)
    if page == "trajectories":
        return _lens(params, load)
    if page == "steering":
        return _steer(params, load)
    if page == "patching":
        return _patch(params, load)
    if page == "heads":
        return _heads(params, db, load)
    if page == "circuits":
        from core.findings.circuits import snapshot as circuits_snapshot

        return circuits_snapshot(params, db, load)
    raise SnapshotError(f"the {page or 'home'} page has no snapshot yet (pages with one: {', '.join(PAGES)})")


def make_finding(url: str, title: str, note: str = "", *, db: str | None = None, load=None) -> Finding:
    page, params = parse_url(url)
    snap, man = snapshot(page, params, db=db, load=load)
    if db:
        man["index"] = str(db)
    return Finding(title=title, note=note, url=url, snapshot=snap, manifest=man, page=page, params=params)


def compare(a, b, path: str = "") -> tuple[float, list[str]]:
    """(largest absolute difference between the numbers of two JSON trees, paths where anything else differs)."""
    if isinstance(a, bool) or isinstance(b, bool) or not (isinstance(a, int | float) and isinstance(b, int | float)):
        if isinstance(a, dict) and isinstance(b, dict):
            worst, bad = 0.0, [f"{path}.{k}" for k in set(a) ^ set(b)]
            for k in set(a) & set(b):
                w, m = compare(a[k], b[k], f"{path}.{k}")
                worst, bad = max(worst, w), bad + m
            return worst, bad
        if isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                return 0.0, [f"{path} (length {len(a)} vs {len(b)})"]
            worst, bad = 0.0, []
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                w, m = compare(x, y, f"{path}[{i}]")
                worst, bad = max(worst, w), bad + m
            return worst, bad
        return 0.0, ([] if a == b else [path])
    if math.isnan(a) and math.isnan(b):
        return 0.0, []
    d = abs(float(a) - float(b))
    return (d if math.isfinite(d) else math.inf), []


def recheck(f: Finding, *, db: str | None = None, load=None) -> dict:
    """Recompute a finding's snapshot from its manifest (its page and parameters; its index unless `db` is given)
    and compare: {"id", "title", "max_abs_diff", "mismatches", "weights_changed"}. A view that can no longer be
    computed (its model or index gone) reports why instead."""
    db = db or f.manifest.get("index")
    out = {"id": f.finding_id, "title": f.title, "page": f.page}
    try:
        snap, man = snapshot(f.page, f.params, db=db, load=load)
    except (UserError, OSError) as e:
        return out | {"error": str(e).splitlines()[0], "max_abs_diff": None, "mismatches": []}
    worst, bad = compare(f.snapshot, snap)
    was = (f.manifest.get("model") or {}).get("weights_sha256")
    now = (man.get("model") or {}).get("weights_sha256")
    return out | {"max_abs_diff": worst, "mismatches": bad[:20], "weights_changed": bool(was and now and was != now)}


def view_manifest(page: str, params: dict, *, db: str | None = None, load: Callable | None = None) -> dict:
    """The manifest of a view without its snapshot (what the page shows beside it): the model it runs (the run's
    model for unit pages, else `model=`), the run's configuration when it reads one, the view's parameters, versions."""
    if page == "circuits":  # a graph's numbers are stored: no model to load (core.findings.circuits)
        return manifest(page, params) | ({"index": str(db)} if db else {})
    if load is None:
        from core.model.load import load_model as load
    run = None
    name = params.get("model") or "smollm2-135m"
    if page in ("neurons", "features") and db:
        from core.index import queries
        from core.index.db import connect

        con = connect(db, read_only=True)
        try:
            run = queries.get_run(con, _int(params, "run"))
        except queries.QueryError as e:
            raise SnapshotError(str(e)) from None
        finally:
            con.close()
        name = run.model
    elif page == "heads" and not params.get("model"):
        raise SnapshotError("the URL has no model=")
    return manifest(page, params, lm=load(name), run=run) | ({"index": str(db)} if run is not None else {})
