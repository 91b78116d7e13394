"""The registry: decorator entries, duplicates, suggestions, entry-point plugins listed without import."""

from __future__ import annotations

import sys

import pytest

from benchmark.registry import Registry, RegistryError


def test_register_get_and_names():
    reg = Registry("method", "mtlbench.tests.none")

    @reg.register("alpha")
    class Alpha:
        """Alpha does a thing."""

    assert reg.get("alpha") is Alpha and Alpha.name == "alpha"
    assert reg.names() == ["alpha"] and "alpha" in reg
    assert reg.entries()[0].description == "Alpha does a thing."


def test_duplicate_name_is_an_error_naming_both():
    reg = Registry("method", "mtlbench.tests.none")

    @reg.register("alpha")
    class Alpha:
        pass

    with pytest.raises(RegistryError, match="duplicate method name 'alpha'.*Alpha"):
        @reg.register("alpha")
        class Other:
            pass


def test_unknown_name_suggests_close_matches_and_lists_all():
    reg = Registry("method", "mtlbench.tests.none")
    for name in ("no_coupling", "single_task", "gradnorm"):
        reg.register(name)(type(name, (), {}))
    with pytest.raises(RegistryError) as err:
        reg.get("no_couplin")
    message = str(err.value)
    assert "Did you mean 'no_coupling'" in message
    assert "Available: gradnorm, no_coupling, single_task" in message


def test_entry_point_plugins_are_listed_without_import_and_loaded_on_lookup():
    sys.modules.pop("mtlbench_example_plugin", None)
    reg = Registry("method", "mtlbench.methods")
    assert "fixed_weights" in reg.names()
    entry = next(e for e in reg.entries() if e.name == "fixed_weights")  # what 'ls methods' shows
    assert "mtlbench_example_plugin" not in sys.modules, "listing must not import the plugin"
    assert entry.source == "plugin:mtlbench-example-plugin" and "loaded on first use" in entry.description
    cls = reg.get("fixed_weights")
    assert cls.__name__ == "FixedWeights" and cls.name == "fixed_weights"
    entry = next(e for e in reg.entries() if e.name == "fixed_weights")
    assert entry.source == "plugin:mtlbench-example-plugin" and entry.description.startswith("Multi-task hard sharing")


def test_methods_and_dbs_registries_have_the_builtins():
    from datasets import DBS
    from methods import METHODS

    assert {"no_coupling", "single_task"} <= set(METHODS.names())
    assert "synthetic" in DBS.names()
    with pytest.raises(RegistryError, match="Did you mean 'synthetic'"):
        DBS.get("synthetc")


#: Every built-in method under its registry name, and the module that defines it (a plugin's methods come on
#: top of these; ``ls methods`` lists both).
BUILTIN_METHODS = {name: f"methods.{name}" for name in (
    "adashare", "adashare_search", "aligned_mtl", "cagrad", "dm_only", "dmsca", "dualproj", "dwa", "famo",
    "gradnorm", "imtl_g", "mgda", "mgda_ub", "nash_mtl", "no_coupling", "pcgrad", "rlw", "sca_only",
    "single_task", "student_teacher", "task_routing", "upgrad", "uw")}


@pytest.mark.parametrize("name", sorted(BUILTIN_METHODS))
def test_every_builtin_method_is_registered_under_its_name(name):
    from methods import METHODS

    assert METHODS.get(name).__module__ == BUILTIN_METHODS[name]
