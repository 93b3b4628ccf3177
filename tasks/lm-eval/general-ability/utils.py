"""Loads items.jsonl from this folder as the task's test split (lm-eval's `custom_dataset` hook)."""

import json
from pathlib import Path

import datasets


def load_items(**kwargs) -> datasets.DatasetDict:
    lines = (Path(__file__).with_name("items.jsonl")).read_text().splitlines()
    return datasets.DatasetDict({"test": datasets.Dataset.from_list([json.loads(line) for line in lines])})
