import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import litgpt.loss as loss_module
from litgpt.config import Config
from litgpt.loss import linear_cross_entropy
from litgpt.lora import add_lora
from litgpt.model import GPT


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of a few rows, so that every test runs several of them."""
    monkeypatch.setattr(loss_module, "BLOCK_BYTES", 4 * 50 * 8)  # 8 rows of a 50-token vocabulary


def reference(x, head, targets, softcap=None, ignore_index=-100):
    logits = head(x).float()
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, targets, ignore_index=ignore_index)


def grads(*tensors):
    return [t.grad.clone() for t in tensors]


@pytest.mark.parametrize("softcap", [None, 3.0])
@pytest.mark.parametrize("bias", [False, True])
def test_fused_loss_and_gradients_equal_the_plain_head_and_cross_entropy(small_blocks, softcap, bias):
    torch.manual_seed(0)
    head = nn.Linear(16, 50, bias=bias)
    x = torch.randn(37, 16, requires_grad=True)
    targets = torch.randint(0, 50, (37,))
    targets[::5] = -100
    ours = linear_cross_entropy(x, head, targets, softcap=softcap)
    ours.backward()
    params = [x, head.weight] + ([head.bias] if bias else [])
    ours_grads = grads(*params)
    for p in params:
        p.grad = None
    expected = reference(x, head, targets, softcap)
    expected.backward()
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    for a, b in zip(ours_grads, grads(*params)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_frozen_head_gets_no_gradient_and_no_grad_mode_keeps_nothing(small_blocks):
    head = nn.Linear(16, 50).requires_grad_(False)
    x = torch.randn(20, 16, requires_grad=True)
    targets = torch.randint(0, 50, (20,))
    linear_cross_entropy(x, head, targets).backward()
    assert head.weight.grad is None and x.grad is not None
    with torch.no_grad():
        value = linear_cross_entropy(x, head, targets)
    assert not value.requires_grad
    torch.testing.assert_close(value, reference(x, head, targets).detach())


def test_all_targets_ignored_gives_zero(small_blocks):
    head = nn.Linear(16, 50)
    x = torch.randn(9, 16, requires_grad=True)
    value = linear_cross_entropy(x, head, torch.full((9,), -1), ignore_index=-1)
    value.backward()
    assert value.item() == 0.0 and x.grad.abs().max().item() == 0.0


class ScaledHead(nn.Module):
    """A head that is not a plain linear layer and offers no linear parts."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 50)
        self.out_features = 50

    def forward(self, x):
        return self.linear(x) * 0.5


def lora_head():
    config = Config(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=50, padded_vocab_size=50)
    head = add_lora(GPT(config), r=4, alpha=8, dropout=0.0, head=True).lm_head
    nn.init.normal_(head.lora_B)  # zero at first, which would hide mistakes in A's gradient
    head.linear.weight.requires_grad = False
    return head


@pytest.mark.parametrize("make_head", [lora_head, ScaledHead], ids=["lora-fused", "other-recomputed"])
def test_lora_and_other_heads_give_the_plain_loss_and_gradients(small_blocks, make_head):
    torch.manual_seed(0)
    head = make_head()
    assert type(head) is not nn.Linear
    x = torch.randn(30, 16, requires_grad=True)
    targets = torch.randint(0, 50, (30,))
    params = [x] + [p for p in head.parameters() if p.requires_grad]
    ours = linear_cross_entropy(x, head, targets)
    ours.backward()
    ours_grads = grads(*params)
    for p in params:
        p.grad = None
    expected = reference(x, head, targets)
    expected.backward()
    torch.testing.assert_close(ours, expected)
    for a, b in zip(ours_grads, grads(*params)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_model_forward_with_targets_equals_cross_entropy_of_its_logits():
    torch.manual_seed(0)
    config = Config(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=64, padded_vocab_size=64, final_logit_softcapping=5.0)
    model = GPT(config)
    idx = torch.randint(0, 64, (2, 16))
    targets = torch.randint(0, 64, (2, 16))
    targets[1, :4] = -100
    logits = model(idx)
    expected = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    torch.testing.assert_close(model(idx, targets=targets), expected)


def test_under_cpu_autocast_the_matmuls_run_in_bf16(small_blocks):
    torch.manual_seed(0)
    head = nn.Linear(16, 50)
    x = torch.randn(24, 16, requires_grad=True)
    targets = torch.randint(0, 50, (24,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = linear_cross_entropy(x, head, targets)
        expected = reference(x, head, targets)  # the head's matmul in bf16, the softmax in fp32
    ours.backward()
    assert x.grad.dtype == torch.float32 and head.weight.grad.dtype == torch.float32
    torch.testing.assert_close(ours, expected, rtol=1e-3, atol=1e-3)


def test_compiled_model_computes_the_loss_in_a_graph_of_its_own(small_blocks):
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    config = Config(n_layer=2, n_embd=32, n_head=4, n_query_groups=2, block_size=16, vocab_size=50, padding_multiple=50,
                    mlp_class_name="LLaMAMLP", intermediate_size=64, norm_class_name="RMSNorm", parallel_residual=False)
    model = GPT(config)
    idx = torch.randint(0, 50, (2, 17))
    torch._dynamo.reset()
    counters.clear()
    loss = torch.compile(model, backend="aot_eager")(idx[:, :-1], targets=idx[:, 1:])
    loss.backward()
    compiled_grads = [p.grad.clone() for p in model.parameters()]
    assert counters["stats"]["unique_graphs"] == 2  # the layers, then the loss
    model.zero_grad()
    expected = model(idx[:, :-1], targets=idx[:, 1:])
    expected.backward()
    torch.testing.assert_close(loss, expected)
    for got, want in zip(compiled_grads, [p.grad for p in model.parameters()]):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_traced_by_dynamo_the_loss_gives_the_eager_gradients(small_blocks, backend):
    # torch 2.11's dynamo turned every gradient of this loss into zeros while its value stayed right, so no compiled
    # run learned (fixed: the returned sum is no longer added to in place); the bug is in tracing, the backend "eager"
    # shows it too
    torch.manual_seed(0)
    head = nn.Linear(16, 50)
    x = torch.randn(37, 16, requires_grad=True)
    targets = torch.randint(0, 50, (37,))
    expected = linear_cross_entropy(x * 1.0, head, targets)
    expected.backward()
    want = grads(x, head.weight, head.bias)
    for t in (x, head.weight, head.bias):
        t.grad = None
    got = torch.compile(lambda x: linear_cross_entropy(x * 1.0, head, targets), backend=backend)(x)
    got.backward()
    torch.testing.assert_close(got, expected)
    for g, w in zip(grads(x, head.weight, head.bias), want):
        assert g.abs().max() > 0
        torch.testing.assert_close(g, w)
