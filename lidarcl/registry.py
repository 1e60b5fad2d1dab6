"""mmengine registries of lidarcl (scope ``lidarcl``).

This module imports nothing of lidarcl itself, so every other module can import it
without creating an import circle. Components register themselves when their module is
imported; :func:`lidarcl.utils.setup_env.register_all_modules` imports every module that
registers something (tools and the engine call it before building from a config).
"""
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

DATASETS = Registry("dataset", parent=MMENGINE_DATASETS, scope="lidarcl",
                    locations=["lidarcl.datasets"])
TRANSFORMS = Registry("transform", parent=MMENGINE_TRANSFORMS, scope="lidarcl",
                      locations=["lidarcl.datasets.transforms",
                                 "lidarcl.robustness.corruptions"])
MODELS = Registry("model", parent=MMENGINE_MODELS, scope="lidarcl",
                  locations=["lidarcl.models"])
# samplers and collate functions come from mmengine; these children let the Runner find
# them from the lidarcl scope without a fallback warning
DATA_SAMPLERS = Registry("data sampler", parent=MMENGINE_DATA_SAMPLERS, scope="lidarcl")
FUNCTIONS = Registry("function", parent=MMENGINE_FUNCTIONS, scope="lidarcl")
METRICS = Registry("metric", parent=MMENGINE_METRICS, scope="lidarcl",
                   locations=["lidarcl.evaluation"])

# the Runner's own components (loops, optimizers, schedulers, hooks, ...) come from
# mmengine; children in the lidarcl scope let it find them without a fallback warning
_RUNNER_PARTS = ("EVALUATOR", "HOOKS", "LOG_PROCESSORS", "LOOPS", "MODEL_WRAPPERS",
                 "OPTIMIZERS", "OPTIM_WRAPPERS", "OPTIM_WRAPPER_CONSTRUCTORS",
                 "PARAM_SCHEDULERS", "RUNNERS", "RUNNER_CONSTRUCTORS", "VISBACKENDS",
                 "VISUALIZERS", "WEIGHT_INITIALIZERS", "TASK_UTILS")


def _child_registries() -> dict:
    import mmengine.registry as mm

    return {name: Registry(getattr(mm, name).name, parent=getattr(mm, name), scope="lidarcl")
            for name in _RUNNER_PARTS}


_CHILDREN = _child_registries()
HOOKS = _CHILDREN["HOOKS"]
LOOPS = _CHILDREN["LOOPS"]
MODEL_WRAPPERS = _CHILDREN["MODEL_WRAPPERS"]

