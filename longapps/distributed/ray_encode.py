"""Encode stage on a Ray cluster: the driver sends texts, Ray workers return vectors batch by batch.

The driver (the process that walks and splits the input) keeps the content-hash embedding cache: only
cache misses are sent out, through Ray Data ``map_batches`` over an actor pool (one model load per actor,
one GPU per actor when the cluster has GPUs), and every batch's vectors are written to the cache as soon as
it comes back. A worker (or the whole run) that dies loses at most the batches in flight; the next run
starts from the cache. Pipelines get this by passing ``ray=`` (an address, True or a `RayConfig`) down to
`longapps.adapters.encode.with_cache` / `load_encoder`.
"""
from __future__ import annotations

import functools
import logging
import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from longapps.resources import LongappsError

if TYPE_CHECKING:
    from longapps.adapters.encode import Encoder

log = logging.getLogger(__name__)

RAY_MISSING = "Ray is not installed: pip install 'longapps[ray]' (or drop --ray)"


def ray_available() -> bool:
    """Whether the `ray` extra (ray[data]) is importable."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class RayConfig:
    """Where and how to encode on Ray.

    address: None or "" = $RAY_ADDRESS, else a cluster already running on this machine, else a new local
    one (what `ray.init()` does); "local" = always a new local instance; anything else (``host:6379``,
    ``ray://host:10001``) is passed to `ray.init`.
    """

    address: str | None = None
    workers: int | None = None            # actors; default: one per GPU, else one per `cpus_per_worker` CPUs
    batch_size: int = 64                  # texts per actor call (and per cache write)
    cpus_per_worker: float = 1.0          # CPU actors: torch threads per actor
    gpus_per_worker: float | None = None  # default: 1 when the cluster has GPUs, else 0
    max_restarts: int = 3                 # a dead actor is restarted and its batch retried this many times
    num_cpus: int | None = None           # only when a new local instance is started

    @classmethod
    def from_option(cls, value: "RayConfig | str | bool | None") -> "RayConfig | None":
        """`--ray` / `ray=` values: None/False = off, True or "" = default address, a string = that address."""
        if value is None or value is False:
            return None
        if isinstance(value, RayConfig):
            return value
        if value is True:
            return cls()
        return cls(address=str(value).strip() or None)


def connect(config: RayConfig) -> None:
    """Join (or start) the Ray cluster once per process; a one-line LongappsError when that fails."""
    if not ray_available():
        raise LongappsError(RAY_MISSING)
    warnings.filterwarnings("ignore", module=r"ray(\.|$)")    # Ray's deprecation/tuning warnings
    import ray

    if ray.is_initialized():  # joined earlier in this process (or by the caller)
        _quiet_ray_data()
        return
    _check_reachable(config.address or os.environ.get("RAY_ADDRESS"))
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR,
                              "configure_logging": True}
    if config.address:
        kwargs["address"] = config.address
    if config.num_cpus is not None and (config.address in (None, "local")) and not os.environ.get("RAY_ADDRESS"):
        kwargs["num_cpus"] = config.num_cpus
    try:
        ray.init(**kwargs)
    except Exception as err:  # noqa: BLE001 - connection errors come in many types
        where = config.address or os.environ.get("RAY_ADDRESS") or "a new local instance"
        msg = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise LongappsError(f"cannot start or reach Ray ({where}): {msg}") from err
    _quiet_ray_data()


def _check_reachable(address: str | None, timeout: float = 3.0) -> None:
    """A TCP connect to HOST:PORT first: `ray.init` retries an unreachable address for minutes."""
    import socket

    if not address or address in ("auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        return  # not HOST:PORT: let Ray interpret it
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise LongappsError(f"cannot reach the Ray cluster at {address}: {err.strerror or err} "
                            "(is `ray start --head` running there? check the address and port)") from err


def _quiet_ray_data() -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False       # longapps shows its own bar
    ctx.print_on_execution_start = False
    for name in ("ray", "ray.data", "ray._private", "ray.data._internal.execution.streaming_executor"):
        logging.getLogger(name).setLevel(logging.ERROR)


def encoder_factory(encoder: "Encoder") -> Callable[[], "Encoder"]:
    """A picklable recipe each actor calls once to get its own copy of the model.

    Encoders that can be rebuilt from a few arguments say how with ``ray_factory()`` (the sentence-transformers
    encoder: model path/id, batch size, token limit; the device is picked on the worker, so a GPU actor uses
    its GPU). Any other encoder is shipped as it is (cloudpickle)."""
    make = getattr(encoder, "ray_factory", None)
    if callable(make):
        return make()
    return functools.partial(_same, encoder)


def _same(encoder: "Encoder") -> "Encoder":
    return encoder


class _EncodeActor:
    """A Ray Data map_batches worker: loads the model once, encodes one batch of texts per call."""

    def __init__(self, factory: Callable[[], "Encoder"]) -> None:
        self.encoder = factory()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vecs = self.encoder.encode([str(t) for t in batch["text"]])
        return {"pos": batch["pos"], "vec": np.ascontiguousarray(vecs, dtype=np.float32)}


def _actor_class(factory: Callable[[], "Encoder"]) -> type:
    """`_EncodeActor` with the recipe built in: Ray then keeps no constructor arguments in the object store
    (with restartable actors it prints a warning about those on every run)."""
    def __init__(self: _EncodeActor) -> None:
        _EncodeActor.__init__(self, factory)

    return type("EncodeActor", (_EncodeActor,), {"__init__": __init__})


class RayEncodeBackend:
    """Encodes texts on Ray workers; `encode_stream` yields (positions, vectors) as each batch returns."""

    def __init__(self, factory: Callable[[], "Encoder"], config: RayConfig | None = None) -> None:
        self.factory = factory
        self.config = config or RayConfig()

    @classmethod
    def for_encoder(cls, encoder: "Encoder", config: RayConfig) -> "RayEncodeBackend":
        return cls(encoder_factory(encoder), config)

    def plan(self) -> dict[str, float]:
        """Actors (`workers`; `fits`: how many the cluster holds now), CPUs and GPUs per actor."""
        import ray

        res = ray.cluster_resources()
        cfg = self.config
        gpus = cfg.gpus_per_worker if cfg.gpus_per_worker is not None else (1.0 if res.get("GPU", 0) >= 1 else 0.0)
        fits = max(1, int(res.get("GPU", 0) // gpus) if gpus > 0 else int(res.get("CPU", 1) // cfg.cpus_per_worker))
        return {"workers": cfg.workers or fits, "fits": fits, "num_gpus": gpus, "num_cpus": cfg.cpus_per_worker}

    def encode_stream(self, texts: Sequence[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (positions into `texts`, float32 vectors) per finished batch, in completion order."""
        if not texts:
            return
        connect(self.config)
        import pyarrow as pa
        import ray.data
        from ray.exceptions import RayError

        plan = self.plan()
        bs = max(1, self.config.batch_size)
        # one input block per batch: each actor call is one task, so each batch streams back on its own
        tables = [pa.table({"pos": np.arange(s, min(s + bs, len(texts)), dtype=np.int64),
                            "text": pa.array(list(texts[s:s + bs]), type=pa.large_string())})
                  for s in range(0, len(texts), bs)]
        # a dead actor is restarted and its batch retried (Ray Data's own default is forever); 0 = fail the run
        retries: dict[str, Any] = {"max_restarts": self.config.max_restarts,
                                   "max_task_retries": self.config.max_restarts}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Ray 2.60 flags these two as "ray_remote_args", still honoured
            ds = ray.data.from_arrow(tables).map_batches(
                _actor_class(self.factory), batch_size=bs, batch_format="numpy",
                # start with what the cluster holds now; an autoscaling cluster may grow the pool to `workers`
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, min(int(plan["workers"]), len(tables))),
                                                   initial_size=max(1, min(int(plan["workers"]), int(plan["fits"]),
                                                                           len(tables)))),
                num_cpus=plan["num_cpus"], num_gpus=plan["num_gpus"], **retries)
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
                yield np.asarray(batch["pos"], dtype=np.int64), np.asarray(batch["vec"], dtype=np.float32)
        except RayError as err:
            raise LongappsError(f"Ray encoding failed ({_first_line(err)}); vectors that came back are cached: "
                                "run again to resume") from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("Traceback", "File ", "ray::")):
            return line[:200]
    return type(err).__name__
