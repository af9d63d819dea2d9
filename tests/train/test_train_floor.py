"""benchmarks/train_floor.py on the CPU: `--variant` parsing and the one line per variant that cannot run here, the
float8 casts' traffic row from the layers' shapes, the tables (one variant as before; several side by side) from
profiles given as numbers, and the kernel names of float8 GEMMs counted as matmuls. The profiles are the GPU's."""

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from litgpt.config import Config

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import train_floor  # noqa: E402
from common import kernel_kind  # noqa: E402

NO_GPU = "the step is profiled on a CUDA GPU and none is available here"


def floor_script(*flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_floor.py"), *flags], capture_output=True,
                          text=True, timeout=120, env=env)


def test_each_variant_that_needs_cuda_is_one_line_and_unknown_ones_are_refused():
    result = floor_script("--variant", "plain", "fp8+fused", "plain", "fused", "fp8", "--fp8", "tensorwise")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines() == [f"{v}: skipped, {NO_GPU}" for v in ("plain", "fp8+fused", "fused", "fp8")]
    assert result.stderr.strip() == "train_floor: no variant could be measured here"
    assert floor_script().stdout.splitlines() == [f"plain: skipped, {NO_GPU}"]  # the default is plain alone

    result = floor_script("--variant", "fp16")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == ("train_floor.py: error: argument --variant: invalid choice: 'fp16' "
                                              "(choose from 'plain', 'fused', 'fp8', 'fp8+fused')")


def by_hand(config: Config):
    """The (in, out) features of the block linears that train in float8: q/k/v, attention's proj, fc_1, fc_2, MLP proj."""
    d, qkv = config.n_embd, (config.n_head + 2 * config.n_query_groups) * config.head_size
    f = config.intermediate_size
    return [(d, qkv), (config.n_head * config.head_size, d), (d, f), (d, f), (f, d)] * config.n_layer


def test_the_float8_casts_are_a_row_counted_from_the_layers_shapes():
    config, tokens, n_cast = Config.from_name("tiny-llama-1.1b"), 16 * 2048, 10**9
    layers = by_hand(config)
    plain = train_floor.traffic(config, tokens, n_cast, "bf16-mixed")
    fp8 = train_floor.traffic(config, tokens, n_cast, "bf16-mixed", layers, "rowwise")
    row, autocast = "float8 casts (inputs, weights, output gradients and their scales)", "autocast casts (weights to bf16, gradients to fp32)"
    assert row not in plain and list(fp8) == list(plain) + [row]
    # rowwise: the output's casts (input, weight) and the output gradient's for the input gradient read their
    # source once; the other three twice; a byte per element out; a 4-byte scale per row
    expected = 0
    for k, n in layers:
        expected += tokens * k * (2 + 1) + 4 * tokens + k * n * (4 + 1) + 4 * n + tokens * n * (2 + 1) + 4 * tokens  # single pass
        expected += k * n * (2 * 4 + 1) + 4 * k + tokens * n * (2 * 2 + 1) + 4 * n + tokens * k * (2 * 2 + 1) + 4 * k  # two passes
    assert fp8[row] == expected
    weights = sum(k * n for k, n in layers)
    assert plain[autocast] - fp8[autocast] == (4 + 2) * weights  # only the gradient comes back through autocast
    tensorwise = train_floor.traffic(config, tokens, n_cast, "bf16-true", layers, "tensorwise")
    # every cast reads its source twice (an amax over the whole tensor first); one scale each; bf16 weights
    assert tensorwise[row] == sum(2 * (tokens * k * 5 + k * n * 5 + tokens * n * 5) + 6 * 4 for k, n in layers)
    if importlib.util.find_spec("torchao") is not None:  # the layers `to_float8` converts, on the meta device
        assert sorted(train_floor.float8_layers(config, "rowwise")) == sorted(layers)


def profiled(step_ms: float, matmul: float, **more) -> dict:
    return dict(step_ms=step_ms, fused=more.pop("fused", "none"),
                profile_ms={"matmul": matmul, "attention": 60.0, "optimizer": 8.0, "triton (fused by inductor)": 90.0, **more})


def test_one_variant_prints_the_tables_as_before_and_several_side_by_side(capsys):
    config, tokens = Config.from_name("tiny-llama-1.1b"), 16 * 2048
    args = argparse.Namespace(model="tiny-llama-1.1b", micro_batch=16, seq=2048, precision="bf16-mixed", target=94_000.0, fp8="rowwise")
    plain = train_floor.floor(config, tokens, 10**9, [], args, 3.8, profiled(400.0, 250.0), {})
    train_floor.report([("plain", profiled(400.0, 250.0)) + plain], tokens)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "part | ms | gb" and lines[1] == "matmul (in the step) | 250.0 | "
    assert lines[-2] == "step_ms | floor_ms | tokens_per_s | target_ms | target_leaves_for_traffic_ms | traffic_needs_ms"
    assert "variant" not in plain[1] and len(lines) == 1 + 9 + 2  # 3 measured, 5 traffic rows, 1 for comparison

    liger = profiled(380.0, 250.0, fused="RMSNorm ×45, SwiGLU ×22, RoPE ×22", **{"liger (fused kernels)": 30.0})
    fp8 = profiled(330.0, 150.0)
    cases = [("plain", profiled(400.0, 250.0)) + plain,
             ("fused", liger) + train_floor.floor(config, tokens, 10**9, [], args, 3.8, liger, dict(variant="fused")),
             ("fp8", fp8) + train_floor.floor(config, tokens, 10**9, by_hand(config), args, 3.8, fp8, dict(variant="fp8", fp8="rowwise"))]
    train_floor.report(cases, tokens)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "part | plain | fused | fp8"
    assert lines[1] == "matmul (in the step) | 250.0 | 250.0 | 150.0"
    cast = next(line for line in lines if line.startswith("traffic floor: float8 casts"))
    assert cast.split(" | ")[1:3] == ["", ""] and float(cast.split(" | ")[3]) > 0  # the fp8 variant's row alone
    assert "for comparison: liger's kernels in the step |  | 30.0 | " in lines
    header = lines.index("variant | fused | step_ms | measured_tokens_per_s | floor_ms | ceiling_tokens_per_s | traffic_needs_ms | "
                         "target_leaves_for_traffic_ms")
    rows = [line.split(" | ") for line in lines[header + 1:]]
    assert [r[:4] for r in rows] == [["plain", "none", "400.0", str(round(tokens / 0.4))],
                                     ["fused", "RMSNorm ×45, SwiGLU ×22, RoPE ×22", "380.0", str(round(tokens / 0.38))],
                                     ["fp8", "none", "330.0", str(round(tokens / 0.33))]]
    assert [r[5] for r in rows] == [str(c[3]["tokens_per_s"]) for c in cases]  # the ceiling: tokens over the floor
    assert float(rows[2][4]) == cases[2][3]["floor_ms"] and cases[2][3]["variant"] == "fp8"


@pytest.mark.parametrize("name", [
    # cuBLASLt's float8 GEMMs (tensor-wise scales) on an H100/H200, older and newer cuBLAS
    "sm90_xmma_gemm_e4m3bf16_e4m3f32_f32_tn_n_tilesize128x128x128_cgasize1x2x1_stage4_gmmastage2_warpgroupsize1x1x1_tensor64x128x32",
    "nvjet_qqtst_128x256_128x6_2x1_2cta_v_bz_TNT",
    # PyTorch's row-wise scaled matmul (CUTLASS), as the profiler names it
    "void cutlass::device_kernel<at::cuda::detail::enable_3x_kernel_for_sm9x<cutlass::gemm::kernel::GemmUniversal<",
    # inductor's Triton template for _scaled_mm (max-autotune)
    "triton_tem_fused__scaled_mm_0",
])
def test_float8_gemms_are_matmuls(name):
    assert kernel_kind(name) == "matmul"


def test_liger_and_float8_cast_kernels_are_not_matmuls():
    assert kernel_kind("_rms_norm_forward_kernel") == kernel_kind("_triton_rope") == "liger (fused kernels)"
    assert kernel_kind("triton_red_fused__to_copy_abs_amax_clamp_0") == "triton (fused by inductor)"
