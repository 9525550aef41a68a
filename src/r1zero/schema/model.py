"""``model`` group (``conf/model/*.yaml``): which policy to load and how."""

from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING

from ._check import at_least


@dataclass
class ModelConfig:
    name: str = MISSING                      # the option name (run-dir names, wandb)
    path: str = MISSING                      # hub id, local HF dir (a run's final/ or checkpoints/step_*/), pkg://, or tiny
    params_b: Optional[float] = None         # parameters in billions, for the cost estimate (r1zero.run.cost)
    tokenizer_path: Optional[str] = None     # null: the tokenizer lives with the model
    gguf_file: Optional[str] = None          # a GGUF file under path, converted once into cache_dir
    cache_dir: Optional[str] = None          # converted checkpoints (null: ~/.cache/r1zero/models)
    trust_remote_code: bool = False          # run the model repository's own code
    attn_implementation: Optional[str] = None  # flash_attention_2 / sdpa / eager; null lets transformers choose
    gradient_checkpointing: bool = False     # trade compute for activation memory in the learner

    @staticmethod
    def schema_for(node) -> type:
        return TinyModelConfig if node.get("path") == "tiny" else ModelConfig


@dataclass
class TinyModelConfig(ModelConfig):
    """``path: tiny``: a random Qwen2-architecture model built in code, sized by these fields."""

    hidden_size: int = 64                    # width of the residual stream
    intermediate_size: int = 128             # MLP width
    num_layers: int = 2                      # transformer blocks
    num_heads: int = 4                       # attention heads
    num_kv_heads: int = 2                    # grouped-query KV heads
    max_position_embeddings: int = 8192      # longest prompt + response
    vocab_size: Optional[int] = None         # embedding / LM-head rows beyond the byte tokenizer's (Qwen2.5: 151936); null: its own
    tie_word_embeddings: bool = False        # share the embedding with the LM head (as Qwen2.5-0.5B)

    def __post_init__(self) -> None:
        for key in ("hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads",
                    "max_position_embeddings"):
            at_least(f"model.{key}", getattr(self, key), 1)
