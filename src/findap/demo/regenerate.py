"""Rewrite data/exercises.jsonl from the generator: `python -m findap.demo.regenerate`.

The shipped file is generated (a test checks it matches), so eval task YAMLs and curation can read it by path
like every other demo file.
"""
from __future__ import annotations

from pathlib import Path

from findap.demo.catalog import EXERCISES_SEED, EXERCISES_SHIPPED
from findap.demo.exercises import generate_exercises
from findap.io import write_jsonl


def main() -> Path:
    path = Path(__file__).parent / "data" / "exercises.jsonl"
    write_jsonl(path, generate_exercises(EXERCISES_SHIPPED, EXERCISES_SEED))
    return path


if __name__ == "__main__":
    print(f"wrote {main()}")
