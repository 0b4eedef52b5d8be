"""Devices, mesh and shardings; the one place where the step functions get their jit signature.

Batches are split over the mesh axis `data`; the training state and frozen models are replicated (`fsdp` shards
them once that axis is > 1). The same code runs on 1 device, 8 simulated CPU devices, or a pod slice.
"""

import dataclasses

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from kdjax.errors import ConfigError


@dataclasses.dataclass
class Parallel:
    mesh: Mesh

    @property
    def data_size(self) -> int:
        return self.mesh.shape["data"]

    def replicated(self):
        return NamedSharding(self.mesh, P())

    def batch_sharding(self):
        return NamedSharding(self.mesh, P("data"))

    def put_batch(self, local_batch: dict) -> dict:
        """Process-local numpy batch → global jax arrays split over `data`."""
        sharding = self.batch_sharding()
        return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}

    def replicate(self, tree):
        """Host values → replicated device arrays (copies, so later donation never deletes the source)."""
        sharding = self.replicated()
        return jax.tree.map(lambda a: jax.device_put(np.array(a), sharding), tree)

    def jit_train_step(self, train_step):
        rep, batch = self.replicated(), self.batch_sharding()
        return jax.jit(train_step, in_shardings=(rep, rep, batch, rep), out_shardings=(rep, rep), donate_argnums=(0,))

    def jit_eval_step(self, eval_step):
        rep, batch = self.replicated(), self.batch_sharding()
        return jax.jit(eval_step, in_shardings=(rep, rep, rep, batch), out_shardings=rep)


def make_parallel(mesh_cfg=None, global_batch: int = None, field: str = "train.batch_size") -> Parallel:
    devices = jax.devices()
    n = len(devices)
    data = int((mesh_cfg or {}).get("data", -1)) if mesh_cfg else -1
    data = n if data in (-1, 0) else data
    if data != n:
        raise ConfigError("mesh.data", f"mesh.data={data} but {n} devices are visible; use -1 for all of them")
    if global_batch is not None and global_batch % data:
        raise ConfigError(field, f"batch size {global_batch} is not divisible by the {data} devices; use a multiple "
                                 f"of {data}")
    return Parallel(Mesh(np.asarray(devices).reshape(data), ("data",)))
