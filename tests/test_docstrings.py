"""Every top-level export of funnel_tf is documented the keras-hub way: a summary, `Args:` where
it takes arguments, and an `Example:` whose doctests run here (tiny configs, no network, no
shared data), so the documentation cannot drift from the code."""

import doctest
import inspect

import pytest

import funnel_tf

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
PUBLIC = [name for name in funnel_tf.__all__ if name != "__version__"]


def _takes_arguments(obj) -> bool:
    """Does calling `obj` (a function, or a class's constructor) take named arguments?"""
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover  (builtins without a signature)
        return False
    return any(p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)


@pytest.mark.parametrize("name", PUBLIC)
def test_public_api_has_args_and_a_runnable_example(name):
    obj = getattr(funnel_tf, name)
    doc = inspect.getdoc(obj) or ""
    assert doc.strip(), f"{name} has no docstring"
    if _takes_arguments(obj):
        assert "\nArgs:\n" in f"\n{doc}", f"{name}'s docstring has no 'Args:' section"
    if inspect.isfunction(obj):
        assert "\nReturns:\n" in f"\n{doc}", f"{name}'s docstring has no 'Returns:' section"
    assert "\nExample:\n" in f"\n{doc}" and ">>> " in doc.split("Example:", 1)[1], \
        f"{name}'s docstring has no 'Example:' section with a doctest"

    tests = doctest.DocTestFinder().find(obj, f"funnel_tf.{name}", module=inspect.getmodule(obj),
                                         globs={})
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = []
    for test in tests:
        runner.run(test, out=report.append)
    results = runner.summarize(verbose=False)
    assert results.attempted > 0
    assert results.failed == 0, "".join(report)
