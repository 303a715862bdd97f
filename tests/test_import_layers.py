"""tinytorch's modules import one another one way (see ARCHITECTURE.md): no cycles, counting the
imports inside functions too, with the exceptions named here."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "tinytorch"

# The one import that points up: tensor.py binds Tensor's operators to the primitives of
# functions.py, which subclass tensor's Function: one unit in two files (as tinygrad's tensor.py
# and function.py)
ALLOWED = {("tinytorch.tensor", "tinytorch.functions")}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute module a `from ... import` names (relative imports resolved)."""
    if not level:
        return target or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def import_graph(known: set) -> dict:
    """{module: {tinytorch modules it imports, at module level or inside any function}}."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name, is_package = module_name(path), path.name == "__init__.py"
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = resolve(name, is_package, node.level, node.module)
                # `from . import x` may name a submodule; otherwise the names come from `base`
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            else:
                continue
            for target in targets:
                # importing a.b.c runs a/__init__ and a/b/__init__ too
                parts = target.split(".")
                edges |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)} & known
        # a module's own packages: their __init__ runs first, and importing a submodule of the
        # package being initialized is how a package is built, not a cycle
        edges -= {name} | {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        graph[name] = edges
    return graph


def cycles(graph: dict) -> list:
    """Every edge a -> b that lies on a cycle (b reaches a), as (a, b)."""
    def reaches(start, goal):
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(graph.get(node, ()))
        return False

    return sorted((a, b) for a, targets in graph.items() for b in targets if reaches(b, a))


def test_import_graph_has_no_cycles_but_the_named_ones():
    known = {module_name(p) for p in PACKAGE.rglob("*.py")}
    graph = import_graph(known)
    assert graph["tinytorch.nn.layers"] >= {"tinytorch.nn.functional", "tinytorch.nn.module"}  # the parser sees imports
    for a, b in ALLOWED:
        assert b in graph[a], f"{a} no longer imports {b}: take it off ALLOWED"
        graph[a].discard(b)
    found = cycles(graph)
    assert not found, f"import cycles in tinytorch/ (edges on a cycle): {found}"


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [("a", "b"), ("b", "c"), ("c", "a")]


def test_the_optimizer_the_engine_and_the_thread_pool_know_no_layers():
    """optim, parallel and tensor import nothing of nn (the model owns its optimizer groups and
    tells the thread pool its row size), and the engine knows no optimizer buffer."""
    known = {module_name(p) for p in PACKAGE.rglob("*.py")}
    graph = import_graph(known)
    for module in ("tinytorch.optim", "tinytorch.parallel", "tinytorch.tensor", "tinytorch.functions",
                   "tinytorch.threads", "tinytorch.memory"):
        assert not {m for m in graph[module] if m.startswith("tinytorch.nn")}, module
    engine = ast.parse((PACKAGE / "tensor.py").read_text())
    names = {n.attr for n in ast.walk(engine) if isinstance(n, ast.Attribute)} | \
        {n.value for n in ast.walk(engine) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert "_grad_buffer" not in names


def test_gpt_owns_its_weight_decay_groups():
    """Matrices decay; biases, LayerNorm weights and the two embedding tables do not."""
    import numpy as np

    from tinytorch.nn import GPT, GPTConfig
    from tinytorch.optim import AdamW

    model = GPT(GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=2, n_head=2))
    decay, no_decay = model.optimizer_groups(0.1)
    names = {id(p): name for name, p in model.named_parameters()}
    expected = {f"transformer.h.{i}.{m}.weight" for i in range(2)
                for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")}
    assert {names[id(p)] for p in decay["params"]} == expected and decay["weight_decay"] == 0.1
    assert {names[id(p)] for p in no_decay["params"]} == set(names.values()) - expected
    assert no_decay["weight_decay"] == 0.0
    assert [len(g["params"]) for g in model.optimizer_groups(0.1)] == [8, len(names) - 8]
    AdamW(model.optimizer_groups(0.1), lr=1e-3)  # what the optimizer takes
    assert np.all([p.ndim == 2 for p in decay["params"]])


def test_no_function_shares_a_name_with_an_nn_class():
    """nn.CausalSelfAttention calls FusedCausalSelfAttention, not a second CausalSelfAttention."""
    import tinytorch.nn as nn
    from tinytorch import functions, fused
    from tinytorch.tensor import Function

    layers = {name for name, value in vars(nn).items() if isinstance(value, type)}
    for module in (functions, fused):
        ops = {name for name, value in vars(module).items()
               if isinstance(value, type) and issubclass(value, Function) and value is not Function}
        assert ops and not ops & layers, (module.__name__, ops & layers)
