import torch

from im2hands.data.keypoint_noise import KeypointNoise
from im2hands.data.transforms import NoisyKeypoints


def _batch(B=3):
    g = torch.Generator().manual_seed(0)
    kp = 0.04 * torch.randn(B, 2, 21, 3, generator=g)
    kp[..., 2] += 0.5
    return {"keypoints": kp, "index": torch.arange(B)}


def test_predictions_replace_the_noise_where_valid_only():
    t = NoisyKeypoints(KeypointNoise(jitter_mm=5.0), val_seed=3)
    batch = _batch()
    pred = batch["keypoints"] + 0.01
    valid = torch.tensor([[True, False], [False, False], [True, True]])
    for training in (True, False):
        out = t({**batch, "keypoints_pred": pred, "keypoints_pred_valid": valid}, training=training)["keypoints_noisy"]
        assert torch.equal(out[valid], pred[valid])
        noisy = out[~valid]
        assert not torch.equal(noisy, pred[~valid]) and not torch.equal(noisy, batch["keypoints"][~valid])
    # validation: the hands without a prediction get the same seeded noise as without predictions
    plain = t(batch, training=False)["keypoints_noisy"]
    mixed = t({**batch, "keypoints_pred": pred, "keypoints_pred_valid": valid}, training=False)["keypoints_noisy"]
    assert torch.equal(plain[~valid], mixed[~valid])


def test_a_batch_with_noisy_keypoints_is_left_alone():
    t = NoisyKeypoints(KeypointNoise(jitter_mm=5.0))
    batch = {**_batch(), "keypoints_noisy": torch.ones(3, 2, 21, 3)}
    assert t(batch, training=True)["keypoints_noisy"] is batch["keypoints_noisy"]
