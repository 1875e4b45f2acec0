"""The import graph of adapterkit/ points one way (docs/architecture.md, "Rooms and arrows").

The graph is read from the source with ``ast``: every ``import`` and ``from ... import``,
inside functions included, relative imports resolved, ``from package import name`` counted
as an import of the submodule where ``name`` is one. A *room* is a top-level subpackage or
top-level module of adapterkit (``models``, ``adapters``, ``engine``, ``config``, ...; the
package's own ``__init__`` is the room ``adapterkit``). Importing a module runs its parent
packages' ``__init__`` first; that is Python's order, not an arrow, and is not counted.
"""
import ast
import os
import os.path as osp
from typing import Dict, List, Set

PACKAGE = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'adapterkit')
# Imported by every room and importing no module of adapterkit themselves.
FOUNDATION = {'errors', 'fileio'}
# The strategy contract: the one module under adapters/ that models/ may import.
CONTRACT = 'adapterkit.adapters.base'


def modules(root: str) -> Dict[str, str]:
    """``{dotted module name: file}`` of the package at ``root`` (``__init__`` files named
    by their package)."""
    base = osp.dirname(root)
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith('.py'):
                parts = osp.relpath(osp.join(folder, name), base)[:-3].split(os.sep)
                found['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = \
                    osp.join(folder, name)
    return found


def import_graph(root: str) -> Dict[str, Set[str]]:
    """``{module: modules of the same package it imports}``, imports inside functions
    included."""
    known = modules(root)
    graph = {}
    for name, path in known.items():
        package = name if path.endswith('__init__.py') else name.rpartition('.')[0]
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                source = node.module or ''
                if node.level:
                    anchor = package.split('.')[:len(package.split('.')) - node.level + 1]
                    source = '.'.join(anchor + ([source] if source else []))
                for alias in node.names:
                    sub = f'{source}.{alias.name}'
                    targets.add(sub if sub in known else source)
        # `import a.b.c` names a.b.c; keep the longest known prefix
        resolved = set()
        for target in targets:
            while target and target not in known:
                target = target.rpartition('.')[0]
            if target and target != name:
                resolved.add(target)
        graph[name] = resolved
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def room(module: str) -> str:
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else parts[0]


def room_graph(graph: Dict[str, Set[str]]) -> Dict[str, Set[str]]:
    rooms = {}
    for module, targets in graph.items():
        rooms.setdefault(room(module), set()).update(
            room(t) for t in targets if room(t) != room(module))
    return rooms


def arrows(graph, source_room: str) -> List[str]:
    """Every ``module -> module`` arrow leaving ``source_room``."""
    return sorted(f'{m} -> {t}' for m, targets in graph.items() if room(m) == source_room
                  for t in targets if room(t) != source_room)


GRAPH = import_graph(PACKAGE)


def test_no_module_imports_a_module_that_imports_it_back():
    assert cycles(GRAPH) == []


def test_no_room_imports_a_room_that_imports_it_back():
    assert cycles(room_graph(GRAPH)) == []


def test_layers_is_a_leaf_that_imports_only_the_foundation():
    outside = [arrow for arrow in arrows(GRAPH, 'layers')
               if room(arrow.split(' -> ')[1]) not in FOUNDATION]
    assert outside == []
    assert all(arrows(GRAPH, name) == [] for name in FOUNDATION)


def test_models_imports_no_method_only_the_strategy_contract():
    methods = sorted(f'{m} -> {t}' for m, targets in GRAPH.items() if room(m) == 'models'
                     for t in targets if room(t) == 'adapters' and t != CONTRACT)
    assert methods == []


def test_the_graph_sees_imports_inside_functions_and_relative_imports():
    # cli imports its commands' modules lazily (start-up speed), from inside functions
    assert 'adapterkit.engine.compare' in GRAPH['adapterkit.cli']
    # `from . import native` in layers/dropout.py is the module, not the package
    assert 'adapterkit.layers.native' in GRAPH['adapterkit.layers.dropout']


def test_a_cycle_through_an_import_inside_a_function_is_found(tmp_path):
    package = tmp_path / 'pkg'
    (package / 'sub').mkdir(parents=True)
    (package / '__init__.py').write_text('')
    (package / 'sub' / '__init__.py').write_text('from .a import f\n')
    (package / 'sub' / 'a.py').write_text('def f():\n    from ..b import g\n    return g\n')
    (package / 'b.py').write_text('from .sub import a\n\ndef g():\n    pass\n')
    graph = import_graph(str(package))
    assert graph['pkg.b'] == {'pkg.sub.a'} and graph['pkg.sub.a'] == {'pkg.b'}
    assert cycles(graph) == [['pkg.b', 'pkg.sub.a']]
    assert cycles(room_graph(graph)) == [['b', 'sub']]
