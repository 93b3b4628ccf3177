"""Deploying a finished run's techniques (harness/deploy/) on the tiny model: the loader answers as the
run did; export, serve and the load test build on it."""

from __future__ import annotations

import pytest
from deploy_run import run_predictions

from harness.deploy import loader

TECHNIQUES = ("few-shot", "rag", "lora", "full")


@pytest.fixture(scope="module")
def served(deploy_run_dir):
    return {name: loader.load(deploy_run_dir, name) for name in TECHNIQUES}


def held_out(technique) -> list:
    return technique.ctx.heldout_examples()


@pytest.mark.parametrize("name", TECHNIQUES)
def test_the_loaded_technique_answers_the_held_out_split_as_the_run_did(served, deploy_run_dir, name):
    technique = served[name]
    answers = technique.answer([technique.request(e) for e in held_out(technique)]).answers
    assert answers == [p["predicted"] for p in run_predictions(deploy_run_dir, name)]


def test_the_technique_adds_its_shots_and_passages_to_what_a_client_sends(served):
    example = held_out(served["rag"])[0]
    request = served["few-shot"].request(example)
    assert [m["role"] for m in request] == ["system", "user"]  # the client sends the task's system message and question
    roles = [m["role"] for m in served["few-shot"].conversation(request)]
    assert roles == ["system", *["user", "assistant"] * 2, "user"]
    system, question = served["rag"].conversation(request)
    assert system == request[0]
    assert "\n\n[1] (" in question["content"] and question["content"].endswith(example.input)


def test_a_technique_that_did_not_finish_or_is_not_in_the_run_is_refused(deploy_run_dir):
    from harness.yamlconfig import ConfigError

    with pytest.raises(ConfigError, match="no technique 'qlora'.*finished: few-shot, full, lora, rag"):
        loader.load(deploy_run_dir, "qlora")
