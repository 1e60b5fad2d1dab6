"""The registry module imports nothing of lidarcl, ``lidarcl`` and ``lidarcl.utils`` stay
light, the package has no import circle, and
:func:`lidarcl.utils.setup_env.register_all_modules` still registers every component."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "lidarcl"


def _lidarcl_modules_after(statement: str) -> list[str]:
    """The lidarcl modules in ``sys.modules`` after ``statement`` in a fresh interpreter."""
    code = (f"{statement}\nimport json, sys\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'lidarcl')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_registry_imports_nothing_of_lidarcl():
    assert _lidarcl_modules_after("import lidarcl.registry") == ["lidarcl", "lidarcl.registry"]


def test_package_and_utils_stay_light():
    assert _lidarcl_modules_after("import lidarcl") == ["lidarcl"]
    assert _lidarcl_modules_after("import lidarcl.utils") == ["lidarcl", "lidarcl.utils"]
    # the set-up module imports the components only when it is called
    assert _lidarcl_modules_after("import lidarcl.utils.setup_env") == [
        "lidarcl", "lidarcl.utils", "lidarcl.utils.setup_env"]


def test_register_all_modules_lives_in_setup_env_only():
    import lidarcl.registry

    assert not hasattr(lidarcl.registry, "register_all_modules")


def test_register_all_modules_registers_pretrainers_and_datasets():
    """In a fresh interpreter (nothing registered yet), build a pretrainer and a dataset by
    their names alone, and check each registry holds what the packages export."""
    code = """
import json
from lidarcl.utils.setup_env import register_all_modules
register_all_modules()
from mmengine.registry import DefaultScope
from lidarcl.registry import DATASETS, HOOKS, MODELS, TRANSFORMS
model = MODELS.build(dict(type="PointContrast", backbone=dict(
    type="MinkUNet18", in_channels=4, out_channels=8, voxel_size=0.5)))
dataset = DATASETS.build(dict(type="FolderDataset", data_root=".", lazy_init=True))
print(json.dumps({
    "scope": DefaultScope.get_current_instance().scope_name,
    "model": type(model).__name__, "backbone": type(model.backbone).__name__,
    "dataset": type(dataset).__name__,
    "models": sorted(MODELS.module_dict), "datasets": sorted(DATASETS.module_dict),
    "transforms": sorted(TRANSFORMS.module_dict), "hooks": sorted(HOOKS.module_dict)}))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["scope"] == "lidarcl"
    assert (out["model"], out["backbone"], out["dataset"]) == (
        "PointContrast", "MinkUNet18", "FolderDataset")

    import lidarcl.datasets.transforms as transforms
    import lidarcl.models.backbones as backbones
    import lidarcl.models.losses as losses
    import lidarcl.models.pretrainers as pretrainers
    from lidarcl.registry import MODELS, TRANSFORMS

    def registered(module, registry):
        return {name for name in module.__all__
                if isinstance(getattr(module, name), type) and name in registry.module_dict}

    expected_models = (registered(backbones, MODELS) | registered(losses, MODELS)
                       | registered(pretrainers, MODELS))
    assert {"PointContrast", "PointRegionContrast", "ForegroundAwareContrast",
            "MaskedContrast", "MinkUNet34", "VoxelBackBone8x", "PointTransformerV3",
            "InfoNCELoss"} <= expected_models
    assert expected_models <= set(out["models"])
    assert {"NuScenesDataset", "KittiDataset", "FolderDataset"} <= set(out["datasets"])
    assert registered(transforms, TRANSFORMS) <= set(out["transforms"])
    assert {"LoadPoints", "MultiViewAugment", "PackSample"} <= set(out["transforms"])
    assert {"WeightsOnlyCheckpointHook", "AtomicCheckpointHook"} <= set(out["hooks"])


# ------------------------------------------------------------------ no import circle
def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """lidarcl modules that ``path`` imports when it is imported (statements outside
    functions; imports inside a function run only when it is called). ``from a import b``
    counts as importing ``a.b`` when that is a module, else ``a``."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in modules else base)
            visit(child)

    visit(tree)
    return {m for m in found if m in modules and m != name}


def test_the_package_has_no_import_circle():
    """Module-level imports between lidarcl modules form no cycle (a circle only works as
    long as the modules happen to be imported in one order)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    graph = {name: _top_level_imports(path, name, modules) for name, path in files.items()}
    assert "lidarcl.registry" in graph and graph["lidarcl.registry"] == set()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def walk(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            walk(start, [start])
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)
