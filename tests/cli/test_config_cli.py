"""``--set`` on the command line: repeated flags accumulate (issue #20), for every subcommand that has it."""

from __future__ import annotations

import pytest
import yaml

from rnnkit.cli.main import build_parser, main


@pytest.mark.parametrize("command", [["train", "text-classification"], ["config", "show", "text-classification"]])
def test_repeated_set_flags_all_apply(command):
    args = build_parser().parse_args(
        [*command, "--set", "train.epochs=1", "--set", "model.hidden_size=8", "model.embed_dim=8"]
    )
    assert args.overrides == ["train.epochs=1", "model.hidden_size=8", "model.embed_dim=8"]
    assert build_parser().parse_args(command).overrides == []  # the default list is not shared between parses


def test_config_show_applies_every_set_group(capsys):
    argv = ["config", "show", "text-classification", "--set", "train.epochs=1", "--set", "model.hidden_size=8"]
    assert main([*argv, "--set", "train.lr=0.5"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["train"]["epochs"] == 1 and config["model"]["hidden_size"] == 8 and config["train"]["lr"] == 0.5


def test_a_later_set_wins_for_the_same_key(capsys):
    assert main(["config", "show", "text-classification", "--set", "train.epochs=1", "--set", "train.epochs=4"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["train"]["epochs"] == 4
