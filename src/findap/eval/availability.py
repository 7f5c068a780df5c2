"""Where each FinEval task's data can be had on this machine, found without touching the network.

`task_availability(name, prefer)` answers what `findap eval --prefer <prefer>` would do with a task here: read
local files, read a hub dataset from a local mirror or from the Hugging Face cache, or fail, and why. Hub
datasets are only looked up in the caches (huggingface_hub's file cache, the `datasets` cache) and, to count
rows, read with both libraries' offline switches on, so no call here can download.

Hub mirror: `FINDAP_HUB_MIRROR` names one or more folders (os.pathsep-separated) holding copies of hub datasets
in their hub layout, one folder per dataset id (`<mirror>/Salesforce/FinEval/` with its README.md `configs:`
and `<config>/test-*.parquet`, e.g. made by `hf download Salesforce/FinEval --repo-type dataset --local-dir
<mirror>/Salesforce/FinEval`). Every hub loader then reads that folder with the same `datasets.load_dataset`
call, config and split it uses for the hub (`hub_dataset_source`), so a private mirror, an air-gapped machine
and the tests all exercise the code path of a user online.
"""
from __future__ import annotations

import glob
import inspect
import os
from contextlib import contextmanager
from pathlib import Path

HUB_MIRROR_ENV = "FINDAP_HUB_MIRROR"
LOCAL, MIRROR, CACHED = "local file found", "hub mirror found", "hub cached"
# loader arguments that name files or folders under the data root
_PATH_ARGS = ("path", "paths", "test", "train", "eval_glob", "pool_glob")


# ---- hub ids -> local mirrors -------------------------------------------------------------------------------
def hub_mirror_path(dataset: str) -> Path | None:
    """The folder holding a copy of hub dataset `dataset` under one of $FINDAP_HUB_MIRROR's folders, if any."""
    for folder in os.environ.get(HUB_MIRROR_ENV, "").split(os.pathsep):
        if not folder:
            continue
        candidate = Path(folder).expanduser() / dataset
        if candidate.is_dir():
            if ":" in str(candidate) or "@" in str(candidate):  # read_records' `hf:<id>:<config>@<split>` syntax
                raise ValueError(f"{HUB_MIRROR_ENV} folder {candidate} must not contain ':' or '@'")
            return candidate.resolve()
    return None


def hub_dataset_source(dataset: str) -> str:
    """What `datasets.load_dataset` should read for hub id `dataset`: its mirror folder, else the id itself."""
    mirror = hub_mirror_path(dataset)
    return str(mirror) if mirror is not None else dataset


@contextmanager
def hub_offline():
    """Both libraries' offline switches on (they are read at import, so the module constants are set)."""
    import datasets
    import huggingface_hub.constants as hub_constants

    saved = datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def hub_target(spec) -> tuple[str, str | None, str] | None:
    """(dataset id, config, split) a task's hub source reads; loader defaults fill what its YAML leaves out."""
    if spec.hub is None:
        return None
    from findap.eval.registry import get_loader

    defaults = {name: p.default for name, p in inspect.signature(get_loader(spec.hub.loader)).parameters.items()
                if p.default is not inspect.Parameter.empty}
    args = {**defaults, **spec.hub.args}
    dataset = args.get("dataset")
    if not dataset:
        return None
    return str(dataset), args.get("config"), str(args.get("split") or "test")


def _in_datasets_cache(dataset: str, config: str | None) -> bool:
    """Whether `datasets` holds a prepared copy it can load offline (its cache layout:
    <HF_DATASETS_CACHE>/<namespace>___<snake_case name>/<config>/<version>/<hash>)."""
    import datasets
    from datasets.naming import camelcase_to_snakecase

    parts = dataset.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    root = Path(datasets.config.HF_DATASETS_CACHE).expanduser() / "___".join(parts)
    pattern = root / (glob.escape(config) if config else "*") / "*" / "*"
    return any(Path(p).is_dir() for p in glob.glob(str(pattern)))


def _in_hub_file_cache(dataset: str) -> str | None:
    """The cached dataset card of `dataset` in huggingface_hub's file cache (a lookup, never a download)."""
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(dataset, "README.md", repo_type="dataset")
    return path if isinstance(path, str) else None


# ---- per task -----------------------------------------------------------------------------------------------
def _local_paths(spec, root: Path) -> list[str]:
    from findap.eval.loaders import _path

    out = []
    for key in _PATH_ARGS:
        value = spec.source.args.get(key)
        for item in (value if isinstance(value, list) else [value] if value else []):
            out.append(str(_path(root, str(item))))
    return out


def _missing_paths(paths: list[str]) -> list[str]:
    return [p for p in paths if not (glob.glob(p) if glob.has_magic(p) else Path(p).exists())]


def _counts(spec, root: Path, prefer: str) -> dict[str, int]:
    from findap.eval.task import Task

    with hub_offline():
        task = Task(spec, root=root, prefer=prefer)
        return {role: len(task.splits[role]) for role in ("dev", "unseen", "train")}


def _why(err: Exception) -> str:
    from findap.io import DataError

    if isinstance(err, DataError) and "not found" in err.problem:
        return f"data not on disk: {err.file}"
    text = f"{type(err).__name__}: {err}"
    return text if len(text) <= 300 else text[:297] + "..."


def _local(spec, root: Path, count: bool) -> dict:
    paths = _local_paths(spec, root)
    source = ", ".join(paths) if paths else f"{spec.source.loader} loader (data shipped with findap)"
    missing = _missing_paths(paths)
    if missing:
        return {"status": f"unavailable: data not on disk: {', '.join(missing)}", "source": source, "n": None}
    if not count:
        return {"status": LOCAL, "source": source, "n": None}
    try:
        return {"status": LOCAL, "source": source, "n": _counts(spec, root, "local")}
    except Exception as err:  # noqa: BLE001 - a task that cannot be read is reported, whatever broke
        return {"status": f"unavailable: {_why(err)}", "source": source, "n": None}


def _hub(spec, root: Path, count: bool) -> dict:
    target = hub_target(spec)
    if target is None:
        return {"status": f"unavailable: hub loader {spec.hub.loader} names no dataset", "source": None, "n": None}
    dataset, config, split = target
    hub_id = f"{dataset}{':' + config if config else ''}@{split}"
    mirror = hub_mirror_path(dataset)
    if mirror is not None:
        status, source = MIRROR, f"{mirror} ({HUB_MIRROR_ENV} copy of {hub_id})"
    elif _in_datasets_cache(dataset, config):
        status, source = CACHED, hub_id
    else:
        snapshot = _in_hub_file_cache(dataset)
        why = f"is not in the local Hugging Face cache (needs internet, or a {HUB_MIRROR_ENV} copy)"
        if snapshot:  # `datasets` offline reads only its own prepared cache, not huggingface_hub's files
            why = (f"is not prepared in the datasets cache; huggingface_hub's cache has its files at "
                   f"{Path(snapshot).parent}: copy that folder to ${HUB_MIRROR_ENV}/{dataset} to read it offline")
        return {"status": f"unavailable: {hub_id} {why}", "source": hub_id, "n": None}
    if not count:
        return {"status": status, "source": source, "n": None}
    try:
        return {"status": status, "source": source, "n": _counts(spec, root, "hub")}
    except Exception as err:  # noqa: BLE001
        where = "its mirror" if mirror is not None else "the local cache"
        return {"status": f"unavailable: {hub_id} could not be read from {where}: {_why(err)}", "source": source,
                "n": None}


def task_availability(task_name: str, prefer: str = "local", root: str | Path | None = None,
                      count: bool = True) -> dict:
    """Whether `findap eval --prefer <prefer>` can run the task here, from where, and how many items it has.

    Returns {"task", "status", "runnable", "source", "n"}: status is "local file found", "hub mirror found",
    "hub cached" or "unavailable: <why>"; source is the local file(s) or the hub dataset (`id:config@split`,
    or the mirror folder); n is {"dev", "unseen", "train"} item counts (None when unavailable or count=False,
    which only looks files and caches up instead of reading them). Never touches the network.
    """
    from findap.eval.registry import resolve
    from findap.eval.task import data_root

    if prefer not in ("local", "hub", "auto"):
        raise ValueError(f"prefer must be local, hub or auto, got {prefer!r}")
    [spec] = resolve([task_name])
    root = Path(root) if root else data_root()
    if prefer == "hub" and spec.hub is not None:
        found = _hub(spec, root, count)
    elif spec.source is None:  # hub-only task
        found = _hub(spec, root, count)
        if prefer == "local":  # `--prefer local` never reads the hub, not even its cache: say what would work
            if found["status"].startswith("unavailable"):
                why = f"hub-only task, {found['status'].removeprefix('unavailable: ')}"
            else:
                why = f"hub-only task, {found['status']} ({found['source']}): run it with --prefer auto or hub"
            found = {"status": f"unavailable: {why}", "source": found["source"], "n": None}
    else:
        found = _local(spec, root, count)
        # auto falls back to the hub only for absent files, as Task does; broken local data stays the answer
        if prefer == "auto" and spec.hub is not None and found["status"].startswith("unavailable: data not on disk"):
            hub = _hub(spec, root, count)
            found = hub if not hub["status"].startswith("unavailable") else {
                **hub, "status": f"{found['status']}; {hub['status'].removeprefix('unavailable: ')}"}
    return {"task": spec.name, "status": found["status"], "runnable": not found["status"].startswith("unavailable"),
            "source": found["source"], "n": found["n"]}


def all_task_availability(prefer: str = "local", root: str | Path | None = None, count: bool = True) -> list[dict]:
    """task_availability for every registered task (built-in and $FINDAP_TASKS), by name."""
    from findap.eval.registry import all_specs

    return [task_availability(name, prefer, root, count) for name in sorted(all_specs())]


def availability_table(rows: list[dict]) -> str:
    """Plain-text table of task_availability rows, with a last line counting the runnable tasks."""
    lines = [f"{'task':<22} {'dev':>6} {'unseen':>6} {'train':>6}  status / source"]
    for r in rows:
        n = r["n"] or {}
        counts = " ".join(f"{n[k]:>6}" if k in n else f"{'-':>6}" for k in ("dev", "unseen", "train"))
        where = f" ({r['source']})" if r["runnable"] and r["source"] else ""
        lines.append(f"{r['task']:<22} {counts}  {r['status']}{where}")
    lines.append(f"{sum(r['runnable'] for r in rows)} of {len(rows)} tasks runnable here")
    return "\n".join(lines)
