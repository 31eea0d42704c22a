"""What Hearth needs to know of a model's shape, from its GGUF header or the catalog."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ModelArch"]

# llama_context::graph_max_nodes: these architectures get max(40 x ubatch, 32 x tensors).
_BIG_GRAPH = {"qwen3next", "qwen35", "qwen35moe", "kimi-linear", "bailingmoe3", "minimax-01"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelArch:
    """What the estimator needs to know about a model (from GGUF or the catalog)."""

    architecture: str
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim_k: int
    head_dim_v: int
    attention_layers: int  # layers with a KV cache
    swa_layers: int = 0  # of those, sliding-window layers
    n_swa: int = 0
    recurrent_layers: int = 0
    recurrent_floats: int = 0  # state per recurrent layer and sequence (conv + ssm), f32
    ssm_inner: int = 0  # width of the recurrent layers' inner projections
    n_vocab: int
    n_merges: int = 0
    n_ctx_train: int
    weights_bytes: int
    n_tensors: int = 0  # 0: not known (catalog); about 12 per layer is assumed
    repacked_bytes: int = 0  # weights the CPU backend repacks (0: not known before download)
    # Its vision projector, loaded with it (issue 13): the file and the encoder's buffers.
    vision_bytes: int = 0

    def graph_nodes(self, n_ubatch: int) -> int:
        """llama.cpp's node budget for this model's compute graph."""
        tensors = self.n_tensors or 12 * self.n_layer + 3
        if self.architecture in _BIG_GRAPH:
            return max(40 * n_ubatch, 32 * tensors)
        return max(1024, 8 * tensors)

    @staticmethod
    def ssm_state_floats(*, conv_kernel: int, inner: int, state: int, groups: int) -> int:
        """llama.cpp's n_embd_r() + n_embd_s() for Mamba-2 style and Gated DeltaNet layers."""
        return max(conv_kernel - 1, 0) * (inner + 2 * groups * state) + state * inner
