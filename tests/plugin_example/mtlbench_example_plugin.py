"""A third-party method plugin, installed for the tests by putting this folder on ``sys.path``.

It is docs/plugins.md's loss-weighting example: a package declares the entry point
``[project.entry-points."mtlbench.methods"] fixed_weights = "mtlbench_example_plugin:FixedWeights"``.
"""

from torch import Tensor

from methods import Method, StepContext


class FixedWeights(Method):
    """Multi-task hard sharing with fixed task weights: L = w_cls * L_cls + w_att * L_att (example plugin).

    Args:
        weight_classes: weight of every multiclass task's loss.
        weight_attributes: weight of every attribute task's loss.
    """

    def __init__(self, *, weight_classes: float = 1.0, weight_attributes: float = 0.5) -> None:
        super().__init__()
        self.weight_classes = weight_classes
        self.weight_attributes = weight_attributes

    def losses(self, task_losses: dict[str, Tensor], ctx: StepContext) -> dict[str, Tensor]:
        weight = {"multiclass": self.weight_classes, "attributes": self.weight_attributes}
        return {t: weight[ctx.problem.task(t).kind] * loss for t, loss in task_losses.items()}
