"""The model configuration: one dataclass for every architecture, and the registry of named models.

The registry is data: `litgpt/models/<family>.yaml`, each a list of entries whose keys are `Config` fields.
Nothing here imports torch, so reading or listing configs is fast.
"""

from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Union

import yaml

REGISTRY_DIR = Path(__file__).parent / "models"


def find_multiple(n: int, k: int) -> int:
    """The smallest multiple of `k` that is at least `n`."""
    return n if n % k == 0 else n + k - n % k


@dataclass
class Config:
    """Hyperparameters of a GPT model. Field names and meanings follow LitGPT's `model_config.yaml`."""

    name: str = ""
    """The model's name (a registry name such as pythia-14m, or your own)"""
    hf_config: dict = field(default_factory=dict)
    """The Hugging Face repository it comes from, {org, name}"""
    # sizes
    block_size: int = 4096
    """The longest sequence the model attends over (its context length)"""
    n_layer: int = 16
    """Transformer blocks"""
    n_embd: int = 4096
    """Width of the residual stream (the embedding size)"""
    vocab_size: int = 50254
    """Tokens of the tokenizer"""
    padding_multiple: int = 512
    """padded_vocab_size is vocab_size rounded up to a multiple of this"""
    padded_vocab_size: Optional[int] = None
    """Rows of the embedding and the output head (default: vocab_size rounded up to padding_multiple)"""
    # block structure and normalisation
    norm_class_name: Literal["LayerNorm", "RMSNorm"] = "LayerNorm"
    """The normalisation layer"""
    norm_eps: float = 1e-5
    """Epsilon of the normalisation layers"""
    norm_qk: bool = False
    """Normalise queries and keys before attention"""
    norm_qk_type: Literal["default", "olmo2"] = "default"
    """How queries and keys are normalised: per head (default) or over the whole projection (olmo2)"""
    post_attention_norm: bool = False
    """A normalisation after attention, before the residual sum (Gemma 2)"""
    post_mlp_norm: bool = False
    """A normalisation after the MLP, before the residual sum (Gemma 2)"""
    parallel_residual: bool = True
    """Attention and MLP read the same input and are added together (GPT-NeoX), instead of one after the other"""
    shared_attention_norm: bool = False
    """With parallel_residual, the MLP reads norm_1's output instead of its own norm_2"""
    # attention: n_query_groups == n_head is MHA, 1 is MQA, in between is GQA
    n_head: int = 32
    """Attention (query) heads"""
    head_size: Optional[int] = None
    """Width of each head (default: n_embd / n_head)"""
    n_query_groups: Optional[int] = None
    """Key/value heads: n_head is multi-head, 1 multi-query, in between grouped-query attention (default: n_head)"""
    attn_bias: bool = False
    """Bias in the query/key/value projection"""
    attention_scores_scalar: Optional[int] = None
    """Scores are divided by the square root of this instead of head_size"""
    sliding_window_size: Optional[int] = None
    """Tokens each position attends back over in sliding-window layers (unset: all of them)"""
    sliding_window_indices: Optional[List] = None
    """Per layer, 1 where the sliding window applies (default: every layer)"""
    attention_logit_softcapping: Optional[float] = None
    """Attention scores are squashed by tanh to this bound (Gemma 2)"""
    # rotary position embedding
    rope_base: int = 10000
    """Base of the rotary position embedding's frequencies"""
    rotary_percentage: float = 0.25
    """Fraction of each head's width that gets rotary position embedding"""
    rope_condense_ratio: int = 1
    """Positions are divided by this before the rotary embedding (linear RoPE scaling)"""
    rope_adjustments: Optional[dict] = None
    """RoPE scaling for long contexts (Llama 3 factors, YaRN, LongRoPE), as in LitGPT's files"""
    rope_interleave: bool = False
    """Rotate interleaved pairs of a head's channels instead of its two halves"""
    # MLP
    intermediate_size: Optional[int] = None
    """Width of the MLP's hidden layer"""
    moe_intermediate_size: Optional[int] = None
    """Width of each expert's hidden layer in mixture-of-experts layers"""
    bias: bool = True
    """Bias in the linear layers (except the query/key/value projection: attn_bias)"""
    mlp_class_name: Literal["GptNeoxMLP", "LLaMAMLP", "GemmaMLP", "LLaMAMoE"] = "GptNeoxMLP"
    """The MLP: GptNeoxMLP (GELU), LLaMAMLP (SwiGLU), GemmaMLP (GeGLU) or LLaMAMoE (mixture of experts)"""
    gelu_approximate: str = "none"
    """GELU's approximation: none or tanh"""
    n_expert: int = 0
    """Experts of each mixture-of-experts layer (0: a dense MLP)"""
    n_shared_expert: Optional[int] = None
    """Experts every token goes through besides the routed ones"""
    n_expert_groups: Optional[int] = None
    """Groups the experts are routed in (group-limited routing)"""
    n_topk_groups: Optional[int] = None
    """Groups each token may be routed to"""
    n_topk_scores_per_group: Optional[int] = None
    """Top expert scores summed to rank a group"""
    n_expert_per_token: int = 0
    """Experts each token is routed to"""
    first_k_dense_replace: Optional[int] = None
    """The first this many layers keep a dense MLP instead of experts"""
    routed_scaling_factor: float = 1.0
    """Scale of the routed experts' output"""
    norm_topk_prob: bool = False
    """Renormalise the chosen experts' weights to sum to one"""
    # before and after the blocks
    scale_embeddings: bool = False
    """Multiply token embeddings by sqrt(n_embd) (Gemma)"""
    lm_head_bias: bool = False
    """Bias in the output head"""
    final_logit_softcapping: Optional[float] = None
    """Output logits are squashed by tanh to this bound (Gemma 2)"""
    norm_1: bool = True
    """A normalisation before attention (false: none)"""
    norm_2: bool = True
    """A normalisation before the MLP (false: none)"""
    latent_attention: Optional[dict] = None
    """Multi-head latent attention's ranks and head sizes (DeepSeek), as in LitGPT's files"""
    # local-attention layers may use another RoPE base (Gemma 3); rope_indices picks the cache per layer
    rope_local_base_freq: Optional[float] = None
    """RoPE base of the sliding-window layers, where it differs from rope_base (Gemma 3)"""
    rope_indices: Optional[List] = None
    """Per layer, which RoPE cache it uses: 0 global (rope_base), 1 local (rope_local_base_freq)"""
    # Fields of our own, absent from LitGPT's files. None means: derive from the name as LitGPT does,
    # so that its model_config.yaml files load unchanged (see `_legacy_norm_flags`).
    norm_unit_offset: Optional[bool] = None  # RMSNorm scales by (1 + weight), as Gemma does
    """RMSNorm scales by (1 + weight), as Gemma does (unset: derived from the name as LitGPT does)"""
    norm_affine: Optional[bool] = None  # LayerNorm has weight and bias (OLMo 1 has neither)
    """LayerNorm has a weight and a bias (OLMo 1 has neither; unset: derived from the name)"""

    def __post_init__(self) -> None:
        if not self.name:
            self.name = self.hf_config.get("name", self.name)
        if self.head_size is None:
            if self.n_embd % self.n_head:
                raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
            self.head_size = self.n_embd // self.n_head
        if self.padded_vocab_size is None:
            self.padded_vocab_size = find_multiple(self.vocab_size, self.padding_multiple)
        else:
            self.vocab_size = min(self.vocab_size, self.padded_vocab_size)
        if self.n_query_groups is None:
            self.n_query_groups = self.n_head
        elif self.n_head % self.n_query_groups:
            raise ValueError(f"n_head={self.n_head} is not divisible by n_query_groups={self.n_query_groups}")
        if self.intermediate_size is None:
            if self.mlp_class_name == "LLaMAMLP":
                raise ValueError(f"The config {self.name!r} needs an intermediate_size")
            self.intermediate_size = 4 * self.n_embd
        self.rope_n_elem = int(self.rotary_percentage * self.head_size)
        self.rope_scaling = rope_scaling_kind(self.rope_adjustments)
        if self.rope_scaling == "longrope":
            self._check_longrope()
        if self.sliding_window_size is not None and self.sliding_window_indices is None:
            self.sliding_window_indices = [1] * self.n_layer
        if self.rope_local_base_freq is not None and self.rope_indices is None:
            self.rope_indices = [1] * self.n_layer
        self.sliding_window_indices = self._per_layer_flags("sliding_window_indices")
        self.rope_indices = self._per_layer_flags("rope_indices")
        unit_offset, affine = _legacy_norm_flags(self.name)
        if self.norm_unit_offset is None:
            self.norm_unit_offset = unit_offset
        if self.norm_affine is None:
            self.norm_affine = affine

    def _check_longrope(self) -> None:
        adj = self.rope_adjustments
        missing = [key for key in LONGROPE_KEYS if key not in adj]
        if missing:
            raise ValueError(f"rope_adjustments for LongRoPE need {', '.join(missing)}")
        for key in ("short_factor", "long_factor"):
            if len(adj[key]) != max(self.rope_n_elem // 2, 1):
                raise ValueError(f"rope_adjustments {key} has {len(adj[key])} entries for {self.rope_n_elem // 2} rotary frequencies")
        if self.rope_local_base_freq is not None:
            raise ValueError("LongRoPE together with rope_local_base_freq is not supported")

    def _per_layer_flags(self, field_name: str) -> Optional[List[int]]:
        """A 0/1 list with one flag per layer; longer lists are cut to n_layer (a registry entry with fewer layers)."""
        flags = getattr(self, field_name)
        if flags is None:
            return None
        if any(flag not in (0, 1) for flag in flags):
            raise ValueError(f"{field_name} may hold only 0 and 1, got {flags}")
        if len(flags) < self.n_layer:
            raise ValueError(f"{field_name} has {len(flags)} entries for {self.n_layer} layers")
        return list(flags[: self.n_layer])

    @classmethod
    def from_name(cls, name: str, **kwargs: Any) -> "Config":
        """The registry entry `name` (a LitGPT name, an HF repo name or `org/name`), with `kwargs` overriding fields."""
        entry = find_entry(name)
        if entry is None:
            raise ValueError(f"{name!r} is not a supported config name; `litgpt download list` shows them all")
        return cls(**{**entry, **kwargs})

    @classmethod
    def from_file(cls, path: Union[str, Path], **kwargs: Any) -> "Config":
        """A config from a YAML file of field values (a checkpoint's `model_config.yaml`)."""
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f)
        if not isinstance(values, dict):
            raise ValueError(f"{path} does not hold a mapping of config fields")
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"{path} has unknown config fields: {', '.join(sorted(unknown))}")
        return cls(**{**values, **kwargs})

    @classmethod
    def from_checkpoint(cls, path: Union[str, Path], **kwargs: Any) -> "Config":
        """The config of a checkpoint folder: its `model_config.yaml`, or else the registry entry named like the folder."""
        path = Path(path)
        if (path / "model_config.yaml").is_file():
            return cls.from_file(path / "model_config.yaml", **kwargs)
        if find_entry(path.name) is not None:
            return cls.from_name(path.name, **kwargs)
        raise FileNotFoundError(f"{str(path)!r} has no model_config.yaml and its name is not a supported config name")

    def to_dict(self) -> Dict[str, Any]:
        """The fields as LitGPT writes them: our own fields only where they differ from what the name implies."""
        values = asdict(self)
        unit_offset, affine = _legacy_norm_flags(self.name)
        if values["norm_unit_offset"] == unit_offset:
            del values["norm_unit_offset"]
        if values["norm_affine"] == affine:
            del values["norm_affine"]
        return values

    def save(self, path: Union[str, Path]) -> None:
        """Write `model_config.yaml` (or any path) atomically."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        values = self.to_dict()
        # config.json gives e.g. rope_theta as 10000.0: written as the int the field is, so that the file also
        # passes as `--model_config FILE`, whose parser checks the types
        ints = {f.name for f in fields(self) if f.type is int}
        values = {k: int(v) if k in ints and isinstance(v, float) and v.is_integer() else v for k, v in values.items()}
        tmp.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
        tmp.replace(path)


# rope_adjustments' kinds of RoPE scaling, each recognised by a key only it has (the last needs only `factor`)
ROPE_SCALING_KEYS = (("longrope", "long_factor"), ("yarn", "beta_fast"), ("llama3", "low_freq_factor"), ("linear", "factor"))
LONGROPE_KEYS = ("short_factor", "long_factor", "original_max_seq_len", "attention_factor")


def rope_scaling_kind(adjustments: Optional[dict]) -> Optional[str]:
    """Which RoPE scaling `rope_adjustments` describe: longrope, yarn, llama3, linear, or None."""
    if not adjustments:
        return None
    for kind, key in ROPE_SCALING_KEYS:
        if key in adjustments:
            return kind
    raise ValueError(f"rope_adjustments {sorted(adjustments)} name no known RoPE scaling (one of: longrope, yarn, llama3, linear)")


def _legacy_norm_flags(name: Any) -> "tuple[bool, bool]":
    """LitGPT's files do not say these two things; LitGPT infers them from the model name, so we do for its files."""
    name = name if isinstance(name, str) else ""  # LitGPT accepts any name, None included
    return "Gemma" in name, "OLMo" not in name


@lru_cache(maxsize=1)
def registry() -> List[Dict[str, Any]]:
    """Every registry entry, in file order."""
    entries: List[Dict[str, Any]] = []
    for path in sorted(REGISTRY_DIR.glob("*.yaml")):
        with open(path, encoding="utf-8") as f:
            entries.extend(yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or [])
    return entries


@lru_cache(maxsize=1)
def _index() -> Dict[str, Dict[str, Any]]:
    index: Dict[str, Dict[str, Any]] = {}
    for entry in registry():
        hf = entry.get("hf_config", {})
        for key in (f"{hf.get('org')}/{hf.get('name')}", hf.get("name")):
            index.setdefault(key, entry)
    for entry in registry():  # LitGPT names win over HF names
        index[entry["name"]] = entry
    return index


def find_entry(name: str) -> Optional[Dict[str, Any]]:
    """The registry entry for a LitGPT name, an HF repo name or an `org/name` repo id; None if unknown."""
    entry = _index().get(name)
    return None if entry is None else {**entry, "hf_config": dict(entry.get("hf_config", {}))}


def names() -> List[str]:
    """Every LitGPT model name in the registry, sorted."""
    return sorted(entry["name"] for entry in registry())
