import torch

from bitlatent.text.losses import code_losses


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
    # straight-through: the forward value is exactly the one of hard codes, and gradients flow
    hard = torch.where(codes >= 0, 1.0, -1.0) * 50
    assert torch.allclose(code_losses(codes, codes, ids, 0.1), code_losses(hard, hard, ids, 0.1))
    t = codes.clone().requires_grad_()
    code_losses(t, codes, ids, 0.1).backward()
    assert t.grad.abs().sum() > 0
