"""``rollout`` group (``conf/rollout/*.yaml``): the engine that samples the responses."""

from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING

from ._check import at_least, between, one_of


@dataclass
class RolloutConfig:
    name: str = MISSING                      # r1zero.rollout.ENGINES: hf | vllm (each engine registers its schema there)


DECODERS = ("loop", "generate")  # rollout.decoder of rollout=hf (r1zero.rollout.hf)


@dataclass
class HFRolloutConfig(RolloutConfig):
    name: str = "hf"                         # r1zero.rollout.ENGINES
    batch_size: int = 64                     # prompts x samples generated together; bounds the KV-cache memory
    decoder: str = "loop"                    # loop: r1zero.rollout.decode (one prefill per prompt, finished rows
                                             # leave the batch) | generate: transformers generate; same distribution

    def __post_init__(self) -> None:
        at_least("rollout.batch_size", self.batch_size, 1)
        one_of("rollout.decoder", self.decoder, DECODERS)


@dataclass
class VLLMRolloutConfig(RolloutConfig):
    name: str = "vllm"                       # r1zero.rollout.ENGINES
    gpu_memory_utilization: float = 0.5      # share of GPU memory vLLM may take (weights + KV cache)
    kv_cache_memory_gb: Optional[float] = None  # explicit KV-cache size in GiB; null: the fraction on GPU, 2 GiB on CPU
    enable_prefix_caching: bool = True       # reuse the KV of the shared prompt across the G samples
    enable_sleep_mode: bool = True           # free vLLM's GPU memory during the learner update; ignored on CPU
    sleep_level: int = 1                     # 1: offload weights to host RAM, drop the KV cache; 2: drop both
    max_model_len: Optional[int] = None      # longest prompt + response; null: the model's max_position_embeddings
    max_num_seqs: Optional[int] = None       # sequences decoded at once; null: vLLM's default
    dtype: str = "auto"                      # auto: bfloat16 on GPU, float32 on CPU; or float32 / bfloat16 / float16
    enforce_eager: Optional[bool] = None     # true: no CUDA graphs / torch.compile; null: false on GPU, true on CPU
    tensor_parallel_size: int = 1            # GPUs per engine (the colocated setup uses 1)
    trust_remote_code: bool = False          # passed to vLLM's model/tokenizer loading
    seed: Optional[int] = None               # engine RNG seed; null: the run's top-level seed
    seed_requests: bool = False              # true: every request its own seed (batching-independent, slower)
    behaviour_logprobs: bool = True          # return each sampled token's log-prob (rollout/mismatch_* metrics,
                                             # algo.tis_cap); false: vLLM may use its faster sampler (FlashInfer on GPU)

    def __post_init__(self) -> None:
        between("rollout.gpu_memory_utilization", self.gpu_memory_utilization, 0.0, 1.0)
        one_of("rollout.sleep_level", self.sleep_level, (1, 2))
        one_of("rollout.dtype", self.dtype, ("auto", "float32", "bfloat16", "float16", "fp32", "bf16", "fp16"))
        at_least("rollout.max_model_len", self.max_model_len, 1, none_ok=True)
        at_least("rollout.max_num_seqs", self.max_num_seqs, 1, none_ok=True)
        at_least("rollout.tensor_parallel_size", self.tensor_parallel_size, 1)
