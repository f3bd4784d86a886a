"""The alignment node's caption rewording (``alignment.extra_wordings``)."""

import json

import pandas as pd
import pytest

from bitlatent.data.synthetic import SyntheticConfig, parse_caption, render_sample
from bitlatent.pipelines.alignment.nodes import with_extra_wordings


def synthetic_pairs(n: int = 12) -> pd.DataFrame:
    cfg = SyntheticConfig(image_size=32, max_objects=2)
    rows = []
    for i in range(n):
        _, caption, attributes = render_sample(i, cfg)
        rows.append({"sample_id": f"s{i:03d}", "image_id": f"syn-{i}", "caption": caption,
                     "split": ("pretrain", "adapt", "test")[i % 3], "attributes": json.dumps(attributes)})
    return pd.DataFrame(rows)


def test_training_captions_gain_rewordings_of_the_same_image():
    pairs = synthetic_pairs()
    out = with_extra_wordings(pairs, ["pretrain", "adapt"], 2)
    assert len(out) == len(pairs) + 2 * 8 and list(out.columns) == list(pairs.columns)
    pd.testing.assert_frame_equal(out.iloc[: len(pairs)], pairs)  # the originals, untouched
    added = out.iloc[len(pairs):]
    assert set(added["split"]) == {"pretrain", "adapt"}, "val / test captions are never reworded"
    assert added["sample_id"].is_unique and not set(added["sample_id"]) & set(pairs["sample_id"])
    for _, row in added.iterrows():
        original = pairs.set_index("sample_id").loc[row["sample_id"].rsplit("-w", 1)[0]]
        assert row["image_id"] == original["image_id"] and row["split"] == original["split"]
        assert parse_caption(row["caption"]) == json.loads(original["attributes"])
    assert (added["caption"].to_numpy() != pairs.set_index("sample_id").loc[
        added["sample_id"].str.rsplit("-w", n=1).str[0], "caption"].to_numpy()).mean() > 0.8
    pd.testing.assert_frame_equal(with_extra_wordings(pairs, ["pretrain", "adapt"], 2), out)  # deterministic
    assert with_extra_wordings(pairs, ["pretrain"], 0) is pairs


def test_rewording_needs_the_synthetic_sources_attributes():
    pairs = synthetic_pairs().assign(attributes=None)
    with pytest.raises(ValueError, match="extra_wordings needs the synthetic source"):
        with_extra_wordings(pairs, ["pretrain"], 1)
