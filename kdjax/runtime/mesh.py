"""Devices, mesh and shardings; the one place where the step functions get their jit signature.

The mesh has two axes, `data` and `fsdp` (`config.mesh.data`, `config.mesh.fsdp`; data=-1 takes the devices
left over). Batches are split over both axes jointly, P(("data", "fsdp")). Parameters, optimizer state and
frozen models are replicated while fsdp == 1; with fsdp > 1 every array of at least `mesh.fsdp_min_size`
elements is split along its largest axis divisible by the fsdp size (small arrays stay replicated) and XLA
gathers them where a layer needs them (FSDP / ZeRO-3 through GSPMD).

Shardings are derived from shapes before anything is materialised: `init_sharded` runs `jax.eval_shape` on the
initialiser, applies the rule, then `jax.jit(init, out_shardings=...)`, so a large model is created directly
in its shards. The same code runs on 1 device, 8 simulated CPU devices, several processes, or a pod slice.
"""

import dataclasses
import math
from typing import Callable

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from kdjax.errors import ConfigError

BATCH_AXES = ("data", "fsdp")
DEFAULT_FSDP_MIN_SIZE = 2 ** 14  # elements; smaller arrays are replicated even when fsdp > 1


def fsdp_spec(shape, fsdp: int, min_size: int = DEFAULT_FSDP_MIN_SIZE) -> P:
    """The sharding rule: split the largest axis divisible by `fsdp` (the last such on ties), else replicate."""
    if fsdp <= 1 or not shape or math.prod(shape) < max(min_size, 1):
        return P()
    axes = [i for i, d in enumerate(shape) if d >= fsdp and d % fsdp == 0]
    if not axes:
        return P()
    axis = max(axes, key=lambda i: (shape[i], i))
    spec = [None] * len(shape)
    spec[axis] = "fsdp"
    return P(*spec)


@dataclasses.dataclass
class Parallel:
    mesh: Mesh
    fsdp_min_size: int = DEFAULT_FSDP_MIN_SIZE

    @property
    def data_size(self) -> int:
        """How many ways a batch is split (data × fsdp): batch sizes must be multiples of it."""
        return self.mesh.shape["data"] * self.mesh.shape["fsdp"]

    @property
    def fsdp_size(self) -> int:
        return self.mesh.shape["fsdp"]

    # ---- shardings -------------------------------------------------------------------------------------------
    def replicated(self):
        return NamedSharding(self.mesh, P())

    def batch_sharding(self):
        return NamedSharding(self.mesh, P(BATCH_AXES))

    def sharding_for(self, shape) -> NamedSharding:
        return NamedSharding(self.mesh, fsdp_spec(tuple(shape), self.fsdp_size, self.fsdp_min_size))

    def shardings(self, tree):
        """A NamedSharding per leaf of `tree` (arrays or ShapeDtypeStructs), by the fsdp rule."""
        return jax.tree.map(lambda a: self.sharding_for(np.shape(a)), tree)

    def gather_params(self, variables):
        """Inside a step: model `variables` constrained to be whole on every device (identity unless fsdp > 1).

        FSDP as ZeRO-3: the step gathers each sharded parameter before computing with it and the transpose of
        this constraint reduce-scatters its gradient. Without it GSPMD's cost model may instead split a layer by
        the parameter's sharded axis (output channels, or the weight gradient), moving activations to the devices
        that hold each slice (all-gathers / all-to-alls of batch-sized operands: cheaper than the weights only for
        tiny feature maps, and growing with the batch)."""
        if self.fsdp_size <= 1:
            return variables
        rep = self.replicated()
        return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, rep), variables)

    # ---- placing and fetching values -------------------------------------------------------------------------
    def put_batch(self, local_batch: dict) -> dict:
        """Process-local numpy batch → global jax arrays split over ("data", "fsdp")."""
        sharding = self.batch_sharding()
        if jax.process_count() == 1:  # local data is the global batch: one batched transfer (~10x less overhead)
            return jax.device_put({k: np.asarray(v) for k, v in local_batch.items()}, sharding)
        return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}

    def put(self, tree, shardings=None):
        """Host values (identical on every process) → device arrays with `shardings` (default: the fsdp rule).

        Each device receives only its own slice; the values are copied, so later donation never deletes the
        source (see DESIGN.md on `jax.device_put` aliasing).
        """
        shardings = self.shardings(tree) if shardings is None else shardings

        def one(a, sharding):
            host = np.asarray(a)
            return jax.make_array_from_callback(host.shape, sharding, lambda index: np.array(host[index]))

        return jax.tree.map(one, tree, shardings)

    def replicate(self, tree):
        """Host values → replicated device arrays (copies, so later donation never deletes the source)."""
        sharding = self.replicated()
        return self.put(tree, jax.tree.map(lambda _: sharding, tree))

    def init_sharded(self, fn: Callable, *args):
        """`fn(*args)` computed directly into its shardings: eval_shape → rule → jit(out_shardings=...).

        Returns (values, shardings). Nothing is materialised whole on one device or host.
        """
        abstract = jax.eval_shape(fn, *args)
        shardings = self.shardings(abstract)
        if not jax.tree.leaves(abstract):
            return abstract, shardings  # nothing to create (e.g. no learnable loss modules)
        lowered = jax.jit(fn, out_shardings=shardings).lower(*args)
        # Runs once: XLA:CPU spends ~10x longer optimising the unrolled random-number code of an init than
        # running it, so skip the backend optimisations there (integer RNG: the same values).
        options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None
        return lowered.compile(options)(*args), shardings

    def fetch(self, tree):
        """Device arrays → host numpy, whatever their sharding. Every process must call it (sharded arrays that
        span processes are gathered with a collective)."""
        def gatherable(a):
            return isinstance(a, jax.Array) and not a.is_fully_addressable and not a.is_fully_replicated

        if any(gatherable(a) for a in jax.tree.leaves(tree)):
            rep = self.replicated()
            tree = jax.jit(lambda t: t, out_shardings=jax.tree.map(lambda _: rep, tree))(tree)
        return jax.tree.map(lambda a: np.asarray(a), tree)

    @staticmethod
    def shardings_of(tree):
        """The sharding of each array of `tree` (what a jit signature needs for values already placed)."""
        return jax.tree.map(lambda a: a.sharding, tree)

    @staticmethod
    def abstract(tree):
        """ShapeDtypeStructs carrying each array's sharding: the restore target Orbax needs."""
        return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), tree)

    # ---- jit signatures --------------------------------------------------------------------------------------
    def _or_rep(self, shardings):
        return self.replicated() if shardings is None else shardings

    def jit_train_step(self, train_step, state_shardings=None, frozen_shardings=None):
        """`train_step(state, frozen, batch, rng) -> (state, metrics)`; the state is donated."""
        rep, batch = self.replicated(), self.batch_sharding()
        state_sh, frozen_sh = self._or_rep(state_shardings), self._or_rep(frozen_shardings)
        return jax.jit(train_step, in_shardings=(state_sh, frozen_sh, batch, rep), out_shardings=(state_sh, rep),
                       donate_argnums=(0,))

    def jit_eval_step(self, eval_step, params_shardings=None, stats_shardings=None, frozen_shardings=None):
        """`eval_step(params, batch_stats, frozen, batch) -> sums` (replicated)."""
        rep, batch = self.replicated(), self.batch_sharding()
        return jax.jit(eval_step, in_shardings=(self._or_rep(params_shardings), self._or_rep(stats_shardings),
                                                self._or_rep(frozen_shardings), batch), out_shardings=rep)


def _mesh_value(mesh_cfg, key: str, default: int) -> int:
    if not mesh_cfg:
        return default
    value = mesh_cfg.get(key, default)
    return default if value is None else int(value)


def make_parallel(mesh_cfg=None, global_batch: int = None, field: str = "train.batch_size",
                  grad_accum_steps: int = 1) -> Parallel:
    """The mesh `config.mesh` asks for over all visible devices (of every process), checked against the batch."""
    devices = jax.devices()
    n = len(devices)
    fsdp = _mesh_value(mesh_cfg, "fsdp", 1)
    data = _mesh_value(mesh_cfg, "data", -1)
    min_size = _mesh_value(mesh_cfg, "fsdp_min_size", DEFAULT_FSDP_MIN_SIZE)
    if fsdp < 1 or n % fsdp:
        raise ConfigError("mesh.fsdp", f"mesh.fsdp={fsdp} must be >= 1 and divide the {n} visible devices")
    data = n // fsdp if data in (-1, 0) else data
    if data * fsdp != n:
        raise ConfigError("mesh.data", f"mesh.data={data} × mesh.fsdp={fsdp} must equal the {n} visible devices; "
                                       f"use mesh.data=-1 for all of them")
    shards = data * fsdp
    if global_batch is not None and global_batch % shards:
        raise ConfigError(field, f"batch size {global_batch} is not divisible by the {shards} devices "
                                 f"(mesh data={data} × fsdp={fsdp}); use a multiple of {shards}")
    accum = int(grad_accum_steps or 1)
    if accum < 1:
        raise ConfigError("train.grad_accum_steps", f"must be >= 1, got {accum}")
    if global_batch is not None and global_batch % (shards * accum):
        raise ConfigError("train.grad_accum_steps",
                          f"batch size {global_batch} must split into {accum} micro-batches that each divide over "
                          f"the {shards} devices: use a batch size that is a multiple of {shards * accum}")
    mesh = jax.make_mesh((data, fsdp), BATCH_AXES, axis_types=(AxisType.Auto, AxisType.Auto), devices=devices)
    return Parallel(mesh, fsdp_min_size=min_size)
