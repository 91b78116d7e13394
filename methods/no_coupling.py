"""``no_coupling``: the multi-task baseline, the method contract with nothing overridden."""

from methods.base import METHODS, Method


@METHODS.register("no_coupling")
class NoCoupling(Method):
    """Multi-task hard sharing with summed task losses and no coupling ("NC MT", Kollias et al., AAAI-24, Tab. 2).

    The paper's multi-task baseline: one shared backbone, one head per task, L = L_cls + L_att
    with each task loss over its annotated samples only. It has no hyperparameters.
    """
