"""The distillation loss family: pure JAX functions, a registry of config types, and their weighted sum.

    LOSS_TYPES                      name -> LossSpec (arity 'pairs'/'models', labels, learnable, defaults)
    validate_losses(loss_configs, model_names, captured_keys, frozen)   ConfigError before any compute
    build_losses(loss_configs) -> CombinedLoss
    CombinedLoss.init(rng, outputs) -> loss params;  CombinedLoss(params, outputs, labels, *, rng, epoch,
    label_mask, soft_labels) -> (total, terms);  CombinedLoss.shape_check(outputs)
    CombinedLoss.init_state(rng, num_data) -> loss state (CRD memory banks; {} if none);
    CombinedLoss.apply(params, state, outputs, labels, *, ..., indices) -> (total, terms, new state)
    from_paddleclas(loss_train) -> (kdjax loss config, PaddleClas output key -> term)
    pure functions: cross_entropy, soft_ce_loss, kl_div_loss, dml_loss, dkd_loss, dist_loss, wsl_loss,
    distance_loss, rkd_angle_loss, rkd_distance_loss, mgd_loss, afd_loss, afd_attention_loss, skd_loss,
    standardize_logits, soft_cross_entropy, fitnet_loss, at_loss, pefd_loss, crd_loss, ...

Definitions follow PaddleClas / mdistiller exactly, quirks included (../shared/golden/LOSSES.md).
Two behaviours differ from what the reference's code seems to say; both follow what it does:
the teacher side of soft_ce / kd / dkd gets no gradient (paddle's soft-label CE and kl_div ops do not
differentiate their label input), and every weight is applied (see combine.py).
"""

from kdjax.losses.afd import (AFDModule, LinearTransformStudent, LinearTransformTeacher,  # noqa: F401
                              afd_attention_loss, afd_init, afd_loss, unique_shapes)
from kdjax.losses.combine import CombinedLoss, build_losses  # noqa: F401
from kdjax.losses.crd import crd_init, crd_loss, crd_state_init, nce_loss, sample_contrast_indices  # noqa: F401
from kdjax.losses.feature import (adaptive_avg_pool, distance_loss, flatten_nchw, rkd_angle_loss,  # noqa: F401
                                  rkd_distance_loss, smooth_l1)
from kdjax.losses.hints import (FitNetRegressor, at_loss, at_losses, attention_map, fitnet_init,  # noqa: F401
                                fitnet_loss)
from kdjax.losses.mgd import MGDGenerator, mgd_init, mgd_loss, mgd_mask, mgd_uniform  # noqa: F401
from kdjax.losses.pefd import PEFDProjectors, pefd_init, pefd_loss  # noqa: F401
from kdjax.losses.registry import LOSS_TYPES, LossSpec  # noqa: F401
from kdjax.losses.response import (cross_entropy, dist_loss, dkd_loss, dkd_parts,  # noqa: F401
                                   dkd_warmup_factor, dml_loss, kl_div_loss, skd_loss, soft_ce_loss,
                                   soft_cross_entropy, standardize_logits, target_or_teacher_argmax, wsl_loss)
from kdjax.losses.validate import validate_losses  # noqa: F401
