"""The fine-tuning study's summary and table (lidarcl/evaluation/finetune_study.py) on
hand-written runs: means, sample spreads and gains per seed computed by hand."""
import pytest

from lidarcl.evaluation.finetune_study import format_finetune_table, summarize_finetune


def runs():
    values = {("random", 1): (10.0, 12.0, 11.0), ("prc", 1): (15.0, 18.0, 15.0),
              ("slidr", 1): (11.0, 12.5, 11.5), ("random", 10): (20.0, 22.0, 21.0),
              ("prc", 10): (24.0, 23.0, 25.0)}
    return {"runs": [{"row": row, "percent": p, "seed": s, "miou": v}
                     for (row, p), per_seed in values.items()
                     for s, v in enumerate(per_seed)], "voting": []}


def test_summary_by_hand():
    summary = {(s["row"], s["percent"]): s for s in summarize_finetune(runs())}
    prc = summary[("prc", 1)]
    assert prc["miou"][0] == pytest.approx(16.0)
    assert prc["miou"][1] == pytest.approx(3 ** 0.5)  # sample std of 15, 18, 15
    # gains per seed: 5, 6, 4 -> mean 5, std 1
    assert prc["gain"] == pytest.approx((5.0, 1.0))
    assert summary[("random", 1)]["gain"] is None
    # at 10 %: gains 4, 1, 4 -> mean 3, sample std sqrt(3)
    assert summary[("prc", 10)]["gain"] == pytest.approx((3.0, 3 ** 0.5))


def test_table_marks_rows_above_beyond_the_spread():
    table = format_finetune_table(runs()).splitlines()
    assert table[0].startswith("| row | 1% mIoU | 1% gain over random |")
    cells = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in table[2:]}
    # 1 %: prc - slidr per seed 4, 5.5, 3.5 (mean 4.33 > std 1.04); slidr - random 1, 0.5,
    # 0.5 (mean 0.67 > std 0.29): both separated
    assert cells["prc"][3] == "random, slidr"
    assert cells["slidr"][3] == "random"
    assert cells["slidr"][4:] == ["-", "-", "- |"]  # slidr has no 10 % runs
    assert cells["prc"][1] == "16.00 +- 1.73" and cells["prc"][2] == "+5.00 +- 1.00"


def test_scored_checkpoints_keep_the_model_weights_only(tmp_path):
    import torch

    from lidarcl.engine.checkpoint import read_state_dict
    from lidarcl.evaluation.finetune_study import _keep_weights_only

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    path = tmp_path / "iter_30.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {"iter": 30, "seed": 1},
                "optimizer": optimizer.state_dict(),
                "message_hub": {"log_scalars": {}}}, path)
    _keep_weights_only(str(path))
    kept = torch.load(path, map_location="cpu", weights_only=True)
    assert set(kept) == {"state_dict", "meta"}
    assert kept["meta"] == {"iter": 30, "seed": 1}
    state, _ = read_state_dict(path)
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value)
    assert [p.name for p in tmp_path.iterdir()] == ["iter_30.pth"]  # no temporary left


def test_the_study_scales_slidrs_rate_linearly_with_the_batch():
    from lidarcl.evaluation.finetune_study import scaled_lr

    assert scaled_lr(16) == pytest.approx(0.02)      # SLidR's rate at its batch of 16
    assert scaled_lr(2) == pytest.approx(0.0025)
    assert scaled_lr(4) == pytest.approx(0.005)
