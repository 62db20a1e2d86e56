"""Every recipe YAML shipped in ``rnnkit/configs`` validates, is listed, says where it comes from, and the
issue-5 recipes hold the settings their sources give."""

from __future__ import annotations

import pytest
import yaml

from rnnkit.cli.main import main
from rnnkit.tasks.runner import recipes, resolve_config

ISSUE_5 = ("ptb-lm", "ptb-lm-regularized", "char-lm", "pos", "g2p")


def test_the_issue_5_recipes_are_shipped():
    assert set(ISSUE_5) | {"sentiment"} <= set(recipes())


@pytest.mark.parametrize("name", sorted(recipes()))
def test_every_recipe_validates_and_is_listed(name, capsys):
    assert main(["config", "show", name]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["task"] == yaml.safe_load(recipes()[name].read_text())["task"]
    assert main(["config", "list"]) == 0
    assert any(line.split()[0] == name for line in capsys.readouterr().out.splitlines() if line.startswith("  "))
    text = recipes()[name].read_text(encoding="utf-8")
    assert text.startswith("#"), f"{name}: the recipe starts with a comment on its source"


def test_recipe_settings():
    ptb = resolve_config("ptb-lm")[1]
    m, t = ptb.model, ptb.train
    assert (m.num_layers, m.hidden_size, m.embed_dim, m.dropout, m.init_range) == (2, 200, 200, 0.0, 0.1)
    assert (ptb.data.dataset, ptb.data.bptt, t.batch_size, t.optimizer, t.epochs) == ("ptb", 20, 20, "sgd", 13)
    # lr 1 / clip 5 on Zaremba's loss summed over 20 steps = lr 20 / clip 0.25 on the mean token loss
    assert (t.lr, t.grad_clip) == (1.0 * ptb.data.bptt, 5.0 / ptb.data.bptt)
    assert (t.scheduler, t.step_start, t.step_size, t.gamma) == ("step", 4, 1, 0.5)
    reg = resolve_config("ptb-lm-regularized")[1].model
    assert reg.tie_weights and reg.variational and reg.weight_drop > 0 and reg.embed_dropout > 0
    char = resolve_config("char-lm")[1]
    assert (char.data.dataset, char.data.level) == ("shakespeare", "char")
    pos = resolve_config("pos")[1]
    assert (pos.data.dataset, pos.data.tagset) == ("brown-pos", "full")
    assert pos.model.bidirectional and not pos.model.crf
    g2p = resolve_config("g2p")[1]
    assert (g2p.data.dataset, g2p.data.level, g2p.data.target_level) == ("cmudict", "char", "word")
    assert g2p.model.bidirectional and g2p.model.attention != "none" and g2p.decode.beam_size == 5
    assert g2p.train.monitor == "wer" and g2p.train.monitor_mode == "min"
