import torch

from bitlatent.text.losses import bit_losses, code_losses


def test_code_losses_reward_agreement_and_treat_same_image_as_positive():
    torch.manual_seed(0)
    codes = torch.randn(6, 32) * 3
    ids = torch.arange(6)
    aligned = code_losses(codes, codes, ids, 0.1)
    shuffled = code_losses(codes, codes[torch.tensor([1, 2, 3, 4, 5, 0])], ids, 0.1)
    assert aligned < shuffled
    # two captions of one image: the other caption is not a negative
    dup_ids = torch.tensor([0, 0, 1, 2, 3, 4])
    text = codes.clone()
    image = codes.clone()
    image[1] = image[0]  # rows 0 and 1 show the same image
    with_dup = code_losses(text, image, dup_ids, 0.1)
    as_negative = code_losses(text, image, ids, 0.1)
    assert with_dup < as_negative
    # straight-through: the forward value is exactly the one of hard codes
    hard = torch.where(codes >= 0, 1.0, -1.0) * 50
    assert torch.allclose(code_losses(codes, codes, ids, 0.1, straight_through=True), code_losses(hard, hard, ids, 0.1))
    for st in (False, True):  # gradients flow in both relaxations
        t = codes.clone().requires_grad_()
        code_losses(t, codes, ids, 0.1, straight_through=st).backward()
        assert t.grad.abs().sum() > 0


def test_bit_losses_train_the_winner_and_name_it():
    target = torch.tensor([[[[1, 0], [1, 1]]]], dtype=torch.uint8)  # (1, C=1, 2, 2)
    good = (target.float() * 2 - 1) * 4  # confident and right
    bad = -good  # confident and wrong
    every = torch.stack([bad, good], 1).requires_grad_(True)  # (1, H=2, 1, 2, 2)
    scores = torch.tensor([[3.0, 0.0]], requires_grad=True)  # names the wrong one
    bce, choice, top = bit_losses(every, scores, target, loser_weight=0.0)
    assert bce.item() < 0.05  # the winner's BCE: hypothesis 1's
    torch.testing.assert_close(top.detach(), bad)  # the prediction: the highest score's
    (bce + choice).backward()
    assert every.grad[0, 0].abs().sum() == 0  # a loser gets nothing with loser_weight 0
    assert scores.grad[0, 1] < 0 < scores.grad[0, 0]  # the scores move toward the winner
    single, zero, same = bit_losses(good[:, None], None, target, loser_weight=0.5)
    assert zero.item() == 0.0 and torch.equal(same, good)
    torch.testing.assert_close(single, torch.nn.functional.binary_cross_entropy_with_logits(good, target.float()))
