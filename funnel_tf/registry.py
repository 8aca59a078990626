"""One way to register things by name: `Registry` (name + aliases -> object), and the model-class registry.

Every named lookup in the package (model classes, tasks, GLUE and text-classification datasets, GLUE
metrics) is a `Registry`, in the spirit of Model Garden's `official/core/registry.py`: register a
name with its aliases once, look it up with `get`, and an unknown name is one `UserError` line that
lists the known names. Nothing here imports TensorFlow or another funnel_tf package, so `modeling/`,
`checkpoints/`, `text/` and `metrics/` can all use it without import circles.
"""

from __future__ import annotations

from typing import Callable, Dict, Generic, Iterator, Optional, Tuple, Type, TypeVar, Union

from funnel_tf.errors import UserError

T = TypeVar("T")
_MISSING = object()


class UnknownNameError(UserError, KeyError, ValueError):
    """A name that is not registered (a KeyError and a ValueError too, for callers that caught either)."""

    def __str__(self) -> str:  # KeyError would repr() the message; keep it a plain line
        return str(self.args[0]) if self.args else ""


def _identity(name: str) -> str:
    return name


class Registry(Generic[T]):
    """Canonical names (and their aliases) -> registered objects.

    Args:
        kind: what is registered, for the default error ("unknown {kind} 'x'; known: [...]").
        normalize: applied to every looked-up name before matching (e.g. `str.lower`); registered
            names are matched as given.
        error: the exception class `get` raises (a UserError subclass).
        message: `message(name, registry) -> str` replaces the default error text.

    Example:
        >>> colors = Registry("color", normalize=str.lower)
        >>> colors.register("red", "rouge", value=(255, 0, 0))
        (255, 0, 0)
        >>> colors.get("ROUGE"), colors.canonical("Rouge"), colors.names()
        ((255, 0, 0), 'red', ('red',))
    """

    def __init__(self, kind: str, *, normalize: Callable[[str], str] = _identity,
                 error: Type[Exception] = UnknownNameError,
                 message: Optional[Callable[[str, "Registry"], str]] = None):
        self.kind = kind
        self._normalize = normalize
        self._error = error
        self._message = message
        self._values: Dict[str, T] = {}       # canonical name -> object, in registration order
        self._lookup: Dict[str, str] = {}     # canonical name or alias -> canonical name
        self._aliases: Dict[str, str] = {}    # alias -> canonical name

    def register(self, name: str, *aliases: str, value=_MISSING):
        """Registers `value` under `name` and `aliases`; returns it. Without `value`, a decorator:
        `@registry.register("name", "alias")`. A name registered twice is a bug (ValueError)."""
        if value is _MISSING:
            return lambda obj: self.register(name, *aliases, value=obj)
        for key in (name,) + aliases:
            if key in self._lookup:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
        self._values[name] = value
        self._lookup[name] = name
        for alias in aliases:
            self._lookup[alias] = name
            self._aliases[alias] = name
        return value

    def canonical(self, name: str) -> str:
        """The canonical name of `name` (itself or an alias, after `normalize`); `error` if unknown."""
        key = self._normalize(name)
        try:
            return self._lookup[key]
        except (KeyError, TypeError):
            pass
        text = (self._message(name, self) if self._message else
                f"unknown {self.kind} {name!r}; known: {sorted(self._values)}")
        raise self._error(text) from None

    def get(self, name: str) -> T:
        """The object registered under `name` (or one of its aliases); `error` if unknown."""
        return self._values[self.canonical(name)]

    __getitem__ = get

    def names(self) -> Tuple[str, ...]:
        """Canonical names, in registration order (aliases not listed)."""
        return tuple(self._values)

    def aliases(self) -> Dict[str, str]:
        """Alias -> canonical name."""
        return dict(self._aliases)

    def aliases_of(self, name: str) -> Tuple[str, ...]:
        """The aliases registered for canonical `name`."""
        return tuple(a for a, n in self._aliases.items() if n == name)

    def items(self):
        """(canonical name, object) pairs in registration order."""
        return self._values.items()

    def values(self):
        return self._values.values()

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and self._normalize(name) in self._lookup

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._values)})"


# --------------------------------------------------------------------------------------------
# Model classes: our class names (= HF architecture names) and the short CLI aliases. The value
# is the class name; `checkpoints.registry.model_classes` imports the classes on first use, so
# listing names (e.g. `convert --help`) does not load TensorFlow. Importable from modeling/.
# --------------------------------------------------------------------------------------------
class UnknownModelClassError(UnknownNameError):
    """A model class that is neither one of ours nor an alias of one."""


def _unknown_model_class(name, registry: Registry) -> str:
    return (f"unknown model class {name!r}; use one of {sorted(registry.aliases())} or "
            f"{list(registry.names())}")


MODEL_CLASSES: Registry[str] = Registry("model class", error=UnknownModelClassError,
                                        message=_unknown_model_class)
for _name, *_aliases in (("FunnelBaseModel", "base"), ("FunnelModel", "full"),
                         ("FunnelForMaskedLM", "mlm"),
                         ("FunnelForPreTraining", "electra", "pretraining"),
                         ("FunnelForSequenceClassification", "seq_cls", "classification", "regression"),
                         ("FunnelForMultipleChoice", "multiple_choice"),
                         ("FunnelForTokenClassification", "token_cls"),
                         ("FunnelForQuestionAnswering", "qa")):
    MODEL_CLASSES.register(_name, *_aliases, value=_name)
del _name, _aliases


def resolve_class_name(name: Union[str, type]) -> str:
    """An alias ("mlm"), class name ("FunnelForMaskedLM") or the class itself -> the class name;
    UnknownModelClassError (a UserError and ValueError) if unknown."""
    if isinstance(name, type):
        name = name.__name__
    return MODEL_CLASSES.canonical(name)
