"""A weir log plugin in Python: counts lines, and lines that contain a word.

Built with componentize-py against wit/v0.1.0, world log-plugin:

    componentize-py -d wit/v0.1.0 -w log-plugin componentize app -o words_py.wasm

Settings (JSON from the pipeline's `config`):
    word    the word to look for (required)
    prefix  metric name prefix (default "words")

Families: PREFIX_lines_total (every line but empty ones, which are
rejected) and PREFIX_matches_total{word} (lines containing the word).
"""
import json

from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import (
    Change_Add,
    Family,
    MetricKind,
    Output,
    Update,
)
from componentize_py_types import Err

# The plugin's state lives here: the host makes one instance per sandbox
# and calls it from one thread.
WORD = None

LINES = 0
MATCHES = 1


class Log(exports.Log):
    def init(self, config: str) -> list[Family]:
        global WORD
        try:
            settings = json.loads(config or "{}")
        except ValueError as e:
            raise Err(f"config is not JSON: {e}")
        word = settings.get("word")
        if not isinstance(word, str) or not word:
            raise Err("config: `word` is required: the word to count lines by")
        prefix = settings.get("prefix", "words")
        WORD = word
        host.log(host.Level.INFO, f"python plugin counting lines with {word!r}")
        return [
            Family(
                name=f"{prefix}_lines_total",
                kind=MetricKind.COUNTER,
                help="Lines seen, empty ones aside.",
                unit="",
                labels=[],
                buckets=[],
            ),
            Family(
                name=f"{prefix}_matches_total",
                kind=MetricKind.COUNTER,
                help="Lines that contain the word.",
                unit="",
                labels=["word"],
                buckets=[],
            ),
        ]

    def on_lines(self, batch: exports.log.Batch) -> Output:
        lines = 0
        matches = 0
        rejected = 0
        for line in batch.lines:
            if not line.strip():
                rejected += 1
                continue
            lines += 1
            if WORD in line:
                matches += 1
        updates = []
        if lines:
            updates.append(Update(family=LINES, labels=[], change=Change_Add(float(lines))))
        if matches:
            updates.append(
                Update(family=MATCHES, labels=[WORD], change=Change_Add(float(matches)))
            )
        return Output(updates=updates, rejected=rejected, declare=[])
