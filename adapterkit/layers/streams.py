"""Task streams: what travels through a backbone between its blocks, and the rules for it.

A backbone runs its input through *units* in order: the patch embedding (``patch_embed``),
then every stage's merge (``layers.{i}.downsample``, from stage 1 on, timm's layout) and
blocks (``layers.{i}.blocks.{j}``). Between units travels a ``Streams`` state:

- ``shared``, (B, H, W, C): the stream every task reads, until the tasks part ways;
- ``tasks``, (T*B, H, W, C): one stream per task, stacked task-major along the batch (rows
  [t*B, (t+1)*B) are task t's), so that every op runs once for all tasks;
- ``tokens``, ``{name: (rows, n, C)}``: extra tokens that ride with the *main* stream (the
  shared one while there is one, else the task streams), one row per row of that stream:
  VPT's prompts, TADFormer's task prompts.

A strategy sets a ``StreamPolicy`` on the backbone (``backbone.streams``) that says where the
task streams start and what crosses a stage:

- ``tasks``: the tasks of the streams, in stacking order; None: one shared stream.
- ``start``: the unit before which the main stream is stacked T times into the task
  streams (tokens too); None: the task streams are born inside blocks (MTLoRA's last
  blocks answer the pair ``(shared, tasks)``).
- ``through_stages``: the task streams cross into the next stage (per-task adaptation);
  False: each stage's merge maps them for the taps only, and the next stage continues from
  the shared stream (MTLoRA).
- ``token_starts``: ``{name: rule}``, ``rule(backbone, main) -> (rows, n, C)``: tokens that
  join the state after the patch embedding (and after the stacking, where it starts there).
- ``token_merges``: ``{name: rule}``, ``rule(merge, tokens) -> tokens or None``: how each
  stage's merge maps a token (None drops it); every token has one.

Rules are plain functions that reach modules through their arguments (a model is deep-copied,
and a copied function would still hold the original's modules).

Blocks: a plain block takes the main stream's tensor and answers a tensor (or, MTLoRA's
last blocks, the pair ``(shared, tasks)``); a block whose class sets ``takes_streams = True``
takes the whole ``Streams`` state and answers one, e.g. to read or rewrite tokens.
"""
from typing import Callable, Mapping, NamedTuple, Optional, Sequence, Tuple

import torch

from ..errors import StrategyError


class Streams(NamedTuple):
    """The state between two units of a backbone (see the module docstring)."""

    shared: Optional[torch.Tensor] = None
    tasks: Optional[torch.Tensor] = None
    tokens: Mapping[str, torch.Tensor] = {}  # never changed in place: states are values

    @property
    def main(self) -> torch.Tensor:
        """The stream that continues into the next unit: shared while there is one."""
        return self.tasks if self.shared is None else self.shared

    def with_main(self, x: torch.Tensor) -> 'Streams':
        """This state with the main stream replaced by ``x``."""
        return self._replace(tasks=x) if self.shared is None else self._replace(shared=x)

    def with_tokens(self, **tokens: torch.Tensor) -> 'Streams':
        """This state with tokens added or replaced."""
        return self._replace(tokens={**self.tokens, **tokens})


class StreamPolicy(NamedTuple):
    """The rules a strategy sets for the streams of a backbone (see the module docstring).
    Strategies extend it with ``with_tasks`` and ``with_token``, so that they compose (a
    per-task strategy around one that carries tokens)."""

    tasks: Optional[Tuple[str, ...]] = None
    start: Optional[str] = None
    through_stages: bool = False
    token_starts: Mapping[str, Callable] = {}  # never changed in place
    token_merges: Mapping[str, Callable] = {}

    def with_tasks(self, tasks: Sequence[str], start: Optional[str] = None,
                   through_stages: bool = False, owner: str = 'a strategy') -> 'StreamPolicy':
        """This policy with task streams for ``tasks``; ``owner`` names who asks."""
        if self.tasks is not None:
            raise StrategyError(f'{owner}: the backbone has task streams already (for '
                                f'{list(self.tasks)}); one strategy of a model may give the '
                                f'tasks streams of their own', strategy=owner)
        if start is not None and not through_stages:
            raise StrategyError(f'{owner}: task streams that start by stacking leave no shared '
                                f'stream to continue from: they run through_stages',
                                strategy=owner)
        return self._replace(tasks=tuple(tasks), start=start, through_stages=through_stages)

    def with_token(self, name: str, merge: Callable, start: Optional[Callable] = None,
                   owner: str = 'a strategy') -> 'StreamPolicy':
        """This policy with the token ``name``: its merge rule and its start rule (None: a
        block adds it); see the module docstring."""
        if name in self.token_merges:
            raise StrategyError(f'{owner}: the streams carry a token {name!r} already',
                                strategy=owner)
        starts = {**self.token_starts, **({name: start} if start else {})}
        return self._replace(token_starts=starts,
                             token_merges={**self.token_merges, name: merge})

    @property
    def count(self) -> int:
        """The number of task streams (0 without them)."""
        return len(self.tasks) if self.tasks else 0


def stack(state: Streams, count: int) -> Streams:
    """The task streams start: the main stream and its tokens repeated ``count`` times,
    task-major, and no shared stream any more."""
    def repeat(x):
        return x.repeat(count, *([1] * (x.dim() - 1)))
    return Streams(tasks=repeat(state.main),
                   tokens={name: repeat(t) for name, t in state.tokens.items()})
